//! The embedded log: an append-only SQLite table in WAL mode with `synchronous=FULL`, so a
//! committed append survives `kill -9` and power loss.
//!
//! One writer thread owns the connection and does group commit: it takes every append waiting in
//! its queue, writes them all in one transaction and pays one fsync for the lot, then answers each
//! caller. Under load the batches grow on their own; idle, a single append is committed at once.
//! Readers open their own connections; WAL lets them read while the writer writes.

use super::{Appended, EventLog, LogError, LoggedRecord, Record};
use async_trait::async_trait;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Notify};

pub const FILE_NAME: &str = "events.db";
/// Upper bound on appends per transaction, so one commit never holds callers too long.
const MAX_GROUP: usize = 1024;

type Reply = oneshot::Sender<Result<Vec<Appended>, LogError>>;

enum Command {
    Append {
        topic: String,
        records: Vec<Record>,
        reply: Reply,
    },
    Ping(oneshot::Sender<Result<(), LogError>>),
}

pub struct EmbeddedLog {
    tx: mpsc::Sender<Command>,
    path: PathBuf,
    notify: Arc<Notify>,
    /// Held for the life of the log: one process writes the file, or offsets would collide.
    _lock: std::fs::File,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS topics (
            name TEXT PRIMARY KEY,
            partitions INTEGER NOT NULL
        );
        CREATE TABLE IF NOT EXISTS log (
            topic TEXT NOT NULL,
            partition INTEGER NOT NULL,
            offset INTEGER NOT NULL,
            key TEXT NOT NULL,
            event_id TEXT NOT NULL,
            ts_ms INTEGER NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (topic, partition, offset)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX IF NOT EXISTS log_event_id ON log (topic, event_id);",
    )?;
    Ok(conn)
}

/// Partition of a key: stable for the life of the topic, spread evenly because keys are HMACs.
pub fn partition_for(key: &str, partitions: u32) -> i32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % partitions) as i32
}

struct Writer {
    conn: Connection,
    notify: Arc<Notify>,
    default_partitions: u32,
    /// (topic) -> partition count, and (topic, partition) -> next offset.
    partitions: HashMap<String, u32>,
    next: HashMap<(String, i32), i64>,
}

impl Writer {
    fn load(&mut self) -> rusqlite::Result<()> {
        self.partitions.clear();
        self.next.clear();
        let mut st = self.conn.prepare("SELECT name, partitions FROM topics")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))?;
        for r in rows {
            let (t, p) = r?;
            self.partitions.insert(t, p);
        }
        let mut st = self
            .conn
            .prepare("SELECT topic, partition, MAX(offset) FROM log GROUP BY topic, partition")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        for r in rows {
            let (t, p, o) = r?;
            self.next.insert((t, p), o + 1);
        }
        Ok(())
    }

    /// Writes a group of appends in one transaction and one fsync.
    fn write_group(
        &mut self,
        group: &[(String, Vec<Record>)],
    ) -> rusqlite::Result<Vec<Vec<Appended>>> {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let tx = self.conn.transaction()?;
        let mut out = Vec::with_capacity(group.len());
        // Offsets are advanced on a copy and kept only if the commit succeeds.
        let mut next = self.next.clone();
        for (topic, records) in group {
            let parts = match self.partitions.get(topic) {
                Some(p) => *p,
                None => {
                    tx.execute(
                        "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)",
                        params![topic, self.default_partitions],
                    )?;
                    let p: u32 = tx.query_row(
                        "SELECT partitions FROM topics WHERE name = ?1",
                        [topic],
                        |r| r.get(0),
                    )?;
                    self.partitions.insert(topic.clone(), p);
                    p
                }
            };
            let mut st = tx.prepare_cached(
                "INSERT INTO log (topic, partition, offset, key, event_id, ts_ms, value)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (topic, event_id) DO NOTHING",
            )?;
            let mut outcomes = Vec::with_capacity(records.len());
            for r in records {
                let p = partition_for(&r.key, parts);
                let slot = next.entry((topic.clone(), p)).or_insert(0);
                let n = st.execute(params![topic, p, *slot, r.key, r.event_id, now_ms, r.value])?;
                if n == 1 {
                    outcomes.push(Appended::Stored {
                        partition: p,
                        offset: *slot,
                    });
                    *slot += 1;
                } else {
                    outcomes.push(Appended::Duplicate);
                }
            }
            out.push(outcomes);
        }
        tx.commit()?;
        self.next = next;
        Ok(out)
    }

    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut appends: Vec<(String, Vec<Record>)> = Vec::new();
            let mut replies: Vec<Reply> = Vec::new();
            let mut pings = Vec::new();
            let mut next = Some(first);
            while let Some(c) = next.take() {
                match c {
                    Command::Append {
                        topic,
                        records,
                        reply,
                    } => {
                        appends.push((topic, records));
                        replies.push(reply);
                    }
                    Command::Ping(p) => pings.push(p),
                }
                if appends.len() < MAX_GROUP {
                    next = rx.try_recv().ok();
                }
            }
            if !appends.is_empty() {
                match self.write_group(&appends) {
                    Ok(outcomes) => {
                        for (reply, o) in replies.into_iter().zip(outcomes) {
                            let _ = reply.send(Ok(o));
                        }
                        self.notify.notify_waiters();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "embedded log commit failed");
                        let _ = self.load();
                        for reply in replies {
                            let _ = reply.send(Err(LogError::Unavailable(e.to_string())));
                        }
                    }
                }
            }
            for p in pings {
                let ok = self
                    .conn
                    .query_row("SELECT 1", [], |_| Ok(()))
                    .map_err(|e| LogError::Unavailable(e.to_string()));
                let _ = p.send(ok);
            }
        }
    }
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log under `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path, default_partitions: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(FILE_NAME);
        let lock = std::fs::File::create(data_dir.join("events.db.lock"))?;
        if lock.try_lock().is_err() {
            anyhow::bail!(
                "the embedded log in {} is in use by another auren process; run ingest and bridge \
                 together with `auren serve`, or use Kafka to run them apart",
                data_dir.display()
            );
        }
        let conn = open(&path)?;
        let notify = Arc::new(Notify::new());
        let mut writer = Writer {
            conn,
            notify: notify.clone(),
            default_partitions,
            partitions: HashMap::new(),
            next: HashMap::new(),
        };
        writer.load()?;
        let (tx, rx) = mpsc::channel(16 * 1024);
        std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || writer.run(rx))?;
        Ok(Self {
            tx,
            path,
            notify,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signalled after every commit, so an in-process reader need not poll.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Creates a topic with `partitions` partitions; an existing topic keeps its count.
    pub fn create_topic(data_dir: &Path, topic: &str, partitions: u32) -> anyhow::Result<bool> {
        std::fs::create_dir_all(data_dir)?;
        let conn = open(&data_dir.join(FILE_NAME))?;
        let n = conn.execute(
            "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)",
            params![topic, partitions],
        )?;
        Ok(n == 1)
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append {
                topic: topic.to_string(),
                records,
                reply,
            })
            .await
            .map_err(|_| LogError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| LogError::Unavailable("writer stopped".into()))?
    }

    async fn check(&self) -> Result<(), LogError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Ping(reply))
            .await
            .map_err(|_| LogError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| LogError::Unavailable("writer stopped".into()))?
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

/// Read access for `auren log read` and the bridge: a separate read-only connection.
pub struct EmbeddedReader {
    conn: Connection,
}

impl EmbeddedReader {
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(FILE_NAME);
        if !path.exists() {
            anyhow::bail!("no embedded log at {}", path.display());
        }
        let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    pub fn partitions(&self, topic: &str) -> anyhow::Result<Option<u32>> {
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
    ) -> anyhow::Result<Vec<LoggedRecord>> {
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
    pub fn end_offsets(&self, topic: &str) -> anyhow::Result<Vec<i64>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, id: &str) -> Record {
        Record {
            key: key.into(),
            event_id: id.into(),
            value: id.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn appends_are_numbered_per_partition_and_duplicates_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path(), 3).unwrap();
        let out = log
            .append("t", vec![rec("u_a", "1"), rec("u_a", "2"), rec("u_a", "1")])
            .await
            .unwrap();
        let p = partition_for("u_a", 3);
        assert_eq!(
            out,
            vec![
                Appended::Stored {
                    partition: p,
                    offset: 0
                },
                Appended::Stored {
                    partition: p,
                    offset: 1
                },
                Appended::Duplicate
            ]
        );
        let again = log
            .append("t", vec![rec("u_a", "2"), rec("u_a", "3")])
            .await
            .unwrap();
        assert_eq!(
            again,
            vec![
                Appended::Duplicate,
                Appended::Stored {
                    partition: p,
                    offset: 2
                }
            ]
        );
        drop(log);
        // Offsets continue after a reopen.
        let log = EmbeddedLog::open(dir.path(), 3).unwrap();
        let out = log.append("t", vec![rec("u_a", "4")]).await.unwrap();
        assert_eq!(
            out,
            vec![Appended::Stored {
                partition: p,
                offset: 3
            }]
        );
        let r = EmbeddedReader::open(dir.path()).unwrap();
        let got: Vec<i64> = r
            .fetch("t", p, 1, 10)
            .unwrap()
            .iter()
            .map(|r| r.offset)
            .collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert_eq!(r.end_offsets("t").unwrap()[p as usize], 4);
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(EmbeddedLog::open(dir.path(), 4).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                log.append("t", vec![rec(&format!("u_{}", i % 7), &i.to_string())])
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert!(matches!(t.await.unwrap()[0], Appended::Stored { .. }));
        }
        let r = EmbeddedReader::open(dir.path()).unwrap();
        let total: i64 = r.end_offsets("t").unwrap().iter().sum();
        assert_eq!(total, 200);
    }
}
