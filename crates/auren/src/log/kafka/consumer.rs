//! The bridge's Kafka consumer: a member of the bridge's consumer group that starts each
//! assigned partition no earlier than the offset the bridge stored with its own state (Kafka's
//! committed offset can lag ours after a crash between the two commits).
//!
//! **Rebalances.** With several bridges in the group (scale-out), partitions move between them
//! when one joins, leaves or dies. The group uses eager assignment: every member gives up every
//! partition and each assigned partition starts again from the group's committed offset. The
//! consumer's context counts rebalances; the first poll after one answers
//! [`LogError::Rebalanced`], and the bridge drops what it holds in memory (it may be stale or
//! no longer its own), reloads its stored offsets and [`Subscription::reset`]s, so records the
//! previous owner already made durable are skipped, and the others are read again.

use crate::log::{LogError, SourceRecord, Subscription};
use async_trait::async_trait;
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counts the group's assignments.
struct GroupContext {
    assignments: Arc<AtomicU64>,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let parts = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?parts(tpl), "consumer group assignment");
                metrics::counter!("auren_bridge_rebalances_total").increment(1);
                self.assignments.fetch_add(1, Ordering::AcqRel);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?parts(tpl), "consumer group revoked the assignment");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "consumer group rebalance failed"),
        }
    }
}

pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer<GroupContext>>,
    /// A client of its own for the log's end (lag). On the group consumer's connection a
    /// watermark query waits behind a fetch in flight; when it times out librdkafka drops the
    /// connection, and the fetch with it. A survivor taking over a dead bridge's partitions
    /// makes long fetches (it reads from the group's committed offset), and measuring its lag
    /// every few seconds then aborted every one of them: it never caught up (scale-out test).
    watermarks: Arc<BaseConsumer>,
    topic: String,
    /// Offsets the bridge stored; a partition assigned later starts at least here.
    stored: HashMap<i32, i64>,
    positions: HashMap<i32, i64>,
    assignments: Arc<AtomicU64>,
    /// The assignment count this member last answered for.
    seen: u64,
    /// A record that arrived after a rebalance was noticed, kept for after the reset.
    held: Option<SourceRecord>,
    /// Offsets made durable since they were last committed to the Kafka group, and when that was.
    uncommitted: HashMap<i32, i64>,
    kafka_commit_at: Instant,
}

/// How often the bridge's durable offsets are also committed to the Kafka group. Those are only
/// where a newly assigned partition starts reading (the stored offsets decide what is skipped), so
/// a few seconds behind costs a few seconds of records read again and skipped, and spares the
/// broker an offset commit per batch (Tansu answers heartbeats behind them).
const KAFKA_COMMIT_INTERVAL: Duration = Duration::from_secs(5);

fn source_record(m: &BorrowedMessage<'_>) -> SourceRecord {
    SourceRecord {
        partition: m.partition(),
        offset: m.offset(),
        key: m
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        value: m.payload().unwrap_or_default().to_vec(),
    }
}

impl KafkaSubscription {
    pub fn new(
        base: &ClientConfig,
        group: &str,
        topic: &str,
        stored: &[(i32, i64)],
        session_timeout_ms: u32,
    ) -> Result<Self, LogError> {
        let assignments = Arc::new(AtomicU64::new(0));
        let consumer: StreamConsumer<GroupContext> = base
            .clone()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // A long-polling fetch makes Tansu (whose storage serves one request at a time) hold
            // produce requests behind it; short waits keep ingest latency flat.
            .set("fetch.wait.max.ms", "10")
            .set("session.timeout.ms", session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (session_timeout_ms / 3).max(100).to_string(),
            )
            .set("log_level", "4")
            .create_with_context(GroupContext {
                assignments: assignments.clone(),
            })?;
        consumer.subscribe(&[topic])?;
        let watermarks: BaseConsumer = base.clone().set("log_level", "4").create()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            watermarks: Arc::new(watermarks),
            topic: topic.to_string(),
            stored: stored.iter().copied().collect(),
            positions: HashMap::new(),
            assignments,
            // The first assignment is not a change: the bridge starts from its stored offsets.
            seen: 1,
            held: None,
            uncommitted: HashMap::new(),
            kafka_commit_at: Instant::now(),
        })
    }

    /// Whether the group was rebalanced since this member last answered for its assignment.
    fn rebalanced(&self) -> bool {
        self.assignments.load(Ordering::Acquire) > self.seen
    }

    /// Takes a record unless the bridge already made it durable.
    fn take(&mut self, r: SourceRecord, out: &mut Vec<SourceRecord>) {
        let (p, o) = (r.partition, r.offset);
        if self.stored.get(&p).is_none_or(|s| o >= *s) {
            out.push(r);
        }
        self.positions.insert(p, o + 1);
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize) -> Result<Vec<SourceRecord>, LogError> {
        if self.rebalanced() {
            return Err(LogError::Rebalanced);
        }
        let mut out = Vec::new();
        if let Some(r) = self.held.take() {
            self.take(r, &mut out);
        }
        let first = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await;
        let mut next = match first {
            Err(_) => return Ok(out),
            Ok(m) => Some(m),
        };
        while let Some(m) = next.take() {
            let r = source_record(&m?);
            // The assignment changed while waiting: this record belongs to the new one and is
            // judged against the offsets stored after the reset.
            if self.rebalanced() {
                self.held = Some(r);
                break;
            }
            // Behind what the bridge already made durable (Kafka's committed offset can lag ours
            // after a crash between our commit and Kafka's): skip.
            self.take(r, &mut out);
            if out.len() >= max {
                break;
            }
            next = tokio::time::timeout(Duration::from_millis(2), self.consumer.recv())
                .await
                .ok();
        }
        Ok(out)
    }

    async fn committed(&mut self, offsets: &[(i32, i64)]) {
        for (p, o) in offsets {
            self.stored.insert(*p, *o);
            self.uncommitted.insert(*p, *o);
        }
        if self.kafka_commit_at.elapsed() < KAFKA_COMMIT_INTERVAL {
            return;
        }
        self.kafka_commit_at = Instant::now();
        let mut tpl = TopicPartitionList::new();
        for (p, o) in self.uncommitted.drain() {
            let _ = tpl.add_partition_offset(&self.topic, p, Offset::Offset(o));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "committing offsets to the Kafka group failed; our stored offsets stand");
            }
        }
    }

    async fn reset(&mut self, stored: &[(i32, i64)]) {
        self.stored = stored.iter().copied().collect();
        self.positions.clear();
        // Partitions read before the rebalance may be another member's now.
        self.uncommitted.clear();
        self.seen = self.assignments.load(Ordering::Acquire);
    }

    /// Per assigned partition: the log's end less the next offset to process, the further of
    /// where this member has read to and what the bridge stored. A partition that receives
    /// nothing new after a (re)assignment is caught up, not behind by all of its records.
    async fn lag(&mut self) -> Vec<(i32, i64)> {
        let consumer = self.consumer.clone();
        let watermarks = self.watermarks.clone();
        let topic = self.topic.clone();
        let mut positions = self.stored.clone();
        for (p, o) in &self.positions {
            let next = positions.entry(*p).or_insert(*o);
            *next = (*next).max(*o);
        }
        tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment().ok()?;
            let parts: Vec<i32> = assigned.elements().iter().map(|e| e.partition()).collect();
            Some(
                parts
                    .into_iter()
                    .filter_map(|p| {
                        let (low, high) = watermarks
                            .fetch_watermarks(&topic, p, Duration::from_secs(2))
                            .ok()?;
                        let next = positions.get(&p).copied().unwrap_or(low);
                        Some((p, (high - next).max(0)))
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
    }
}
