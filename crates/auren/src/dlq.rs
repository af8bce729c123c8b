//! `auren dlq replay`: sends dead-lettered events back into `biometric-events`, so the bridge
//! processes them again (after a fix, say). Progress is stored like a consumer group's
//! (`auren-dlq-replay`), so each entry is replayed once; an entry that fails again goes back to
//! the DLQ with its new error. An entry that is not a readable dead letter is reported and
//! passed over, never a reason to stop the others.

use crate::log::{LogError, LoggedRecord, Record, StartAt};
use crate::messages::DeadLetter;
use crate::root::Backends;
use crate::store::CommitBatch;
use auren_core::model::EventId;
use futures::StreamExt;
use std::collections::HashMap;

pub const REPLAY_GROUP: &str = "auren-dlq-replay";

/// What a replay did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    pub replayed: usize,
    /// Entries that are not readable dead letters: passed over, with a warning each.
    pub unreadable: usize,
}

/// Every record of the dead-letter topic; a topic that was never written is empty.
async fn read_all(backends: &Backends, topic: &str) -> anyhow::Result<Vec<LoggedRecord>> {
    let log = backends.log().await?;
    let mut stream = log.read(topic, StartAt::Beginning, false);
    let mut out = Vec::new();
    while let Some(r) = stream.next().await {
        match r {
            Ok(r) => out.push(r),
            Err(LogError::UnknownTopic(_)) => break,
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

pub async fn replay(backends: &Backends, limit: Option<usize>) -> anyhow::Result<Replayed> {
    let topics = backends.settings().log.clone();
    let store = backends.state_store().await?;
    let done: HashMap<i32, i64> = store
        .load_offsets(REPLAY_GROUP, &topics.dlq_topic)
        .await?
        .into_iter()
        .collect();
    let entries = read_all(backends, &topics.dlq_topic).await?;
    let mut records = Vec::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    let mut unreadable = 0;
    for e in entries
        .into_iter()
        .filter(|e| done.get(&e.partition).is_none_or(|d| e.offset >= *d))
    {
        if limit.is_some_and(|l| records.len() + unreadable >= l) {
            break;
        }
        next.insert(e.partition, e.offset + 1);
        let original = serde_json::from_slice::<DeadLetter>(&e.value)
            .map_err(|err| err.to_string())
            .and_then(|d| d.original.to_bytes().map_err(|err| err.to_string()));
        let original = match original {
            Ok(bytes) => bytes,
            Err(why) => {
                unreadable += 1;
                tracing::warn!(
                    partition = e.partition,
                    offset = e.offset,
                    error = %why,
                    "dead-letter entry is not replayable; passing over it"
                );
                continue;
            }
        };
        // A fresh id for ingest dedup: the original id was already seen, which is why it is here.
        let id = EventId::derive(&[
            "dlq-replay",
            &topics.dlq_topic,
            &e.partition.to_string(),
            &e.offset.to_string(),
        ]);
        records.push(Record {
            key: e.key.clone(),
            event_id: id.to_string(),
            value: original,
        });
    }
    if next.is_empty() {
        return Ok(Replayed::default());
    }
    let replayed = records.len();
    if !records.is_empty() {
        backends
            .log()
            .await?
            .append(&topics.events_topic, records)
            .await?;
    }
    let batch = CommitBatch {
        group: REPLAY_GROUP.into(),
        topic: topics.dlq_topic.clone(),
        offsets: next.into_iter().collect(),
        ..Default::default()
    };
    store.commit(&batch).await?;
    Ok(Replayed {
        replayed,
        unreadable,
    })
}
