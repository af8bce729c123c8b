//! Backfill and reconciliation: the data notifications alone would never bring.
//!
//! A new connection's history (`AUREN_BACKFILL_DAYS`, 60 by default) is fetched from the
//! vendor's collections, oldest window first, behind a backfill marker in the log: the bridge
//! then treats the user's baselines as personal from the first day instead of calibrating for
//! two weeks. Progress is stored per window, so a restart resumes where it stopped and
//! `GET /users/{id}/connections` shows how far it is.
//!
//! Both vendors say webhooks get lost (Oura gives up after about an hour of failures, WHOOP
//! after five tries). Every connection is therefore reconciled on a schedule
//! (`AUREN_RECONCILE_INTERVAL_SECONDS`, jittered so connections made together do not poll
//! together): the last days are fetched again, and what the log already holds is refused as a
//! duplicate by its event id.
//!
//! One instance syncs a connection at a time (a lease in the store), and every request comes out
//! of the vendor's shared budget.

use super::fetch::{append_all, events_of, unreadable};
use super::{ConnectError, Connections, CONNECTED};
use crate::log::EventLog;
use crate::shutdown::Shutdown;
use crate::store::VendorConnection;
use auren_core::ingest::backfill_marker;
use auren_core::model::Vendor;
use auren_core::pseudonym::Pseudonymizer;
use auren_core::vendors::oura::data as oura;
use auren_core::vendors::whoop::data::{self as whoop, Recovery, Sleep, Workout};
use auren_core::vendors::NormalisedSample;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a sync may hold a connection before another instance may take it over.
const LEASE: ChronoDuration = ChronoDuration::minutes(10);
/// How often to look for due connections when none was.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// A backfill advances (and records progress) this many days at a time.
const WINDOW_DAYS: i64 = 10;
/// A reconciliation fetches again from this long before the last sync: objects are dated by
/// their start (a night, a day), and vendors rescore them for a day or so afterwards.
const OVERLAP: ChronoDuration = ChronoDuration::days(2);
/// WHOOP collections return at most 25 records a page.
const WHOOP_PAGE: &str = "25";
/// Pages followed in one window before giving up on a vendor that never stops paging.
const MAX_PAGES: usize = 500;

pub struct Syncer {
    pub connections: Arc<Connections>,
    pub log: Arc<dyn EventLog>,
    pub pseudonyms: Pseudonymizer,
    pub topic: String,
}

impl Syncer {
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let vendors: Vec<String> = self
            .connections
            .configured()
            .map(|v| v.as_str().to_string())
            .collect();
        if vendors.is_empty() {
            shutdown.wait().await;
            return Ok(());
        }
        let owner = format!("sync-{}", uuid::Uuid::new_v4().simple());
        tracing::info!("backfilling and reconciling vendor connections");
        while !shutdown.is_triggered() {
            let now = Utc::now();
            let claimed = self
                .connections
                .store()
                .claim_sync(&vendors, &owner, now, now + LEASE)
                .await;
            match claimed {
                Ok(Some(c)) => self.sync(c, &owner, &shutdown).await,
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = shutdown.wait() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for connections to sync");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL * 5) => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
        Ok(())
    }

    fn next_reconcile(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let period = self.connections.settings().reconcile_interval_seconds as f64;
        let jitter = period * 0.1 * rand::random::<f64>();
        now + ChronoDuration::milliseconds(((period - jitter) * 1000.0) as i64)
    }

    /// One backfill or reconciliation of one connection; the lease is released at the end.
    async fn sync(&self, c: VendorConnection, owner: &str, shutdown: &Shutdown) {
        let Ok(vendor) = super::vendor_of(&c.vendor) else {
            return;
        };
        let user = c.user_id.clone();
        let store = self.connections.store().clone();
        let started = Utc::now();
        let mut st = c.sync.clone();
        let backfill = st.backfill_status != "done";
        let kind = if backfill { "backfill" } else { "reconcile" };
        let from = if backfill {
            let since = *st.backfill_from.get_or_insert_with(|| {
                started - ChronoDuration::days(self.connections.settings().backfill_days.into())
            });
            if st.backfill_done_until.is_none() {
                // Ahead of the history, in the user's partition: the bridge reads it first.
                let marker = backfill_marker(vendor, &user, since, &self.pseudonyms, started);
                if !append_all(&*self.log, &self.topic, &[marker], shutdown).await {
                    let _ = store
                        .save_sync(&c.vendor, &user, owner, &c.sync, None)
                        .await;
                    return;
                }
            }
            st.backfill_status = "running".into();
            st.backfill_done_until.unwrap_or(since)
        } else {
            st.synced_until.unwrap_or(started).min(started) - OVERLAP
        };
        let mut cursor = from;
        let mut fetched = 0usize;
        let outcome: Result<(), ConnectError> = loop {
            if cursor >= started {
                break Ok(());
            }
            if shutdown.is_triggered() {
                break Err(ConnectError::Unavailable("shutting down".into()));
            }
            let end = (cursor + ChronoDuration::days(WINDOW_DAYS)).min(started);
            let mut samples = match self.window(vendor, &c, cursor, end, shutdown).await {
                Ok(s) => s,
                Err(e) => break Err(e),
            };
            // Oldest first: the engine's latest values and baselines then build as they would
            // have live.
            samples.sort_by_key(|s| s.occurred_at);
            let events = events_of(vendor, &user, &samples, &self.pseudonyms);
            if !append_all(&*self.log, &self.topic, &events, shutdown).await {
                break Err(ConnectError::Unavailable("shutting down".into()));
            }
            fetched += events.len();
            cursor = end;
            if backfill {
                st.backfill_done_until = Some(end);
                st.backfill_events += events.len() as i64;
                metrics::counter!("auren_vendor_backfilled_events_total", "vendor" => vendor.as_str())
                    .increment(events.len() as u64);
            }
            match store
                .save_sync(&c.vendor, &user, owner, &st, Some(Utc::now() + LEASE))
                .await
            {
                Ok(true) => {}
                // Another instance took the connection over (this one was too slow): it goes on.
                Ok(false) => return,
                Err(e) => break Err(e.into()),
            }
        };
        let now = Utc::now();
        let outcome_label = match &outcome {
            Ok(()) => {
                if backfill {
                    st.backfill_status = "done".into();
                }
                st.synced_until = Some(started);
                st.next_sync_at = Some(self.next_reconcile(now));
                let _ = store
                    .set_health(&c.vendor, &user, CONNECTED, None, Some(now))
                    .await;
                tracing::info!(vendor = %vendor, kind, readings = fetched, "vendor sync done");
                "done"
            }
            Err(e) => {
                let wait = match e {
                    ConnectError::RateLimited(Some(after)) => *after,
                    _ if shutdown.is_triggered() => Duration::ZERO,
                    _ => Duration::from_secs(60),
                };
                st.next_sync_at = (!shutdown.is_triggered())
                    .then(|| now + ChronoDuration::from_std(wait).unwrap_or_default());
                if !shutdown.is_triggered() && !matches!(e, ConnectError::Revoked) {
                    let _ = store
                        .set_health(&c.vendor, &user, CONNECTED, Some(e.reason()), None)
                        .await;
                }
                tracing::warn!(vendor = %vendor, kind, reason = e.reason(), "vendor sync stopped; resumed later");
                e.reason()
            }
        };
        metrics::counter!("auren_vendor_syncs_total", "vendor" => vendor.as_str(), "kind" => kind, "outcome" => outcome_label).increment(1);
        if let Err(e) = store.save_sync(&c.vendor, &user, owner, &st, None).await {
            tracing::warn!(error = %e, "could not store vendor sync progress");
        }
    }

    /// Every reading of the connection's data types in [from, to).
    async fn window(
        &self,
        vendor: Vendor,
        c: &VendorConnection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        shutdown: &Shutdown,
    ) -> Result<Vec<NormalisedSample>, ConnectError> {
        match vendor {
            Vendor::Whoop => self.whoop_window(&c.user_id, from, to, shutdown).await,
            _ => self.oura_window(c, from, to, shutdown).await,
        }
    }

    /// A GET that waits out rate limits and retries transient failures a few times.
    async fn get(
        &self,
        vendor: Vendor,
        user: &str,
        path: &str,
        shutdown: &Shutdown,
    ) -> Result<Vec<u8>, ConnectError> {
        let mut attempt = 0u32;
        loop {
            let r = self.connections.vendor_get(vendor, user, path).await;
            let wait = match &r {
                Err(ConnectError::RateLimited(after)) if attempt < 20 => after
                    .unwrap_or(Duration::from_secs(1))
                    .min(Duration::from_secs(300)),
                Err(ConnectError::Unavailable(_)) if attempt < 4 => {
                    Duration::from_millis(500 << attempt)
                }
                _ => return r,
            };
            attempt += 1;
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait() => return r,
            }
        }
    }

    /// Every page of a WHOOP collection in [from, to).
    async fn whoop_pages<T: serde::de::DeserializeOwned>(
        &self,
        user: &str,
        path: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        shutdown: &Shutdown,
    ) -> Result<Vec<T>, ConnectError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut url = url::Url::parse("http://x/").expect("a constant URL");
            {
                let mut q = url.query_pairs_mut();
                q.append_pair("start", &iso(from))
                    .append_pair("end", &iso(to))
                    .append_pair("limit", WHOOP_PAGE);
                if let Some(t) = &token {
                    q.append_pair("nextToken", t);
                }
            }
            let query = url.query().unwrap_or_default();
            let body = self
                .get(Vendor::Whoop, user, &format!("{path}?{query}"), shutdown)
                .await?;
            let page: whoop::Page<T> = whoop::parse(&body).map_err(unreadable)?;
            out.extend(page.records);
            match page.next_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
        Err(ConnectError::Unavailable("the vendor kept paging".into()))
    }

    async fn whoop_window(
        &self,
        user: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        shutdown: &Shutdown,
    ) -> Result<Vec<NormalisedSample>, ConnectError> {
        let sleeps: Vec<Sleep> = self
            .whoop_pages(user, "/v2/activity/sleep", from, to, shutdown)
            .await?;
        let recoveries: Vec<Recovery> = self
            .whoop_pages(user, "/v2/recovery", from, to, shutdown)
            .await?;
        let workouts: Vec<Workout> = self
            .whoop_pages(user, "/v2/activity/workout", from, to, shutdown)
            .await?;
        let mut out: Vec<NormalisedSample> = sleeps.iter().flat_map(whoop::sleep_samples).collect();
        let by_id: HashMap<&str, &Sleep> = sleeps.iter().map(|s| (s.id.as_str(), s)).collect();
        for r in &recoveries {
            let fetched;
            let sleep = match by_id.get(r.sleep_id.as_str()) {
                Some(s) => *s,
                // A recovery whose sleep started before the window.
                None => {
                    let body = self
                        .get(
                            Vendor::Whoop,
                            user,
                            &format!("/v2/activity/sleep/{}", r.sleep_id),
                            shutdown,
                        )
                        .await?;
                    fetched = whoop::parse::<Sleep>(&body).map_err(unreadable)?;
                    &fetched
                }
            };
            out.extend(whoop::recovery_samples(r, sleep));
        }
        out.extend(workouts.iter().flat_map(whoop::workout_samples));
        Ok(out)
    }

    async fn oura_window(
        &self,
        c: &VendorConnection,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        shutdown: &Shutdown,
    ) -> Result<Vec<NormalisedSample>, ConnectError> {
        let granted: Vec<&str> = c.scope.split_whitespace().collect();
        let mut out = Vec::new();
        for dt in oura::DATA_TYPES {
            // The user consents to each data type separately; a type not granted is not asked.
            if !granted.is_empty() && !granted.iter().any(|g| oura_scope_covers(g, dt.scope)) {
                continue;
            }
            let mut token: Option<String> = None;
            for page in 0.. {
                if page == MAX_PAGES {
                    return Err(ConnectError::Unavailable("the vendor kept paging".into()));
                }
                let mut url = url::Url::parse("http://x/").expect("a constant URL");
                {
                    let mut q = url.query_pairs_mut();
                    match dt.dated_by {
                        oura::DateRange::Dates => {
                            // Oura's end date is inclusive; a day is read twice at the seams
                            // and refused the second time as a duplicate.
                            q.append_pair("start_date", &from.date_naive().to_string())
                                .append_pair("end_date", &to.date_naive().to_string());
                        }
                        oura::DateRange::DateTimes => {
                            q.append_pair("start_datetime", &iso(from))
                                .append_pair("end_datetime", &iso(to));
                        }
                    }
                    if let Some(t) = &token {
                        q.append_pair("next_token", t);
                    }
                }
                let query = url.query().unwrap_or_default();
                let path = format!("/v2/usercollection/{}?{query}", dt.path);
                let body = match self.get(Vendor::Oura, &c.user_id, &path, shutdown).await {
                    Ok(b) => b,
                    // Consent withdrawn for this type (or a lapsed membership): the others go on.
                    Err(ConnectError::Refused(_)) | Err(ConnectError::NotFound) => {
                        tracing::info!(data_type = dt.webhook, "Oura refused a data type; skipped");
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let (samples, next) = oura::page_samples(dt.webhook, &body).map_err(unreadable)?;
                out.extend(samples);
                match next.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        Ok(out)
    }
}

/// Whether a granted Oura scope covers what a data type needs (`spo2` is how some clients spell
/// `spo2Daily`).
fn oura_scope_covers(granted: &str, needed: &str) -> bool {
    granted == needed || (needed == "spo2Daily" && granted == "spo2")
}

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
