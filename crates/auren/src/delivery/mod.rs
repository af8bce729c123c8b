//! Delivery of mode switches to the agents: a LangGraph server ([`langgraph`]) and outgoing
//! Standard Webhooks ([`webhooks`]).
//!
//! The bridge's commit queues every new switch for every sink in the same transaction
//! ([`crate::store::DeliveryStore`]), so what is delivered is exactly what was committed, and a
//! crash between the commit and the delivery only delays it. One [`run`] loop per sink kind then
//! leases the heads of the per-user queues, delivers them with bounded concurrency and records
//! the outcome: each user's switches arrive in order, one at a time, while other users go on; a
//! sink that is down only grows its queue in the store (never memory), and never holds up the
//! bridge, ingest or the other sink. Delivery is at least once; the switch id travels with every
//! delivery so that the receiver can drop a repeat.

pub mod langgraph;
pub mod webhooks;

use crate::shutdown::Shutdown;
use crate::store::{DeliveryStore, PendingDelivery};
use async_trait::async_trait;
use chrono::Utc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered,
    /// Try again after the delay. The error is stored and logged: it never holds a body.
    Retry {
        error: String,
        after: Duration,
    },
    /// Stop trying this switch (the sink has recorded why).
    GiveUp {
        error: String,
    },
}

/// A place switches are delivered to.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The sink kind queued in the store and used as the metrics label.
    fn kind(&self) -> &'static str;
    async fn deliver(&self, d: &PendingDelivery) -> Outcome;
    /// The longest one delivery can take: leases last longer, so that no other process takes a
    /// switch that is still being delivered.
    fn max_duration(&self) -> Duration;
}

/// How often an idle loop looks for due retries (new switches wake it at once).
const POLL: Duration = Duration::from_millis(500);
/// How often the backlog gauge is refreshed.
const BACKLOG_EVERY: Duration = Duration::from_secs(10);

/// Exponential backoff from 1 s, doubling, capped at 5 minutes.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    Duration::from_secs(1u64 << exp.min(9)).min(Duration::from_secs(300))
}

/// Delivers `sink`'s queue until `shutdown`, then lets in-flight deliveries finish.
pub async fn run(
    sink: Arc<dyn Sink>,
    store: Arc<dyn DeliveryStore>,
    wake: Arc<Notify>,
    concurrency: usize,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let kind = sink.kind();
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let lease = chrono::Duration::from_std(sink.max_duration() + Duration::from_secs(30))?;
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut backlog_at = Instant::now() - BACKLOG_EVERY;
    tracing::info!(sink = kind, concurrency, "delivering switches");
    loop {
        if shutdown.is_triggered() {
            break;
        }
        if backlog_at.elapsed() >= BACKLOG_EVERY {
            backlog_at = Instant::now();
            if let Ok(n) = store.backlog(kind).await {
                metrics::gauge!("auren_agent_delivery_backlog", "sink" => kind).set(n as f64);
            }
        }
        let free = concurrency.saturating_sub(in_flight.len());
        let claimed = if free == 0 {
            Vec::new()
        } else {
            let now = Utc::now();
            match store
                .claim(kind, &owner, now, now + lease, free as i64)
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sink = kind, error = %e, "could not read the delivery queue");
                    Vec::new()
                }
            }
        };
        let idle = claimed.is_empty();
        for d in claimed {
            let (sink, store) = (sink.clone(), store.clone());
            in_flight.spawn(async move { deliver_one(sink.as_ref(), store.as_ref(), d).await });
        }
        if !idle {
            continue;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = shutdown.wait() => {}
        }
    }
    while in_flight.join_next().await.is_some() {}
    Ok(())
}

async fn deliver_one(sink: &dyn Sink, store: &dyn DeliveryStore, d: PendingDelivery) {
    let kind = sink.kind();
    let outcome = sink.deliver(&d).await;
    let label = match &outcome {
        Outcome::Delivered => "delivered",
        Outcome::Retry { .. } => "failed",
        Outcome::GiveUp { .. } => "gave_up",
    };
    metrics::counter!("auren_agent_deliveries_total", "sink" => kind, "outcome" => label)
        .increment(1);
    let stored = match &outcome {
        Outcome::Delivered => {
            let lag = (Utc::now() - d.queued_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("auren_agent_delivery_lag_seconds", "sink" => kind).record(lag);
            store.finish(d.id).await
        }
        Outcome::Retry { error, after } => {
            tracing::debug!(sink = kind, user = %d.pseudonym, attempts = d.attempts + 1, error = %error, "delivery failed; retrying");
            let at = Utc::now() + chrono::Duration::from_std(*after).unwrap_or_default();
            store.retry_at(d.id, d.attempts + 1, at, error).await
        }
        Outcome::GiveUp { error } => {
            tracing::warn!(sink = kind, user = %d.pseudonym, switch_id = %d.message.switch_id, attempts = d.attempts + 1, error = %error, "gave up delivering a switch");
            store.finish(d.id).await
        }
    };
    if let Err(e) = stored {
        // The lease runs out and the switch is delivered again: at least once.
        tracing::warn!(sink = kind, error = %e, "could not record a delivery's outcome");
    }
}

/// Wakes every delivery loop of the process: the bridge calls it after a commit that queued
/// switches, so that they leave at once rather than at the next poll.
#[derive(Clone, Default)]
pub struct Waker(Vec<Arc<Notify>>);

impl Waker {
    pub fn wake(&self) {
        for n in &self.0 {
            // Stores a permit when the loop is busy: it looks again once it is free.
            n.notify_one();
        }
    }
}

/// The delivery loops a bridge process runs.
pub struct Deliveries {
    sinks: Vec<(Arc<dyn Sink>, Arc<Notify>)>,
    concurrency: usize,
    store: Arc<dyn DeliveryStore>,
}

impl Deliveries {
    pub fn new(
        settings: &crate::settings::DeliverySettings,
        token_key: Option<&str>,
        store: Arc<dyn DeliveryStore>,
    ) -> anyhow::Result<Self> {
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        if let Some(url) = &settings.langgraph_url {
            sinks.push(Arc::new(langgraph::LangGraph::new(url.clone(), settings)?));
        }
        match token_key {
            Some(k) => sinks.push(Arc::new(webhooks::Webhooks::new(
                settings,
                crate::crypto::TokenKey::parse(k)?,
                store.clone(),
            )?)),
            None => tracing::warn!(
                "AUREN_TOKEN_KEY is not set: this process delivers no outgoing webhooks (their \
                 switches wait in the store for a process that has the key)"
            ),
        }
        Ok(Self {
            sinks: sinks
                .into_iter()
                .map(|s| (s, Arc::new(Notify::new())))
                .collect(),
            concurrency: settings.delivery_concurrency as usize,
            store,
        })
    }

    /// The sink kinds every commit queues for besides webhooks (matched in the store).
    pub fn queued_kinds(&self) -> Vec<String> {
        self.sinks
            .iter()
            .map(|(s, _)| s.kind())
            .filter(|k| *k != crate::store::WEBHOOK_SINK)
            .map(str::to_string)
            .collect()
    }

    pub fn waker(&self) -> Waker {
        Waker(self.sinks.iter().map(|(_, n)| n.clone()).collect())
    }

    pub fn spawn(&self, shutdown: &Shutdown) {
        for (sink, wake) in &self.sinks {
            shutdown.spawn(
                sink.kind(),
                run(
                    sink.clone(),
                    self.store.clone(),
                    wake.clone(),
                    self.concurrency,
                    shutdown.clone(),
                ),
            );
        }
    }
}

/// An HTTP failure as stored and logged: the status or the kind of transport error, never a
/// response body (LangGraph's 409 echoes the run's input, a user's data).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if let Some(s) = e.status() {
        format!("HTTP {}", s.as_u16())
    } else if e.is_decode() {
        "the answer is not the expected JSON".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_and_stops_at_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(9), Duration::from_secs(256));
        assert_eq!(backoff(10), Duration::from_secs(300));
        assert_eq!(backoff(1000), Duration::from_secs(300));
        assert_eq!(backoff(0), Duration::from_secs(1));
    }
}
