//! Fetch after notify: a consumer group of its own on the events topic picks the Oura and WHOOP
//! notifications the webhook logged (ids only), fetches the objects with the user's token, and
//! appends their normalised readings to the same topic, under our user's pseudonym, with ids
//! derived from the vendor's object and version: a refetch or a redelivered notification
//! appends nothing new. The webhook path is untouched and stays fast.
//!
//! What is fetched: WHOOP `recovery.updated` (sleep -> cycle -> recovery), `sleep.updated`,
//! `workout.updated`; Oura `create`/`update` of every type in
//! [`auren_core::vendors::oura::data::DATA_TYPES`]. Deletions (`*.deleted`, Oura `delete`)
//! become deletion events without a fetch. Other types are counted and passed over.
//!
//! Progress is durable: the group's offsets are stored after the fetched events are appended.
//! A vendor that limits us is waited for (`Retry-After`, or the shared budget's window), 5xx and
//! timeouts are retried with backoff; a notification that still fails is parked in the store
//! and tried again later (a minute or the pending-score retry, doubling to an hour, for
//! `AUREN_FETCH_MAX_ROUNDS` rounds), then written to the dead-letter topic with its error,
//! from where `auren dlq replay` puts it back. A notification that cannot be fetched yet is parked too: for a vendor account
//! not connected yet (fetched once it is), or whose score is still pending (tried again after
//! `AUREN_PENDING_SCORE_RETRY_SECONDS`).

use super::{ConnectError, Connections};
use crate::log::{EventLog, LogError, Record};
use crate::messages::{DeadLetter, LogPosition, Original, MESSAGE_SCHEMA};
use crate::shutdown::Shutdown;
use crate::store::{CommitBatch, ParkedNotification, StateStore};
use auren_core::ingest::{deletion_event, sample_event};
use auren_core::model::{BiometricEvent, EventId, Notification, Payload, Vendor};
use auren_core::pseudonym::Pseudonymizer;
use auren_core::vendors::oura::data as oura;
use auren_core::vendors::whoop::data::{self as whoop, Recovery, ScoreState, Sleep, Workout};
use auren_core::vendors::NormalisedSample;
use chrono::Utc;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Attempts at one notification before it is parked for a later round.
const ATTEMPTS: u32 = 5;
const MAX_BATCH: usize = 100;

pub struct Fetcher {
    pub connections: Arc<Connections>,
    pub log: Arc<dyn EventLog>,
    pub offsets: Arc<dyn StateStore>,
    pub pseudonyms: Pseudonymizer,
    pub topic: String,
    /// Where notifications that keep failing go, replayable with `auren dlq replay`.
    pub dlq_topic: String,
    pub group: String,
    /// When a notification whose score is still pending is fetched again.
    pub pending_retry: Duration,
    /// Rounds of attempts at a notification the vendor keeps failing, a parked wait apart,
    /// before it is dead-lettered.
    pub max_rounds: i32,
}

/// How often parked notifications (unknown account, pending score) are looked at.
const PARKED_EVERY: Duration = Duration::from_secs(1);
/// Tries at a pending score before it is given up (at the default retry, two days).
const PENDING_ATTEMPTS: i32 = 192;

/// What became of one notification.
enum Handled {
    /// Not a notification this worker fetches for.
    Ignored,
    Fetched(Vec<BiometricEvent>),
    /// Kept in the store for later (account not connected yet, score pending, still failing).
    Parked,
    /// Counted under this label and passed over.
    Skipped(&'static str),
}

/// What a notification asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Fetch,
    Delete,
    /// A type we do not read (WHOOP has none; Oura adds types without notice).
    Unsupported,
}

fn action(vendor: Vendor, n: &Notification) -> Action {
    match vendor {
        Vendor::Whoop => match (n.data_type.as_str(), n.event_type.as_str()) {
            ("recovery" | "sleep" | "workout", "updated") => Action::Fetch,
            (_, "deleted") => Action::Delete,
            _ => Action::Unsupported,
        },
        Vendor::Oura => match n.event_type.as_str() {
            "delete" => Action::Delete,
            "create" | "update" if oura::data_type(&n.data_type).is_some() => Action::Fetch,
            _ => Action::Unsupported,
        },
        _ => Action::Unsupported,
    }
}

/// The wait before a failing notification's next round: from `base` (at most a minute),
/// doubling, at most an hour.
fn parked_backoff(base: Duration, attempts: i32) -> Duration {
    (base.min(Duration::from_secs(60)) * (1u32 << attempts.clamp(0, 6) as u32))
        .min(Duration::from_secs(3600))
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

/// A logged notification of a vendor we fetch from, with the vendor's account id.
fn notification(value: &[u8]) -> Option<(BiometricEvent, String)> {
    let event = serde_json::from_slice::<BiometricEvent>(value).ok()?;
    if !matches!(event.payload, Payload::Notification(_))
        || !matches!(event.vendor, Vendor::Whoop | Vendor::Oura)
    {
        return None;
    }
    let account = event
        .subject
        .id
        .strip_prefix(event.vendor.as_str())?
        .strip_prefix(':')?
        .to_string();
    Some((event, account))
}

/// The events of fetched samples, for our user.
pub(crate) fn events_of(
    vendor: Vendor,
    user: &str,
    samples: &[NormalisedSample],
    pseudonyms: &Pseudonymizer,
) -> Vec<BiometricEvent> {
    let now = Utc::now();
    samples
        .iter()
        .map(|s| sample_event(vendor, user, s, pseudonyms, now))
        .collect()
}

/// Appends until the log takes the events; false only on shutdown.
pub(crate) async fn append_all(
    log: &dyn EventLog,
    topic: &str,
    events: &[BiometricEvent],
    shutdown: &Shutdown,
) -> bool {
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
    if records.is_empty() {
        return true;
    }
    let mut attempt = 0;
    loop {
        match log.append(topic, records.clone()).await {
            Ok(_) => {
                let vendor = events.first().map_or("none", |e| e.vendor.as_str());
                metrics::counter!("auren_vendor_fetched_events_total", "vendor" => vendor)
                    .increment(records.len() as u64);
                return true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not append fetched vendor data; retrying");
                attempt += 1;
                tokio::select! {
                    _ = tokio::time::sleep(backoff(attempt)) => {}
                    _ = shutdown.wait() => return false,
                }
            }
        }
    }
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
                if let Some((event, account)) = notification(&r.value) {
                    let at = (r.partition, r.offset);
                    let events = match self.handle(&event, &account, 0, Some(at), &shutdown).await {
                        Handled::Fetched(events) => events,
                        _ => Vec::new(),
                    };
                    if shutdown.is_triggered() {
                        // Not committed: picked up again after the restart.
                        break;
                    }
                    if !append_all(&*self.log, &self.topic, &events, &shutdown).await {
                        break;
                    }
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

    /// Parked notifications now due: fetched, parked again, or given up.
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
            let outcome = match notification(p.body.as_bytes()) {
                Some((event, account)) => {
                    self.handle(&event, &account, p.attempts + 1, None, shutdown)
                        .await
                }
                None => Handled::Skipped("unreadable"),
            };
            if shutdown.is_triggered() {
                return;
            }
            let done = match outcome {
                Handled::Fetched(events) => {
                    append_all(&*self.log, &self.topic, &events, shutdown).await
                }
                Handled::Parked => false,
                Handled::Ignored | Handled::Skipped(_) => true,
            };
            if done {
                if let Err(e) = store.drop_parked(&p.event_id).await {
                    // Fetched again later: a duplicate the log refuses.
                    tracing::warn!(error = %e, "could not drop a parked notification");
                }
            }
        }
    }

    /// One notification: fetched with retries; parked, dead-lettered or passed over when that
    /// fails. `attempts` counts earlier rounds (0 for one just read from the log).
    async fn handle(
        &self,
        event: &BiometricEvent,
        account: &str,
        attempts: i32,
        at: Option<(i32, i64)>,
        shutdown: &Shutdown,
    ) -> Handled {
        let vendor = event.vendor.as_str();
        let mut attempt = 0;
        loop {
            let outcome = self.try_handle(event, account, attempts).await;
            let label = match &outcome {
                Ok(Handled::Ignored) => return Handled::Ignored,
                Ok(Handled::Fetched(events)) => {
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => vendor, "outcome" => "fetched").increment(1);
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
                Some(w) if attempt < ATTEMPTS && w <= Duration::from_secs(120) => {
                    tracing::debug!(reason = label, attempt, "vendor fetch failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(w) => continue,
                        _ = shutdown.wait() => return Handled::Ignored,
                    }
                }
                Some(w) if attempts + 1 < self.max_rounds => {
                    // Still failing: kept in the store and tried again later, never lost.
                    let later = Utc::now()
                        + chrono::Duration::from_std(
                            parked_backoff(self.pending_retry, attempts).max(w),
                        )
                        .unwrap_or_default();
                    if self
                        .park(event, account, label, later, attempts)
                        .await
                        .is_ok()
                    {
                        tracing::info!(
                            reason = label,
                            attempts,
                            "vendor fetch still failing; kept for later"
                        );
                        metrics::counter!("auren_vendor_notifications_total", "vendor" => vendor, "outcome" => "parked").increment(1);
                        return Handled::Parked;
                    }
                    return self.give_up(event, label, &outcome, at).await;
                }
                Some(_) => return self.give_up(event, label, &outcome, at).await,
                None => {
                    if let Err(e) = &outcome {
                        match e {
                            // The user's choice, or the object is gone: nothing to replay.
                            ConnectError::Revoked
                            | ConnectError::NotConnected
                            | ConnectError::NotFound => {
                                tracing::info!(reason = label, "notified object not fetched");
                            }
                            _ => return self.give_up(event, label, &outcome, at).await,
                        }
                    }
                    metrics::counter!("auren_vendor_notifications_total", "vendor" => vendor, "outcome" => label).increment(1);
                    return match outcome {
                        Ok(h) => h,
                        Err(_) => Handled::Skipped(label),
                    };
                }
            }
        }
    }

    /// A notification that keeps failing goes to the dead-letter topic with its error; `auren
    /// dlq replay` puts it back into the events topic, where this worker fetches it again.
    async fn give_up(
        &self,
        event: &BiometricEvent,
        label: &'static str,
        outcome: &Result<Handled, ConnectError>,
        at: Option<(i32, i64)>,
    ) -> Handled {
        let vendor = event.vendor.as_str();
        let error = match outcome {
            Err(e) => format!("vendor fetch failed ({label}): {e}"),
            Ok(_) => format!("vendor fetch failed ({label})"),
        };
        let (partition, offset) = at.unwrap_or((-1, -1));
        let letter = DeadLetter {
            schema: MESSAGE_SCHEMA,
            error,
            failed_at: Utc::now(),
            source: LogPosition {
                topic: self.topic.clone(),
                partition,
                offset,
            },
            original: Original::of(&serde_json::to_vec(event).unwrap_or_default()),
        };
        let record = Record {
            key: event.subject.pseudonym.clone(),
            event_id: EventId::derive(&["fetch-dlq", event.id.as_str()]).to_string(),
            value: serde_json::to_vec(&letter).unwrap_or_default(),
        };
        match self.log.append(&self.dlq_topic, vec![record]).await {
            Ok(_) => {
                tracing::warn!(
                    reason = label,
                    "gave up fetching a notified object; dead-lettered"
                );
                metrics::counter!("auren_vendor_notifications_total", "vendor" => vendor, "outcome" => "dead_lettered").increment(1);
                Handled::Skipped(label)
            }
            Err(e) => {
                // Kept parked rather than lost: tried again in a round.
                tracing::warn!(error = %e, "could not dead-letter a failing notification");
                Handled::Parked
            }
        }
    }

    async fn park(
        &self,
        event: &BiometricEvent,
        account: &str,
        reason: &str,
        not_before: chrono::DateTime<Utc>,
        attempts: i32,
    ) -> Result<Handled, ConnectError> {
        self.connections
            .store()
            .park_notification(&ParkedNotification {
                event_id: event.id.to_string(),
                vendor: event.vendor.as_str().into(),
                vendor_user_id: account.into(),
                body: serde_json::to_string(event).unwrap_or_default(),
                reason: reason.into(),
                not_before,
                attempts,
            })
            .await?;
        Ok(Handled::Parked)
    }

    async fn try_handle(
        &self,
        event: &BiometricEvent,
        account: &str,
        attempts: i32,
    ) -> Result<Handled, ConnectError> {
        let Payload::Notification(n) = &event.payload else {
            return Ok(Handled::Ignored);
        };
        let vendor = event.vendor;
        let action = action(vendor, n);
        if action == Action::Unsupported {
            return Ok(Handled::Skipped("unsupported_type"));
        }
        let Some(conn) = self
            .connections
            .store()
            .connection_for_vendor_user(vendor.as_str(), account)
            .await?
        else {
            // Fetched once the account is connected.
            return self
                .park(event, account, "unknown_user", Utc::now(), attempts)
                .await;
        };
        if conn.status == super::REVOKED {
            return Ok(Handled::Skipped("revoked"));
        }
        let user = conn.user_id.as_str();
        if action == Action::Delete {
            return Ok(Handled::Fetched(vec![deletion_event(
                vendor,
                user,
                &n.data_type,
                &n.object_id,
                &self.pseudonyms,
                Utc::now(),
            )]));
        }
        let result = match self.fetch(vendor, user, n).await {
            Ok(Handled::Parked) if attempts >= PENDING_ATTEMPTS => {
                Ok(Handled::Skipped("score_never_came"))
            }
            Ok(Handled::Parked) => {
                let at =
                    Utc::now() + chrono::Duration::from_std(self.pending_retry).unwrap_or_default();
                self.park(event, account, "not_scored", at, attempts).await
            }
            other => other,
        };
        let store = self.connections.store();
        let v = vendor.as_str();
        match &result {
            Ok(_) => {
                store
                    .set_health(v, user, super::CONNECTED, None, Some(Utc::now()))
                    .await?
            }
            Err(ConnectError::Revoked) => {}
            Err(e) => {
                store
                    .set_health(v, user, super::CONNECTED, Some(e.reason()), None)
                    .await?
            }
        }
        result
    }

    async fn fetch(
        &self,
        vendor: Vendor,
        user: &str,
        n: &Notification,
    ) -> Result<Handled, ConnectError> {
        let samples = match vendor {
            Vendor::Whoop => {
                if uuid::Uuid::parse_str(&n.object_id).is_err() {
                    // v1 integer ids: WHOOP no longer publishes the v1 model.
                    return Ok(Handled::Skipped("legacy_id"));
                }
                match n.data_type.as_str() {
                    "recovery" => self.whoop_recovery(user, &n.object_id).await?,
                    "sleep" => {
                        let sleep: Sleep = self
                            .get(vendor, user, &format!("/v2/activity/sleep/{}", n.object_id))
                            .await?;
                        scored(sleep.score_state, || whoop::sleep_samples(&sleep))?
                    }
                    _ => {
                        let w: Workout = self
                            .get(
                                vendor,
                                user,
                                &format!("/v2/activity/workout/{}", n.object_id),
                            )
                            .await?;
                        scored(Some(w.score_state), || whoop::workout_samples(&w))?
                    }
                }
            }
            _ => {
                let Some(dt) = oura::data_type(&n.data_type) else {
                    return Ok(Handled::Skipped("unsupported_type"));
                };
                let body = self
                    .connections
                    .vendor_get(
                        vendor,
                        user,
                        &format!("/v2/usercollection/{}/{}", dt.path, n.object_id),
                    )
                    .await?;
                Some(oura::document_samples(dt.webhook, &body).map_err(unreadable)?)
            }
        };
        Ok(match samples {
            // Nothing to emit yet: tried again after `pending_retry`.
            None => Handled::Parked,
            Some(s) => Handled::Fetched(events_of(vendor, user, &s, &self.pseudonyms)),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        vendor: Vendor,
        user: &str,
        path: &str,
    ) -> Result<T, ConnectError> {
        let body = self.connections.vendor_get(vendor, user, path).await?;
        whoop::parse(&body).map_err(unreadable)
    }

    /// A `recovery.updated` names the recovery's sleep: sleep -> cycle -> recovery.
    async fn whoop_recovery(
        &self,
        user: &str,
        sleep_id: &str,
    ) -> Result<Option<Vec<NormalisedSample>>, ConnectError> {
        let sleep: Sleep = self
            .get(
                Vendor::Whoop,
                user,
                &format!("/v2/activity/sleep/{sleep_id}"),
            )
            .await?;
        let recovery: Recovery = self
            .get(
                Vendor::Whoop,
                user,
                &format!("/v2/cycle/{}/recovery", sleep.cycle_id),
            )
            .await?;
        scored(Some(recovery.score_state), || {
            whoop::recovery_samples(&recovery, &sleep)
        })
    }
}

/// A vendor answer that is not the documented JSON: treated as the vendor being unavailable
/// (retried, then parked), never as a reason to stop.
pub(crate) fn unreadable<E>(_: E) -> ConnectError {
    ConnectError::Unavailable("the vendor's answer is not the documented JSON".into())
}

/// WHOOP objects carry values only once scored: none while pending (tried again later), an
/// error-free skip when the vendor says it never will be.
fn scored(
    state: Option<ScoreState>,
    samples: impl FnOnce() -> Vec<NormalisedSample>,
) -> Result<Option<Vec<NormalisedSample>>, ConnectError> {
    match state {
        Some(ScoreState::PendingScore) => Ok(None),
        Some(ScoreState::Unscorable) => Ok(Some(Vec::new())),
        _ => Ok(Some(samples())),
    }
}
