//! Read-only access to the embedded log, on connections of its own: `auren log read`, the
//! bridge's subscription and the tests read while the writer writes.

use super::FILE_NAME;
use crate::log::{LogError, LoggedRecord, RecordStream, StartAt};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The longest a following reader waits between looks at a quiet log.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// A read-only connection to the log file.
pub struct EmbeddedReader {
    conn: Connection,
}

impl EmbeddedReader {
    /// Fails when there is no log file yet (it appears with the first write).
    pub fn open(data_dir: &Path) -> Result<Self, LogError> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            return Err(LogError::Unavailable(format!(
                "no embedded log at {}",
                path.display()
            )));
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    /// A reader of `topic` and its partition count. No log file yet, or no such topic in it, is
    /// [`LogError::UnknownTopic`]: for a reader both mean nothing was ever written there.
    pub(super) fn open_topic(data_dir: &Path, topic: &str) -> Result<(Self, u32), LogError> {
        let unknown = || LogError::UnknownTopic(topic.to_string());
        let reader = Self::open(data_dir).map_err(|_| unknown())?;
        let parts = reader.partitions(topic)?.ok_or_else(unknown)?;
        Ok((reader, parts))
    }

    pub fn partitions(&self, topic: &str) -> Result<Option<u32>, LogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT partitions FROM topics WHERE name = ?1",
                [topic],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records of one partition from `from_offset` on, in offset order.
    pub fn fetch(
        &self,
        topic: &str,
        partition: i32,
        from_offset: i64,
        max: usize,
    ) -> Result<Vec<LoggedRecord>, LogError> {
        let mut st = self.conn.prepare_cached(
            "SELECT offset, key, ts_ms, value FROM log
             WHERE topic = ?1 AND partition = ?2 AND offset >= ?3 ORDER BY offset LIMIT ?4",
        )?;
        let rows = st.query_map(params![topic, partition, from_offset, max as i64], |r| {
            Ok(LoggedRecord {
                topic: topic.to_string(),
                partition,
                offset: r.get(0)?,
                key: r.get(1)?,
                timestamp_ms: r.get(2)?,
                value: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Next offset to be written in each partition (the log end).
    pub fn end_offsets(&self, topic: &str) -> Result<Vec<i64>, LogError> {
        let parts = self.partitions(topic)?.unwrap_or(0);
        (0..parts as i32)
            .map(|p| {
                let o: Option<i64> = self.conn.query_row(
                    "SELECT MAX(offset) FROM log WHERE topic = ?1 AND partition = ?2",
                    params![topic, p],
                    |r| r.get(0),
                )?;
                Ok(o.map_or(0, |o| o + 1))
            })
            .collect()
    }
}

/// Records of `topic` from every partition, interleaved by append time as a consumer of all
/// partitions would see them; see [`crate::log::EventLog::read`].
pub(super) fn stream(dir: PathBuf, topic: String, from: StartAt, follow: bool) -> RecordStream {
    crate::log::blocking_stream(move |send| {
        if let Err(e) = read_loop(&dir, &topic, from, follow, send) {
            send(Err(e));
        }
    })
}

fn read_loop(
    dir: &Path,
    topic: &str,
    from: StartAt,
    follow: bool,
    send: &dyn Fn(Result<LoggedRecord, LogError>) -> bool,
) -> Result<(), LogError> {
    let (reader, parts) = EmbeddedReader::open_topic(dir, topic)?;
    let ends = reader.end_offsets(topic)?;
    let mut next: Vec<i64> = match from {
        StartAt::Beginning => vec![0; parts as usize],
        StartAt::End => ends.clone(),
    };
    // Following waits for new records by polling the file: quickly while they keep coming,
    // backing off to `IDLE_POLL` when the log is quiet.
    let mut wait = Duration::from_millis(1);
    loop {
        let mut batch = Vec::new();
        for p in 0..parts as i32 {
            batch.extend(reader.fetch(topic, p, next[p as usize], 500)?);
        }
        batch.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
        let empty = batch.is_empty();
        for r in batch {
            next[r.partition as usize] = r.offset + 1;
            if !send(Ok(r)) {
                return Ok(());
            }
        }
        if empty {
            let at_end = next.iter().zip(&ends).all(|(n, e)| n >= e);
            if !follow && at_end {
                return Ok(());
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(IDLE_POLL);
        } else {
            wait = Duration::from_millis(1);
        }
    }
}

/// See [`crate::log::EventLog::follow`]. Woken by the writer's commit signal (records appear as
/// soon as they are committed), with a slow poll besides in case the signal is missed.
pub(super) fn follow(
    dir: PathBuf,
    topic: String,
    from: &[(i32, i64)],
    notify: std::sync::Arc<tokio::sync::Notify>,
) -> RecordStream {
    use std::collections::{HashMap, VecDeque};
    use std::sync::{Arc, Mutex};
    struct Follow {
        dir: PathBuf,
        topic: String,
        next: HashMap<i32, i64>,
        notify: Arc<tokio::sync::Notify>,
        reader: Arc<Mutex<Option<EmbeddedReader>>>,
        pending: VecDeque<LoggedRecord>,
        failed: bool,
    }
    let state = Follow {
        dir,
        topic,
        next: from.iter().copied().collect(),
        notify,
        reader: Arc::new(Mutex::new(None)),
        pending: VecDeque::new(),
        failed: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(r) = st.pending.pop_front() {
                return Some((Ok(r), st));
            }
            if st.failed {
                return None;
            }
            // Registered before reading, so a commit in between is not missed.
            let notify = st.notify.clone();
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (dir, topic, next, reader) = (
                st.dir.clone(),
                st.topic.clone(),
                st.next.clone(),
                st.reader.clone(),
            );
            let batch = tokio::task::spawn_blocking(move || {
                let mut guard = reader.lock().unwrap_or_else(|e| e.into_inner());
                if guard.is_none() {
                    *guard = Some(EmbeddedReader::open_topic(&dir, &topic)?.0);
                }
                let r = guard.as_ref().expect("just opened");
                let parts = r
                    .partitions(&topic)?
                    .ok_or_else(|| LogError::UnknownTopic(topic.clone()))?;
                let mut batch = Vec::new();
                for p in 0..parts as i32 {
                    batch.extend(r.fetch(&topic, p, next.get(&p).copied().unwrap_or(0), 500)?);
                }
                batch.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
                Ok(batch)
            })
            .await
            .unwrap_or_else(|e| Err(LogError::Unavailable(format!("embedded log reader: {e}"))));
            match batch {
                Err(e) => {
                    st.failed = true;
                    return Some((Err(e), st));
                }
                Ok(batch) if batch.is_empty() => {
                    let _ = tokio::time::timeout(IDLE_POLL, notified).await;
                }
                Ok(batch) => {
                    for r in &batch {
                        st.next.insert(r.partition, r.offset + 1);
                    }
                    st.pending.extend(batch);
                }
            }
        }
    }))
}
