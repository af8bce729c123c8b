//! The durable event log: what a webhook is acknowledged against and what the bridge consumes.
//!
//! One port, [`EventLog`], with two adapters: Kafka (production, [`kafka`]) and an embedded SQLite
//! file (the default, no services needed, [`embedded`]). Both partition by the record's key (a
//! user's pseudonym), so each user's events stay in order; both number records by (partition,
//! offset); both only return from [`EventLog::append`] once the records are durable, so the HTTP
//! layer answers 2xx after that and never before. [`open`] is the one place that picks the
//! backend: nothing outside this folder asks which one is in use.

pub mod embedded;
pub mod kafka;

use crate::cache::Dedup;
use crate::settings::{DataSettings, LogSettings};
use async_trait::async_trait;
use futures::stream::BoxStream;
use std::sync::Arc;

/// One record to append. `key` is the partition key, a user's pseudonym (never a raw id);
/// `event_id` is the record's deterministic id, used to refuse duplicates.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub event_id: String,
    pub value: Vec<u8>,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    Stored {
        partition: i32,
        offset: i64,
    },
    /// A record with this id is already in the log; nothing was written.
    Duplicate,
}

/// A record read back from the log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub timestamp_ms: i64,
    #[serde(skip)]
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    #[error("Kafka")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("embedded log")]
    Embedded(#[source] Arc<rusqlite::Error>),
    #[error("event log did not confirm in time")]
    Timeout,
    /// Another request is writing a record with the same id right now; retry shortly.
    #[error("a record with the same id is being written by another request")]
    InFlight,
    #[error("topic {0} does not exist")]
    UnknownTopic(String),
    /// The log's file was deleted or replaced under the running process: nothing written from
    /// now on would be where readers look, so every append is refused until a restart.
    /// The consumer group moved partitions between its members. What this member holds in
    /// memory may belong to partitions another member now owns, or that another member advanced
    /// meanwhile: the owner must drop it and [`Subscription::reset`] from its stored offsets.
    #[error("the consumer group was rebalanced")]
    Rebalanced,
    #[error("the event log was {0} while running; restart the service (it will refuse to start until the log is restored or adopted)")]
    Replaced(&'static str),
}

impl From<rusqlite::Error> for LogError {
    fn from(e: rusqlite::Error) -> Self {
        LogError::Embedded(Arc::new(e))
    }
}

/// Where a reader starts in each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

/// Records as a reader sees them: every partition, in order within each.
pub type RecordStream = BoxStream<'static, Result<LoggedRecord, LogError>>;

/// A record delivered to a consumer group member.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub value: Vec<u8>,
}

/// A consumer group member reading one topic from positions its owner stored.
#[async_trait]
pub trait Subscription: Send {
    /// Up to `max` records, waiting a short while when there are none.
    async fn poll(&mut self, max: usize) -> Result<Vec<SourceRecord>, LogError>;
    /// The owner made everything before these next-offsets durable.
    async fn committed(&mut self, offsets: &[(i32, i64)]);
    /// After [`LogError::Rebalanced`]: the owner's stored offsets as they are now. Records
    /// below them are not delivered again.
    async fn reset(&mut self, stored: &[(i32, i64)]);
    /// Records not yet consumed, per partition.
    async fn lag(&mut self) -> Vec<(i32, i64)>;
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends all records durably, or fails. On failure the records that did land are
    /// remembered as written, so a retry of the same request adds each record exactly once.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError>;

    /// Joins consumer group `group` on `topic`, starting each partition at the next-offset in
    /// `start` (the positions the caller stored with its own state), else at the beginning.
    async fn subscribe(
        &self,
        group: &str,
        topic: &str,
        start: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError>;

    /// Reads `topic` outside any group: from its beginning or its end, stopping at the end the
    /// log had when reading started unless `follow`. An unknown topic is an
    /// [`LogError::UnknownTopic`] item.
    fn read(&self, topic: &str, from: StartAt, follow: bool) -> RecordStream;

    /// Follows `topic` outside any group, from the given next-offsets (a partition not listed
    /// from its beginning), without end and without committing anything anywhere: for a reader
    /// that must see every record after a position it took itself (with
    /// [`EventLog::end_offsets`]), and resumes from its own positions after an error. The
    /// stream ends after an error item; an unknown topic is a [`LogError::UnknownTopic`] item.
    fn follow(&self, topic: &str, from: &[(i32, i64)]) -> RecordStream;

    /// The next offset to be written in each partition of `topic` (its end), for lag and for
    /// readers that wait until a consumer has caught up.
    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, LogError>;

    /// Creates topics with `partitions` partitions; existing ones keep theirs. Returns
    /// (topic, created?) pairs in the order given.
    async fn create_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        replication_factor: i32,
    ) -> Result<Vec<(String, bool)>, LogError>;

    /// Answers whether the log can take writes now (for /ready and at start).
    async fn check(&self) -> Result<(), LogError>;

    /// Which log this is: stable for its life, different for a log deleted and made anew, or
    /// another cluster. The state store keeps it beside its offsets, so offsets are never
    /// applied to a log they do not belong to.
    async fn identity(&self) -> Result<String, LogError>;

    /// Makes everything appended so far durable and stops writing; appends after it fail.
    async fn close(&self);

    fn backend(&self) -> &'static str;
}

/// Opens the log the settings name: Kafka when bootstrap servers are set, else the embedded log
/// under the data directory. `dedup` stops duplicates in front of Kafka, which cannot refuse one.
pub fn open(
    data: &DataSettings,
    settings: &LogSettings,
    dedup: Arc<dyn Dedup>,
) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(match &settings.kafka_bootstrap_servers {
        Some(servers) => Arc::new(kafka::KafkaLog::new(servers, settings, dedup)?),
        None => Arc::new(embedded::EmbeddedLog::open(
            &data.data_dir,
            settings.embedded_partitions,
        )?),
    })
}

/// Bridges a blocking reader into a [`RecordStream`]: the reader runs on the blocking pool and
/// stops as soon as the stream is dropped (its next send fails).
pub(crate) fn blocking_stream(
    read: impl FnOnce(&dyn Fn(Result<LoggedRecord, LogError>) -> bool) + Send + 'static,
) -> RecordStream {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::task::spawn_blocking(move || {
        read(&|item| tx.blocking_send(item).is_ok());
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}
