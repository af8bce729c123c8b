//! The durable event log: what a webhook is acknowledged against.
//!
//! Two adapters behind one small trait: Kafka (production) and an embedded SQLite file (the
//! default, no services needed). Both partition by the user's pseudonym so each user's events
//! stay in order, both number records by (partition, offset), and both only return from
//! [`EventLog::append`] once the records are durable: the HTTP layer answers 2xx after that and
//! never before.

pub mod embedded;
pub mod kafka;

use async_trait::async_trait;

/// Topic names shared by both backends.
pub mod topics {
    pub const EVENTS: &str = "biometric-events";
    pub const DLQ: &str = "biometric-events.dlq";
    pub const MODE_SWITCHES: &str = "cognitive-mode-switches";
    pub const ALL: [&str; 3] = [EVENTS, DLQ, MODE_SWITCHES];
}

/// One record to append. `key` is the user's pseudonym (never a raw id); `event_id` is the
/// event's deterministic id, used to refuse duplicates.
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
    /// An event with this id is already in the log; nothing was written.
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
    #[error("event log did not confirm in time")]
    Timeout,
    /// Another request is writing an event with the same id right now; retry shortly.
    #[error("an event with the same id is being written by another request")]
    InFlight,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends all records durably, or fails. On failure the records that did land are
    /// remembered as written, so a retry of the same request adds each event exactly once.
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError>;
    /// Answers whether the log can take writes now (for /ready).
    async fn check(&self) -> Result<(), LogError>;
    fn backend(&self) -> &'static str;
}
