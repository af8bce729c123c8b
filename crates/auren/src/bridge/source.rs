//! Where the bridge reads events from: the embedded log or a Kafka consumer group.
//!
//! Both start from the offsets the bridge stored with its own state, so a restart resumes where
//! the durable state ends. Records come in per-partition order; a batch is bounded by `max`.

use crate::log::embedded::EmbeddedReader;
use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: Vec<u8>,
}

#[async_trait]
pub trait Source: Send {
    /// Up to `max` records, waiting a short while when there are none.
    async fn poll(&mut self, max: usize) -> anyhow::Result<Vec<SourceRecord>>;
    /// The bridge made everything before these next-offsets durable.
    async fn committed(&mut self, offsets: &[(i32, i64)]);
    /// Messages not yet consumed, per partition.
    async fn lag(&mut self) -> Vec<(i32, i64)>;
}

pub struct EmbeddedSource {
    reader: Arc<Mutex<Option<EmbeddedReader>>>,
    data_dir: PathBuf,
    topic: String,
    next: HashMap<i32, i64>,
    notify: Option<Arc<Notify>>,
    wait: Duration,
}

impl EmbeddedSource {
    pub fn new(
        data_dir: PathBuf,
        topic: String,
        start: &[(i32, i64)],
        notify: Option<Arc<Notify>>,
    ) -> Self {
        Self {
            reader: Arc::new(Mutex::new(None)),
            data_dir,
            topic,
            next: start.iter().copied().collect(),
            notify,
            wait: Duration::from_millis(200),
        }
    }

    fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&EmbeddedReader) -> anyhow::Result<T> + Send + 'static,
    ) -> impl std::future::Future<Output = anyhow::Result<Option<T>>> {
        let reader = self.reader.clone();
        let dir = self.data_dir.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut guard = reader.lock().unwrap_or_else(|e| e.into_inner());
                if guard.is_none() {
                    // The log file appears with the first webhook.
                    match EmbeddedReader::open(&dir) {
                        Ok(r) => *guard = Some(r),
                        Err(_) => return Ok(None),
                    }
                }
                f(guard.as_ref().expect("just opened")).map(Some)
            })
            .await?
        }
    }
}

#[async_trait]
impl Source for EmbeddedSource {
    async fn poll(&mut self, max: usize) -> anyhow::Result<Vec<SourceRecord>> {
        // Register for the commit signal before reading, so a commit in between is not missed.
        let notify = self.notify.clone();
        let notified = notify.as_ref().map(|n| n.notified());
        let topic = self.topic.clone();
        let next = self.next.clone();
        let batch = self
            .with_reader(move |r| {
                let parts = r.partitions(&topic)?.unwrap_or(0) as i32;
                let mut out = Vec::new();
                let per = (max / parts.max(1) as usize).max(1);
                for p in 0..parts {
                    let from = next.get(&p).copied().unwrap_or(0);
                    out.extend(
                        r.fetch(&topic, p, from, per)?
                            .into_iter()
                            .map(|l| SourceRecord {
                                partition: p,
                                offset: l.offset,
                                key: l.key,
                                value: l.value,
                            }),
                    );
                }
                Ok(out)
            })
            .await?
            .unwrap_or_default();
        if batch.is_empty() {
            match notified {
                Some(n) => {
                    let _ = tokio::time::timeout(self.wait, n).await;
                }
                None => tokio::time::sleep(self.wait).await,
            }
        }
        for r in &batch {
            self.next.insert(r.partition, r.offset + 1);
        }
        Ok(batch)
    }

    async fn committed(&mut self, _offsets: &[(i32, i64)]) {}

    async fn lag(&mut self) -> Vec<(i32, i64)> {
        let topic = self.topic.clone();
        let ends = self
            .with_reader(move |r| r.end_offsets(&topic))
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        ends.iter()
            .enumerate()
            .map(|(p, end)| {
                (
                    p as i32,
                    (end - self.next.get(&(p as i32)).copied().unwrap_or(0)).max(0),
                )
            })
            .collect()
    }
}

pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    topic: String,
    /// Offsets the bridge stored; a partition assigned later starts at least here.
    stored: HashMap<i32, i64>,
    positions: HashMap<i32, i64>,
}

impl KafkaSource {
    pub fn new(
        bootstrap: &str,
        group: &str,
        topic: &str,
        stored: &[(i32, i64)],
        session_timeout_ms: u32,
    ) -> anyhow::Result<Self> {
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
impl Source for KafkaSource {
    async fn poll(&mut self, max: usize) -> anyhow::Result<Vec<SourceRecord>> {
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
