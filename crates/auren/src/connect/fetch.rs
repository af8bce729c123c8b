//! Fetch after notify: a consumer group of its own on the events topic picks the WHOOP
//! notifications the webhook logged (ids only), fetches the objects with the user's token, and
//! appends their normalised readings to the same topic, under our user's pseudonym, with ids
//! derived from the vendor's object and version: a refetch or a redelivered notification
//! appends nothing new. The webhook path is untouched and stays fast.
//!
//! Progress is durable: the group's offsets are stored after the fetched events are appended.
//! A vendor that limits us is waited for (`Retry-After`), 5xx and timeouts are retried with
//! backoff; a notification that still fails is parked in the store and tried again later (a
//! minute or the pending-score retry, doubling to an hour, twelve rounds), then counted and given up (no DLQ yet).
//! A notification that cannot be fetched yet is parked in the store: for a vendor account not
//! connected yet (fetched once it is), or whose score is still pending (tried again after
//! `AUREN_PENDING_SCORE_RETRY_SECONDS`).
//!
//! Built: WHOOP `recovery.updated` (sleep -> cycle -> recovery). Not yet: other WHOOP types,
//! Oura, deletions.

use super::{ConnectError, Connections};
use crate::log::{EventLog, LogError, Record};
use crate::shutdown::Shutdown;
use crate::store::{CommitBatch, ParkedNotification, StateStore};
use auren_core::model::{BiometricEvent, Payload, Vendor};
use auren_core::pseudonym::Pseudonymizer;
use auren_core::vendors::whoop::data::{self, Recovery, ScoreState, Sleep};
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
    /// When a notification whose score is still pending is tried again.
    pub pending_retry: Duration,
}

/// How often parked notifications (unknown account, pending score) are looked at.
const PARKED_EVERY: Duration = Duration::from_secs(1);
/// Tries at a pending score before it is given up (at the default retry, two days).
const PENDING_ATTEMPTS: i32 = 192;

/// What became of one record.
enum Handled {
    /// Not a notification this worker fetches for.
    Ignored,
    Fetched(Vec<BiometricEvent>),
    /// Kept in the store for later (account not connected yet, score pending).
    Parked,
    /// Counted under this label and skipped.
    Skipped(&'static str),
}

/// Rounds of attempts at a notification the vendor keeps failing, a parked wait apart.
const FAILING_ATTEMPTS: i32 = 12;

/// The wait before a failing notification's next round: from `base` (at most a minute),
/// doubling, at most an hour.
fn parked_backoff(base: Duration, attempts: i32) -> Duration {
    (base.min(Duration::from_secs(60)) * (1u32 << attempts.clamp(0, 6) as u32))
        .min(Duration::from_secs(3600))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

impl Fetcher {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let start = self.offsets.load_offsets(&self.group, &self.topic).await?;
        let mut sub = self.log.subscribe(&self.group, &self.topic, &start).await?;
        tracing::info!(group = %self.group, "fetching vendor data after notifications");
        let mut parked_at = std::time::Instant::now();
        while !shutdown.is_triggered() {
            if parked_at.elapsed() >= PARKED_EVERY {
                self.retry_parked(&shutdown).await;
                parked_at = std::time::Instant::now();
            }
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
                let events = match self.handle(&r.value, 0, &shutdown).await {
                    Handled::Fetched(events) => events,
                    _ => Vec::new(),
                };
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

    /// Parked notifications now due: fetched, parked again, or dropped.
    async fn retry_parked(&self, shutdown: &Shutdown) {
        let store = self.connections.store();
        let due = match store.due_parked(Utc::now(), MAX_BATCH as i64).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the parked notifications");
                return;
            }
        };
        for p in due {
            let outcome = self
                .handle(p.body.as_bytes(), p.attempts + 1, shutdown)
                .await;
            if shutdown.is_triggered() {
                return;
            }
            let done = match outcome {
                Handled::Fetched(events) => self.append(events, shutdown).await,
                Handled::Parked => false,
                Handled::Ignored | Handled::Skipped(_) => true,
            };
            if done {
                if let Err(e) = store.drop_parked(&p.event_id).await {
                    // Fetched again later: a duplicate in the log.
                    tracing::warn!(error = %e, "could not drop a parked notification");
                }
            }
        }
    }

    async fn handle(&self, value: &[u8], attempts: i32, shutdown: &Shutdown) -> Handled {
        let mut attempt = 0;
        loop {
            let outcome = self.try_handle(value, attempts).await;
            let label = match &outcome {
                Ok(Handled::Ignored) => return Handled::Ignored,
                Ok(Handled::Fetched(events)) => {
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => "whoop", "outcome" => "fetched").increment(1);
                    return Handled::Fetched(events.clone());
                }
                Ok(Handled::Parked) => "parked",
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
                        _ = shutdown.wait() => return Handled::Ignored,
                    }
                }
                Some(_) if attempts < FAILING_ATTEMPTS => {
                    // Still failing: kept in the store and tried again later, never lost.
                    if let Ok(event) = serde_json::from_slice::<BiometricEvent>(value) {
                        let account = event.subject.id.trim_start_matches("whoop:").to_string();
                        let later = Utc::now()
                            + chrono::Duration::from_std(parked_backoff(
                                self.pending_retry,
                                attempts,
                            ))
                            .unwrap_or_default();
                        if self
                            .park(&event, &account, label, later, attempts)
                            .await
                            .is_ok()
                        {
                            tracing::info!(
                                reason = label,
                                attempts,
                                "vendor fetch still failing; kept for later"
                            );
                            metrics::counter!("auren_vendor_notifications_total", "vendor" => "whoop", "outcome" => "parked").increment(1);
                            return Handled::Parked;
                        }
                    }
                    tracing::warn!(reason = label, "gave up fetching a notified object");
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => "whoop", "outcome" => label).increment(1);
                    return Handled::Skipped(label);
                }
                _ => {
                    if let Err(e) = &outcome {
                        tracing::warn!(reason = label, error = %e, "gave up fetching a notified object");
                    }
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => "whoop", "outcome" => label).increment(1);
                    return match outcome {
                        Ok(h) => h,
                        Err(_) => Handled::Skipped(label),
                    };
                }
            }
        }
    }

    async fn park(
        &self,
        event: &BiometricEvent,
        vendor_user: &str,
        reason: &str,
        not_before: chrono::DateTime<Utc>,
        attempts: i32,
    ) -> Result<Handled, ConnectError> {
        self.connections
            .store()
            .park_notification(&ParkedNotification {
                event_id: event.id.to_string(),
                vendor: "whoop".into(),
                vendor_user_id: vendor_user.into(),
                body: serde_json::to_string(event).unwrap_or_default(),
                reason: reason.into(),
                not_before,
                attempts,
            })
            .await?;
        Ok(Handled::Parked)
    }

    async fn try_handle(&self, value: &[u8], attempts: i32) -> Result<Handled, ConnectError> {
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
            // Fetched once the account is connected.
            return self
                .park(&event, vendor_user, "unknown_user", Utc::now(), attempts)
                .await;
        };
        if conn.status == super::REVOKED {
            return Ok(Handled::Skipped("revoked"));
        }
        let user = conn.user_id.as_str();
        let result = match self.fetch_recovery(user, &n.object_id).await {
            Ok(Handled::Parked) if attempts >= PENDING_ATTEMPTS => {
                Ok(Handled::Skipped("score_never_came"))
            }
            Ok(Handled::Parked) => {
                let at =
                    Utc::now() + chrono::Duration::from_std(self.pending_retry).unwrap_or_default();
                self.park(&event, vendor_user, "not_scored", at, attempts)
                    .await
            }
            other => other,
        };
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
        match recovery.score_state {
            // Nothing to emit yet: tried again after `pending_retry`.
            ScoreState::PendingScore => return Ok(Handled::Parked),
            ScoreState::Unscorable => return Ok(Handled::Skipped("unscorable")),
            ScoreState::Scored => {}
        }
        let samples = data::recovery_samples(&recovery, &sleep);
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
