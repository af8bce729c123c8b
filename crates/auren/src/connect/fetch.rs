//! Fetch after notify: a consumer group of its own on the events topic picks the WHOOP
//! notifications the webhook logged (ids only), fetches the objects with the user's token, and
//! appends their normalised readings to the same topic, under our user's pseudonym, with ids
//! derived from the vendor's object and version: a refetch or a redelivered notification
//! appends nothing new. The webhook path is untouched and stays fast.
//!
//! Progress is durable: the group's offsets are stored after the fetched events are appended.
//! A vendor that limits us is waited for (`Retry-After`), 5xx and timeouts are retried with
//! backoff; a notification that still fails is counted and skipped (no DLQ yet).
//!
//! Built: WHOOP `recovery.updated` (sleep -> cycle -> recovery). Not yet: other WHOOP types,
//! Oura, deletions, notifications for vendor users not yet connected (counted, not replayed).

use super::{ConnectError, Connections};
use crate::log::{EventLog, LogError, Record};
use crate::shutdown::Shutdown;
use crate::store::{CommitBatch, StateStore};
use auren_core::model::{BiometricEvent, Payload, Vendor};
use auren_core::pseudonym::Pseudonymizer;
use auren_core::vendors::whoop::data::{self, Recovery, Sleep};
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Attempts at one notification before it is given up.
const ATTEMPTS: u32 = 5;
const MAX_BATCH: usize = 100;

pub struct Fetcher {
    pub connections: Arc<Connections>,
    pub log: Arc<dyn EventLog>,
    pub offsets: Arc<dyn StateStore>,
    pub pseudonyms: Pseudonymizer,
    pub topic: String,
    pub group: String,
}

/// What became of one record.
enum Handled {
    /// Not a notification this worker fetches for.
    Ignored,
    Fetched(Vec<BiometricEvent>),
    /// Counted under this label and skipped.
    Skipped(&'static str),
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

impl Fetcher {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let start = self.offsets.load_offsets(&self.group, &self.topic).await?;
        let mut sub = self.log.subscribe(&self.group, &self.topic, &start).await?;
        tracing::info!(group = %self.group, "fetching vendor data after notifications");
        while !shutdown.is_triggered() {
            let polled = tokio::select! {
                r = sub.poll(MAX_BATCH) => r,
                _ = shutdown.wait() => break,
            };
            let records = match polled {
                Ok(r) => r,
                Err(LogError::Rebalanced) => {
                    let stored = self.offsets.load_offsets(&self.group, &self.topic).await?;
                    sub.reset(&stored).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetch worker could not read the log");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for r in records {
                let events = self.handle(&r.value, &shutdown).await;
                if shutdown.is_triggered() {
                    // Not committed: picked up again after the restart.
                    break;
                }
                if !events.is_empty() && !self.append(events, &shutdown).await {
                    break;
                }
                next.insert(r.partition, r.offset + 1);
            }
            if next.is_empty() {
                continue;
            }
            let offsets: Vec<(i32, i64)> = next.into_iter().collect();
            let batch = CommitBatch {
                group: self.group.clone(),
                topic: self.topic.clone(),
                offsets: offsets.clone(),
                ..Default::default()
            };
            match self.offsets.commit(&batch).await {
                Ok(()) => sub.committed(&offsets).await,
                Err(e) => {
                    // The events are in the log; a repeat after a restart is a duplicate.
                    tracing::warn!(error = %e, "fetch worker could not store its offsets");
                }
            }
        }
        Ok(())
    }

    /// Appends until the log takes the events (false only on shutdown).
    async fn append(&self, events: Vec<BiometricEvent>, shutdown: &Shutdown) -> bool {
        let records: Vec<Record> = events
            .iter()
            .filter_map(|e| {
                Some(Record {
                    key: e.subject.pseudonym.clone(),
                    event_id: e.id.to_string(),
                    value: serde_json::to_vec(e).ok()?,
                })
            })
            .collect();
        let mut attempt = 0;
        loop {
            match self.log.append(&self.topic, records.clone()).await {
                Ok(_) => {
                    metrics::counter!("auren_vendor_fetched_events_total", "vendor" => "whoop")
                        .increment(records.len() as u64);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fetch worker could not append; retrying");
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff(attempt)) => {}
                        _ = shutdown.wait() => return false,
                    }
                }
            }
        }
    }

    async fn handle(&self, value: &[u8], shutdown: &Shutdown) -> Vec<BiometricEvent> {
        let mut attempt = 0;
        loop {
            let outcome = self.try_handle(value).await;
            let label = match &outcome {
                Ok(Handled::Ignored) => return Vec::new(),
                Ok(Handled::Fetched(events)) => {
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => "whoop", "outcome" => "fetched").increment(1);
                    return events.clone();
                }
                Ok(Handled::Skipped(label)) => *label,
                Err(e) => e.reason(),
            };
            let wait = match &outcome {
                Err(ConnectError::RateLimited(after)) => {
                    Some(after.unwrap_or_else(|| backoff(attempt)))
                }
                Err(ConnectError::Unavailable(_)) | Err(ConnectError::Store(_)) => {
                    Some(backoff(attempt))
                }
                _ => None,
            };
            attempt += 1;
            match wait {
                Some(w) if attempt < ATTEMPTS => {
                    tracing::debug!(reason = label, attempt, "vendor fetch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(w) => continue,
                        _ = shutdown.wait() => return Vec::new(),
                    }
                }
                _ => {
                    if let Err(e) = &outcome {
                        tracing::warn!(reason = label, error = %e, "gave up fetching a notified object");
                    }
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => "whoop", "outcome" => label).increment(1);
                    return Vec::new();
                }
            }
        }
    }

    async fn try_handle(&self, value: &[u8]) -> Result<Handled, ConnectError> {
        let Ok(event) = serde_json::from_slice::<BiometricEvent>(value) else {
            return Ok(Handled::Ignored);
        };
        let Payload::Notification(n) = &event.payload else {
            return Ok(Handled::Ignored);
        };
        if event.vendor != Vendor::Whoop || n.data_type != "recovery" || n.event_type != "updated" {
            return Ok(Handled::Ignored);
        }
        let Some(vendor_user) = event.subject.id.strip_prefix("whoop:") else {
            return Ok(Handled::Ignored);
        };
        let Some(conn) = self
            .connections
            .store()
            .connection_for_vendor_user("whoop", vendor_user)
            .await?
        else {
            return Ok(Handled::Skipped("unknown_user"));
        };
        if conn.status == super::REVOKED {
            return Ok(Handled::Skipped("revoked"));
        }
        let user = conn.user_id.as_str();
        let result = self.fetch_recovery(user, &n.object_id).await;
        let store = self.connections.store();
        match &result {
            Ok(_) => {
                store
                    .set_health("whoop", user, super::CONNECTED, None, Some(Utc::now()))
                    .await?
            }
            Err(ConnectError::Revoked) => {}
            Err(e) => {
                store
                    .set_health("whoop", user, super::CONNECTED, Some(e.reason()), None)
                    .await?
            }
        }
        result
    }

    /// A `recovery.updated` names the recovery's sleep: sleep -> cycle -> recovery.
    async fn fetch_recovery(&self, user: &str, sleep_id: &str) -> Result<Handled, ConnectError> {
        if uuid::Uuid::parse_str(sleep_id).is_err() {
            // v1 integer ids: WHOOP no longer publishes the v1 model.
            return Ok(Handled::Skipped("legacy_id"));
        }
        let unreadable =
            |_| ConnectError::Unavailable("the vendor's answer is not the documented JSON".into());
        let sleep: Sleep = data::parse(
            &self
                .connections
                .whoop_get(user, &format!("/developer/v2/activity/sleep/{sleep_id}"))
                .await?,
        )
        .map_err(unreadable)?;
        let recovery: Recovery = data::parse(
            &self
                .connections
                .whoop_get(
                    user,
                    &format!("/developer/v2/cycle/{}/recovery", sleep.cycle_id),
                )
                .await?,
        )
        .map_err(unreadable)?;
        let samples = data::recovery_samples(&recovery, &sleep);
        if samples.is_empty() {
            // PENDING_SCORE or UNSCORABLE: nothing to emit yet (a later notification or the
            // reconciliation, not built yet, brings the score).
            return Ok(Handled::Skipped("not_scored"));
        }
        let now = Utc::now();
        Ok(Handled::Fetched(
            samples
                .iter()
                .map(|s| {
                    auren_core::ingest::sample_event(Vendor::Whoop, user, s, &self.pseudonyms, now)
                })
                .collect(),
        ))
    }
}
