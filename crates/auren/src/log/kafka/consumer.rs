//! The bridge's Kafka consumer: a member of the bridge's consumer group that starts each
//! assigned partition no earlier than the offset the bridge stored with its own state (Kafka's
//! committed offset can lag ours after a crash between the two commits).

use crate::log::{LogError, SourceRecord, Subscription};
use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// Offsets the bridge stored; a partition assigned later starts at least here.
    stored: HashMap<i32, i64>,
    positions: HashMap<i32, i64>,
}

impl KafkaSubscription {
    pub fn new(
        bootstrap: &str,
        group: &str,
        topic: &str,
        stored: &[(i32, i64)],
        session_timeout_ms: u32,
    ) -> Result<Self, LogError> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
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
            .create()?;
        consumer.subscribe(&[topic])?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: topic.to_string(),
            stored: stored.iter().copied().collect(),
            positions: HashMap::new(),
        })
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize) -> Result<Vec<SourceRecord>, LogError> {
        let mut out = Vec::new();
        let first = tokio::time::timeout(Duration::from_millis(200), self.consumer.recv()).await;
        let mut next = match first {
            Err(_) => return Ok(out),
            Ok(m) => Some(m),
        };
        while let Some(m) = next.take() {
            let m = m?;
            let (p, o) = (m.partition(), m.offset());
            // Behind what the bridge already made durable (Kafka's committed offset can lag ours
            // after a crash between our commit and Kafka's): skip.
            if self.stored.get(&p).is_none_or(|s| o >= *s) {
                out.push(SourceRecord {
                    partition: p,
                    offset: o,
                    key: m
                        .key()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                    value: m.payload().unwrap_or_default().to_vec(),
                });
            }
            self.positions.insert(p, o + 1);
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
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            self.stored.insert(*p, *o);
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
        }
        if tpl.count() > 0 {
            if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
                tracing::debug!(error = %e, "committing offsets to the Kafka group failed; our stored offsets stand");
            }
        }
    }

    async fn lag(&mut self) -> Vec<(i32, i64)> {
        let consumer = self.consumer.clone();
        let topic = self.topic.clone();
        let positions = self.positions.clone();
        tokio::task::spawn_blocking(move || {
            let assigned = consumer.assignment().ok()?;
            let parts: Vec<i32> = assigned.elements().iter().map(|e| e.partition()).collect();
            Some(
                parts
                    .into_iter()
                    .filter_map(|p| {
                        let (_, high) = consumer
                            .fetch_watermarks(&topic, p, Duration::from_secs(2))
                            .ok()?;
                        Some((p, (high - positions.get(&p).copied().unwrap_or(0)).max(0)))
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
