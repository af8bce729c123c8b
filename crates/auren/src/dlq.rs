//! `auren dlq replay`: sends dead-lettered events back into `biometric-events`, so the bridge
//! processes them again (after a fix, say). Progress is stored like a consumer group's
//! (`auren-dlq-replay`), so each entry is replayed once; an entry that fails again goes back to
//! the DLQ with its new error.

use crate::config::BackendArgs;
use crate::log::{embedded::EmbeddedReader, kafka, LoggedRecord, Record};
use crate::store::CommitBatch;
use auren_core::model::EventId;
use std::collections::HashMap;
use std::time::Duration;

pub const REPLAY_GROUP: &str = "auren-dlq-replay";

fn read_all(b: &BackendArgs, topic: &str) -> anyhow::Result<Vec<LoggedRecord>> {
    let mut out = Vec::new();
    match &b.kafka_bootstrap_servers {
        Some(servers) => kafka::read(servers, topic, true, false, None, |r| {
            out.push(r);
            Ok(())
        })?,
        None => {
            let Ok(reader) = EmbeddedReader::open(&b.data_dir) else {
                return Ok(out);
            };
            let parts = reader.partitions(topic)?.unwrap_or(0);
            for p in 0..parts as i32 {
                out.extend(reader.fetch(topic, p, 0, usize::MAX >> 1)?);
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    Ok(out)
}

pub async fn replay(
    b: &BackendArgs,
    dlq_topic: &str,
    limit: Option<usize>,
) -> anyhow::Result<usize> {
    let stores = crate::app::stores(b).await?;
    let done: HashMap<i32, i64> = stores
        .state
        .load_offsets(REPLAY_GROUP, dlq_topic)
        .await?
        .into_iter()
        .collect();
    let (bb, t) = (b.clone(), dlq_topic.to_string());
    let entries = tokio::task::spawn_blocking(move || read_all(&bb, &t)).await??;
    let mut records = Vec::new();
    let mut next: HashMap<i32, i64> = HashMap::new();
    for e in entries
        .into_iter()
        .filter(|e| done.get(&e.partition).is_none_or(|d| e.offset >= *d))
    {
        if limit.is_some_and(|l| records.len() >= l) {
            break;
        }
        let v: serde_json::Value = serde_json::from_slice(&e.value)?;
        let original = match &v["original"] {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            other => anyhow::bail!(
                "DLQ entry {}:{} has no replayable original ({other})",
                e.partition,
                e.offset
            ),
        };
        // A fresh id for ingest dedup: the original id was already seen, which is why it is here.
        let id = EventId::derive(&[
            "dlq-replay",
            dlq_topic,
            &e.partition.to_string(),
            &e.offset.to_string(),
        ]);
        records.push(Record {
            key: e.key.clone(),
            event_id: id.to_string(),
            value: original,
        });
        next.insert(e.partition, e.offset + 1);
    }
    let n = records.len();
    if n == 0 {
        return Ok(0);
    }
    let timeout = Duration::from_secs(10);
    let dedup = crate::app::dedup(b, timeout).await?;
    let (log, _, _) = crate::app::event_log(b, timeout, dedup)?;
    log.append(&b.events_topic, records)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let batch = CommitBatch {
        group: REPLAY_GROUP.into(),
        topic: dlq_topic.into(),
        offsets: next.into_iter().collect(),
        ..Default::default()
    };
    stores.state.commit(&batch).await?;
    Ok(n)
}
