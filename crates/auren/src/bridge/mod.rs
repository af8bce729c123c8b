//! The bridge: consumes `biometric-events` in per-partition order, applies each event to its
//! user's state with the pure engine, and makes the result durable.
//!
//! **Exactly once.** Every checkpoint records the log position of the last event it includes, and
//! the partition offsets are written in the same transaction as the checkpoints. A partition's
//! stored offset never passes an event whose effect is still only in memory (a dirty user), so
//! after a crash the bridge resumes from its stored offsets and skips, per user, every event its
//! checkpoint already includes. State ends up as if nothing had happened.
//!
//! **Switches** are written to `mode_history` in that same transaction (an outbox), then
//! published to `cognitive-mode-switches` and marked published. Switch ids are deterministic, so a
//! replay re-derives the same id and the history keeps it once; the outbox is drained at start.
//!
//! **Back-pressure.** One bounded batch at a time: the next poll waits for the store commit, so a
//! slow store slows consumption and memory stays bounded (`max_batch`, `max_users_in_memory`).
//!
//! **Degradation.** An event that cannot be read goes to `biometric-events.dlq` with its error and
//! the partition moves on. A cache outage is counted and logged; a store outage stops progress
//! (nothing is acknowledged past it) and the bridge retries from its last durable point.

use crate::cache::{CachedUser, StateCache};
use crate::log::{EventLog, Record, SourceRecord, Subscription};
use crate::messages::{
    thread_id, DeadLetter, LogPosition, Original, SeriesPoint, StateView, SwitchMessage,
    MESSAGE_SCHEMA,
};
use crate::reload::ConfigHandle;
use crate::settings::{BridgeSettings, LogSettings};
use crate::shutdown::Shutdown;
use crate::store::{CheckpointRow, CommitBatch, OutboxSwitch, StateStore};
use auren_core::engine::{ModeSwitch, UserState};
use auren_core::model::{BiometricEvent, EventId, Payload, EVENT_SCHEMA_VERSION};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the bridge keeps in memory per user, kept small: the thread id is derived from the
/// pseudonym (the map key) when needed, and the checkpoint id is a UUID, not its text.
pub struct Tracked {
    pub state: UserState,
    pub user_id: String,
    checkpoint_id: Option<uuid::Uuid>,
    version: i64,
    last_position: Option<(i32, i64)>,
    /// Position of the first event applied since the last checkpoint.
    dirty_since: Option<(i32, i64)>,
    last_used: u64,
}

impl Tracked {
    /// A user the bridge has not seen before.
    pub fn fresh(user_id: &str) -> Self {
        Self {
            state: UserState::default(),
            user_id: user_id.to_string(),
            checkpoint_id: None,
            version: 0,
            last_position: None,
            dirty_since: None,
            last_used: 0,
        }
    }
}

pub struct Bridge {
    args: BridgeSettings,
    topics: LogSettings,
    config: Arc<ConfigHandle>,
    store: Arc<dyn StateStore>,
    cache: Arc<dyn StateCache>,
    log: Arc<dyn EventLog>,
    users: HashMap<String, Tracked>,
    /// Next offset per partition seen so far (the end of what was read).
    read_to: HashMap<i32, i64>,
    /// The stored offsets at the last (re)start: where a partition's progress begins. Only
    /// partitions this bridge read from enter `read_to`, so it never writes the offsets of
    /// partitions another bridge of the group owns.
    start: HashMap<i32, i64>,
    last_flush: Instant,
    /// A publish failed: switches wait in the outbox; retried after every batch until it drains.
    outbox_pending: bool,
    tick: u64,
    window: (u64, u64, Instant),
    /// Agent sinks each new switch is queued for in the commit, and the loops to wake after it.
    sinks: Vec<String>,
    wake: crate::delivery::Waker,
}

impl Bridge {
    pub fn new(
        args: BridgeSettings,
        topics: LogSettings,
        config: Arc<ConfigHandle>,
        store: Arc<dyn StateStore>,
        cache: Arc<dyn StateCache>,
        log: Arc<dyn EventLog>,
    ) -> Self {
        Self {
            args,
            topics,
            config,
            store,
            cache,
            log,
            users: HashMap::new(),
            read_to: HashMap::new(),
            start: HashMap::new(),
            last_flush: Instant::now(),
            outbox_pending: false,
            tick: 0,
            window: (0, 0, Instant::now()),
            sinks: Vec::new(),
            wake: crate::delivery::Waker::default(),
        }
    }

    /// Queues every new switch for `sinks` (and the webhook endpoints) in the commit and wakes
    /// the delivery loops after it.
    pub fn with_delivery(mut self, sinks: Vec<String>, wake: crate::delivery::Waker) -> Self {
        self.sinks = sinks;
        self.wake = wake;
        self
    }

    /// Runs until `shutdown` fires, then checkpoints what it holds. After a store or log failure
    /// it subscribes again from its stored offsets, so progress restarts from the last durable
    /// point.
    pub async fn run(mut self, shutdown: Shutdown) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        'restart: loop {
            let subscribed = match self
                .store
                .load_offsets(&self.args.group, &self.topics.events_topic)
                .await
            {
                Ok(offsets) => self
                    .log
                    .subscribe(&self.args.group, &self.topics.events_topic, &offsets)
                    .await
                    .map(|s| (offsets, s))
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            let (offsets, mut source) = match subscribed {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "bridge cannot resume from its offsets; retrying");
                    if wait_or_stop(&shutdown, backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            self.users.clear();
            self.read_to.clear();
            self.start = offsets.iter().copied().collect();
            self.outbox_pending = true;
            self.retry_outbox().await;
            let mut last_lag = Instant::now() - Duration::from_secs(60);
            loop {
                if shutdown.is_triggered() {
                    if let Err(e) = self.flush_all(&mut *source).await {
                        tracing::warn!(error = %format!("{e:#}"), "final checkpoint failed; the log replays what it held");
                    }
                    return Ok(());
                }
                let batch = tokio::select! {
                    b = source.poll(self.args.max_batch as usize) => b,
                    _ = shutdown.wait() => continue,
                };
                let result = match batch {
                    // A poll that found nothing is no batch worth a span.
                    Ok(records) if records.is_empty() => self.process(&mut *source, records).await,
                    Ok(records) => {
                        let span = tracing::info_span!(
                            target: crate::telemetry::TRACE_TARGET,
                            "bridge.batch",
                            records = records.len(),
                        );
                        tracing::Instrument::instrument(self.process(&mut *source, records), span)
                            .await
                    }
                    Err(crate::log::LogError::Rebalanced) => self.rebalanced(&mut *source).await,
                    Err(e) => Err(e.into()),
                };
                if let Err(e) = result {
                    metrics::counter!("auren_bridge_restarts_total").increment(1);
                    tracing::warn!(error = %format!("{e:#}"), "bridge batch failed; resuming from the last durable point");
                    if wait_or_stop(&shutdown, backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue 'restart;
                }
                backoff = Duration::from_millis(200);
                if last_lag.elapsed() >= Duration::from_secs(5) {
                    last_lag = Instant::now();
                    self.report_lag(&mut *source).await;
                }
            }
        }
    }

    /// Partitions moved between the group's bridges. Whatever this one holds may now belong to
    /// another, or be behind what another made durable meanwhile: it is dropped, not saved, and
    /// reading goes on from the store's offsets. Nothing is lost: what was not checkpointed is
    /// read again by whoever owns its partition now. A bridge that died between its commit and
    /// its publish left switches in the outbox: they are published after the next batch.
    async fn rebalanced(&mut self, source: &mut dyn Subscription) -> anyhow::Result<()> {
        let offsets = self
            .store
            .load_offsets(&self.args.group, &self.topics.events_topic)
            .await?;
        let dropped = self.users.len();
        self.users.clear();
        self.read_to.clear();
        self.start = offsets.iter().copied().collect();
        self.outbox_pending = true;
        source.reset(&offsets).await;
        tracing::info!(
            dropped_users = dropped,
            "consumer group rebalanced; resuming from the stored offsets"
        );
        Ok(())
    }

    async fn report_lag(&self, source: &mut dyn Subscription) {
        let threshold = self.config.current().alerts.consumer_lag_threshold as i64;
        for (p, lag) in source.lag().await {
            metrics::gauge!("auren_consumer_lag", "partition" => p.to_string()).set(lag as f64);
            if lag > threshold {
                tracing::warn!(
                    partition = p,
                    lag,
                    threshold,
                    "consumer lag above alerts.consumer_lag_threshold"
                );
            }
        }
    }

    async fn tracked(&mut self, pseudonym: &str, user_id: &str) -> anyhow::Result<&mut Tracked> {
        self.tick += 1;
        if !self.users.contains_key(pseudonym) {
            let t = match self.store.load_user(pseudonym).await? {
                Some(u) => {
                    let state = serde_json::from_value(u.state).unwrap_or_else(|e| {
                        metrics::counter!("auren_checkpoint_unreadable_total").increment(1);
                        tracing::error!(user = pseudonym, error = %e, "checkpoint unreadable; starting the user afresh");
                        UserState::default()
                    });
                    Tracked {
                        state,
                        user_id: u.user_id,
                        checkpoint_id: u.checkpoint_id.parse().ok(),
                        version: u.version,
                        last_position: u.last_position,
                        dirty_since: None,
                        last_used: 0,
                    }
                }
                None => Tracked::fresh(user_id),
            };
            self.users.insert(pseudonym.to_string(), t);
        }
        let t = self.users.get_mut(pseudonym).expect("inserted above");
        t.last_used = self.tick;
        Ok(t)
    }

    fn dlq_record(&self, r: &SourceRecord, error: &str) -> Record {
        let topic = &self.topics.events_topic;
        let letter = DeadLetter {
            schema: MESSAGE_SCHEMA,
            error: error.to_string(),
            failed_at: chrono::Utc::now(),
            source: LogPosition {
                topic: topic.clone(),
                partition: r.partition,
                offset: r.offset,
            },
            original: Original::of(&r.value),
        };
        Record {
            key: r.key.clone(),
            event_id: EventId::derive(&[
                "dlq",
                topic,
                &r.partition.to_string(),
                &r.offset.to_string(),
            ])
            .to_string(),
            value: serde_json::to_vec(&letter).unwrap_or_default(),
        }
    }

    async fn process(
        &mut self,
        source: &mut dyn Subscription,
        records: Vec<SourceRecord>,
    ) -> anyhow::Result<()> {
        let cfg = self.config.current();
        let mut switches: Vec<(String, ModeSwitch)> = Vec::new();
        let mut dlq = Vec::new();
        let mut urgent: HashSet<String> = HashSet::new();
        let mut points: HashMap<String, Vec<SeriesPoint>> = HashMap::new();
        let n = records.len() as u64;
        for r in records {
            let start = self.start.get(&r.partition).copied().unwrap_or(0);
            let next = self.read_to.entry(r.partition).or_insert(start);
            *next = (*next).max(r.offset + 1);
            let event: BiometricEvent = match serde_json::from_slice::<BiometricEvent>(&r.value) {
                Ok(e) if e.schema == EVENT_SCHEMA_VERSION => e,
                Ok(e) => {
                    dlq.push(
                        self.dlq_record(&r, &format!("unsupported event schema {}", e.schema)),
                    );
                    continue;
                }
                Err(e) => {
                    dlq.push(self.dlq_record(&r, &format!("not a biometric event: {e}")));
                    continue;
                }
            };
            let pseudonym = event.subject.pseudonym.clone();
            let t = self.tracked(&pseudonym, &event.subject.id).await?;
            if t.last_position
                .is_some_and(|(p, o)| p == r.partition && r.offset <= o)
            {
                metrics::counter!("auren_kafka_messages_processed_total", "outcome" => "already_applied").increment(1);
                continue;
            }
            let out = t.state.apply(&cfg, &pseudonym, &event);
            t.last_position = Some((r.partition, r.offset));
            let outcome = if out.duplicate {
                "duplicate"
            } else if !out.applied {
                "notification"
            } else if out.artefact {
                "artefact"
            } else {
                "applied"
            };
            metrics::counter!("auren_kafka_messages_processed_total", "outcome" => outcome)
                .increment(1);
            if !out.applied {
                // Position moved without a state change; the next checkpoint records it.
                continue;
            }
            t.version += 1;
            t.dirty_since.get_or_insert((r.partition, r.offset));
            if let Payload::Reading(reading) = &event.payload {
                points
                    .entry(pseudonym.clone())
                    .or_default()
                    .push(SeriesPoint {
                        metric: reading.metric,
                        value: reading.value,
                        at: event.occurred_at,
                        artefact: out.artefact,
                    });
            }
            if out.significant {
                urgent.insert(pseudonym.clone());
            }
            if let Some(s) = out.switch {
                metrics::counter!("auren_mode_switches_total", "from_mode" => s.from.as_str(), "to_mode" => s.to.as_str()).increment(1);
                tracing::info!(user = %pseudonym, from = %s.from, to = %s.to, confidence = s.confidence, "mode switch");
                urgent.insert(pseudonym.clone());
                switches.push((pseudonym, s));
            }
        }
        if !dlq.is_empty() {
            metrics::counter!("auren_kafka_messages_processed_total", "outcome" => "dlq")
                .increment(dlq.len() as u64);
            tracing::warn!(count = dlq.len(), "events sent to the dead-letter topic");
        }
        self.alert_error_rate(n, dlq.len() as u64, cfg.alerts.error_rate_threshold);
        let interval = Duration::from_secs(cfg.checkpoint.checkpoint_interval_seconds);
        let due = self.last_flush.elapsed() >= interval;
        let flush_users: Vec<String> = if due {
            self.dirty_users()
        } else {
            urgent.into_iter().collect()
        };
        if due || !flush_users.is_empty() || !dlq.is_empty() {
            self.commit(
                source,
                flush_users,
                switches,
                dlq,
                cfg.alerts.checkpoint_latency_threshold,
            )
            .await?;
        }
        if due {
            self.last_flush = Instant::now();
        }
        self.cache_users(points).await;
        self.evict();
        self.retry_outbox().await;
        Ok(())
    }

    async fn retry_outbox(&mut self) {
        if !self.outbox_pending {
            return;
        }
        match self.drain_outbox().await {
            Ok(()) => self.outbox_pending = false,
            Err(e) => tracing::warn!(error = %e, "could not publish pending switches yet"),
        }
    }

    fn alert_error_rate(&mut self, seen: u64, failed: u64, threshold: f64) {
        self.window.0 += seen;
        self.window.1 += failed;
        if self.window.2.elapsed() >= Duration::from_secs(60) {
            let (seen, failed) = (self.window.0, self.window.1);
            if seen > 0 && failed as f64 / seen as f64 > threshold {
                tracing::warn!(
                    seen,
                    failed,
                    threshold,
                    "dead-letter rate above alerts.error_rate_threshold"
                );
            }
            self.window = (0, 0, Instant::now());
        }
    }

    fn dirty_users(&self) -> Vec<String> {
        self.users
            .iter()
            .filter(|(_, t)| t.dirty_since.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Checkpoints every dirty user (at shutdown).
    async fn flush_all(&mut self, source: &mut dyn Subscription) -> anyhow::Result<()> {
        let users = self.dirty_users();
        let threshold = self.config.current().alerts.checkpoint_latency_threshold;
        self.commit(source, users, Vec::new(), Vec::new(), threshold)
            .await
    }

    /// Makes checkpoints of `flush_users`, the batch's switches and the safe offsets durable in
    /// one transaction, then publishes the switches.
    async fn commit(
        &mut self,
        source: &mut dyn Subscription,
        flush_users: Vec<String>,
        switches: Vec<(String, ModeSwitch)>,
        dlq: Vec<Record>,
        latency_alert: f64,
    ) -> anyhow::Result<()> {
        // Dead letters first: the offsets below move past them only once they are durable.
        if !dlq.is_empty() {
            self.log
                .append(&self.topics.dlq_topic, dlq)
                .await
                .map_err(|e| anyhow::Error::from(e).context("writing to the dead-letter topic"))?;
        }
        let mut batch = CommitBatch {
            keep_checkpoints: i64::from(self.args.checkpoints_kept),
            group: self.args.group.clone(),
            topic: self.topics.events_topic.clone(),
            sinks: self.sinks.clone(),
            ..Default::default()
        };
        let flushing: HashSet<&String> = flush_users.iter().collect();
        let mut new_ids = Vec::new();
        for pseudonym in &flush_users {
            let Some(t) = self.users.get(pseudonym) else {
                continue;
            };
            if t.dirty_since.is_none() {
                continue;
            }
            let id = uuid::Uuid::now_v7();
            batch.checkpoints.push(CheckpointRow {
                checkpoint_id: id.to_string(),
                parent_id: t.checkpoint_id.map(|p| p.to_string()),
                thread_id: thread_id(pseudonym),
                pseudonym: pseudonym.clone(),
                user_id: t.user_id.clone(),
                mode: t.state.mode.as_str().to_string(),
                version: t.version,
                state: serde_json::to_value(&t.state)?,
                last_position: t.last_position,
            });
            new_ids.push((pseudonym.clone(), id));
        }
        for (pseudonym, s) in &switches {
            let user_id = self.users.get(pseudonym).map_or("", |t| t.user_id.as_str());
            batch
                .switches
                .push(SwitchMessage::new(pseudonym, user_id, s));
        }
        // A partition's offset may only pass events whose effects are durable: stop at the first
        // event of any user that stays dirty.
        let mut safe: HashMap<i32, i64> = self.read_to.clone();
        for (k, t) in &self.users {
            if let Some((p, o)) = t.dirty_since {
                if !flushing.contains(k) {
                    let e = safe.entry(p).or_insert(o);
                    *e = (*e).min(o);
                }
            }
        }
        batch.offsets = safe.into_iter().collect();
        batch.offsets.sort();
        let started = Instant::now();
        let span = tracing::info_span!(
            target: crate::telemetry::TRACE_TARGET,
            "store.commit",
            backend = self.store.backend(),
            checkpoints = batch.checkpoints.len(),
            switches = batch.switches.len(),
        );
        tracing::Instrument::instrument(self.store.commit(&batch), span).await?;
        let took = started.elapsed().as_secs_f64();
        metrics::histogram!("auren_checkpoint_save_seconds").record(took);
        if took > latency_alert {
            tracing::warn!(
                seconds = took,
                threshold = latency_alert,
                "checkpoint save above alerts.checkpoint_latency_threshold"
            );
        }
        for (pseudonym, id) in new_ids {
            if let Some(t) = self.users.get_mut(&pseudonym) {
                t.checkpoint_id = Some(id);
                t.dirty_since = None;
                t.state.mark_saved();
            }
        }
        source.committed(&batch.offsets).await;
        if !batch.switches.is_empty() {
            self.wake.wake();
            let batch_switches = batch.switches.len();
            let msgs = batch
                .switches
                .into_iter()
                .map(|m| OutboxSwitch {
                    key: m.user_pseudonym.clone(),
                    message: m,
                })
                .collect();
            let span = tracing::info_span!(
                target: crate::telemetry::TRACE_TARGET,
                "log.publish",
                switches = batch_switches,
            );
            if let Err(e) = tracing::Instrument::instrument(self.publish(msgs), span).await {
                // Committed in the outbox; published when the outbox drains.
                tracing::warn!(error = %e, "publishing mode switches failed; they stay in the outbox");
                self.outbox_pending = true;
            }
        }
        Ok(())
    }

    async fn publish(&self, msgs: Vec<OutboxSwitch>) -> anyhow::Result<()> {
        let records = msgs
            .iter()
            .map(|m| {
                Ok(Record {
                    key: m.key.clone(),
                    event_id: m.message.switch_id.clone(),
                    value: serde_json::to_vec(&m.message)?,
                })
            })
            .collect::<serde_json::Result<_>>()?;
        self.log
            .append(&self.topics.switches_topic, records)
            .await?;
        let ids: Vec<String> = msgs.into_iter().map(|m| m.message.switch_id).collect();
        self.store.mark_published(&ids).await?;
        Ok(())
    }

    /// Publishes switches that were committed but not published before a crash or outage.
    async fn drain_outbox(&self) -> anyhow::Result<()> {
        loop {
            let pending = self.store.unpublished(500).await?;
            if pending.is_empty() {
                return Ok(());
            }
            tracing::info!(
                count = pending.len(),
                "publishing switches left in the outbox"
            );
            self.publish(pending).await?;
        }
    }

    async fn cache_users(&self, points: HashMap<String, Vec<SeriesPoint>>) {
        if points.is_empty() {
            return;
        }
        let cfg = self.config.current();
        let users: Vec<CachedUser> = points
            .into_iter()
            .filter_map(|(pseudonym, points)| {
                let t = self.users.get(&pseudonym)?;
                Some(CachedUser {
                    state: StateView::of(&cfg, &pseudonym, &thread_id(&pseudonym), &t.state),
                    pseudonym,
                    points,
                })
            })
            .collect();
        if let Err(e) = self.cache.put(&users).await {
            metrics::counter!("auren_cache_errors_total", "op" => "state_put").increment(1);
            tracing::warn!(error = %e, backend = self.cache.backend(), "cache write failed; the bridge goes on");
        }
    }

    /// Drops the least recently used clean users beyond the in-memory bound.
    fn evict(&mut self) {
        let max = self.args.max_users_in_memory;
        if self.users.len() <= max {
            return;
        }
        let mut clean: Vec<(u64, String)> = self
            .users
            .iter()
            .filter(|(_, t)| t.dirty_since.is_none())
            .map(|(k, t)| (t.last_used, k.clone()))
            .collect();
        clean.sort();
        let excess = self.users.len() - max;
        for (_, k) in clean.into_iter().take(excess) {
            self.users.remove(&k);
        }
    }
}

/// Refuses to resume from offsets that do not belong to the log in use. Offsets taken from
/// another log (one deleted and made anew, a restored file, another cluster) or beyond the
/// log's end would skip new events as if they were processed, or resume in the middle of
/// different ones. The state store keeps the identity of the log its offsets belong to; a store
/// without one (first start, or one made before identities were kept) adopts the log in use.
pub async fn check_log_position(
    store: &dyn StateStore,
    log: &dyn EventLog,
    group: &str,
    topic: &str,
) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let identity = log
        .identity()
        .await
        .context("asking the event log for its identity")?;
    let offsets = store.load_offsets(group, topic).await?;
    let fix = "Restore the original log, or accept that its events are gone with \
               `auren log adopt` (it forgets the stored offsets; users' states stay)";
    match store.log_identity(topic).await? {
        Some(known) if known == identity => {}
        Some(known) if offsets.iter().any(|(_, o)| *o > 0) => bail!(
            "the state store's offsets for {topic} belong to event log {known}, but the log in \
             use is {identity}: it was deleted, replaced or is another cluster. {fix}"
        ),
        _ => store.adopt_log(topic, &identity, false).await?,
    }
    let ends: HashMap<i32, i64> = match log.end_offsets(topic).await {
        Ok(e) => e.into_iter().collect(),
        Err(crate::log::LogError::UnknownTopic(_)) => HashMap::new(),
        Err(e) => return Err(e).context("reading the event log's end"),
    };
    let ahead: Vec<String> = offsets
        .iter()
        .filter_map(|(p, o)| {
            let end = ends.get(p).copied().unwrap_or(0);
            (*o > end).then(|| format!("partition {p}: stored {o}, log end {end}"))
        })
        .collect();
    if !ahead.is_empty() {
        bail!(
            "the state store's offsets are beyond the end of {topic} ({}): the log lost events \
             it had acknowledged, or was replaced. {fix}",
            ahead.join("; ")
        );
    }
    Ok(())
}

/// Waits `d`, or less when shutdown fires; true when it did.
async fn wait_or_stop(shutdown: &Shutdown, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => shutdown.is_triggered(),
        _ = shutdown.wait() => true,
    }
}
