//! The embedded log: an append-only SQLite table in WAL mode with `synchronous=FULL`, so a
//! committed append survives `kill -9` and power loss.
//!
//! One writer thread owns the write connection and does group commit: it takes every append
//! waiting in its queue, writes them all in one transaction and pays one fsync for the lot, then
//! answers each caller. Under load the batches grow on their own; idle, a single append is
//! committed at once. The writer starts with the first write (or [`EventLog::check`]) and takes
//! a lock file, so one process writes the file; readers ([`reader`]) and the bridge's
//! subscription ([`subscription`]) open their own read-only connections, which WAL lets read while
//! the writer writes: `auren log read` works beside a running `auren serve`.
//!
//! **Identity.** The file holds a random log id, made with it. The writer also remembers which
//! file (device and inode) it opened, and after every commit checks that the path still names
//! that file: a log deleted or replaced under a running process would otherwise take writes
//! into a file no reader will ever open, and acknowledge them. Once that is seen, every append
//! and readiness check fails until a restart, and the restart refuses to use a log whose id is
//! not the one the state store's offsets belong to.

mod reader;
mod subscription;

pub use reader::EmbeddedReader;

use super::{Appended, EventLog, LogError, Record, RecordStream, StartAt, Subscription};
use async_trait::async_trait;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify};

pub const FILE_NAME: &str = "events.db";
const LOCK_FILE: &str = "events.db.lock";
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
    Identity(oneshot::Sender<Result<String, LogError>>),
    Close(oneshot::Sender<()>),
}

/// The writer thread's queue and the lock file it holds for the life of the log.
struct WriterHandle {
    tx: mpsc::Sender<Command>,
    _lock: std::fs::File,
}

pub struct EmbeddedLog {
    dir: PathBuf,
    default_partitions: u32,
    notify: Arc<Notify>,
    writer: Mutex<Option<WriterHandle>>,
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
        CREATE UNIQUE INDEX IF NOT EXISTS log_event_id ON log (topic, event_id);
        CREATE TABLE IF NOT EXISTS meta (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );",
    )?;
    Ok(conn)
}

/// The device and inode a path names now.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Partition of a key: stable for the life of the topic, spread evenly because keys are HMACs.
pub fn partition_for(key: &str, partitions: u32) -> i32 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(key.as_bytes());
    (u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % partitions) as i32
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    /// The file the connection opened, and whether the path was since seen to name another.
    file: (u64, u64),
    replaced: Option<&'static str>,
    notify: Arc<Notify>,
    default_partitions: u32,
    /// (topic) -> partition count, and (topic, partition) -> next offset.
    partitions: HashMap<String, u32>,
    next: HashMap<(String, i32), i64>,
}

impl Writer {
    /// Whether the path still names the file this writer writes; remembered once it does not.
    fn still_ours(&mut self) -> Result<(), LogError> {
        if self.replaced.is_none() {
            self.replaced = match file_id(&self.path) {
                Ok(id) if id == self.file => None,
                Ok(_) => Some("replaced"),
                Err(_) => Some("deleted"),
            };
            if let Some(what) = self.replaced {
                metrics::counter!("auren_log_replaced_total").increment(1);
                tracing::error!(
                    file = %self.path.display(),
                    "the embedded log file was {what} while running; refusing every append until a restart"
                );
            }
        }
        match self.replaced {
            Some(what) => Err(LogError::Replaced(what)),
            None => Ok(()),
        }
    }

    /// The log's id, made with the file.
    fn identity(&self) -> rusqlite::Result<String> {
        self.conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('log_id', ?1)",
            [uuid::Uuid::now_v7().to_string()],
        )?;
        let id: String =
            self.conn
                .query_row("SELECT value FROM meta WHERE key = 'log_id'", [], |r| {
                    r.get(0)
                })?;
        Ok(format!("embedded:{id}"))
    }

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

    fn commit_appends(&mut self, appends: &[(String, Vec<Record>)], replies: Vec<Reply>) {
        if appends.is_empty() {
            return;
        }
        if let Err(e) = self.still_ours() {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
        // Checked again after the commit: a file deleted between the check and the commit
        // took this group into a file nobody reads, so none of it is acknowledged.
        match self
            .write_group(appends)
            .map_err(LogError::from)
            .and_then(|o| {
                self.still_ours()?;
                Ok(o)
            }) {
            Ok(outcomes) => {
                for (reply, o) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(o));
                }
                self.notify.notify_waiters();
            }
            Err(e) => {
                tracing::error!(error = %crate::telemetry::chain(&e), "embedded log commit failed");
                let _ = self.load();
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Serves commands in arrival order until closed; consecutive appends share one commit.
    fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(first) = rx.blocking_recv() {
            let mut pending = None;
            let mut appends: Vec<(String, Vec<Record>)> = Vec::new();
            let mut replies: Vec<Reply> = Vec::new();
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
                        if appends.len() < MAX_GROUP {
                            next = rx.try_recv().ok();
                        }
                    }
                    other => {
                        // A ping or close waits for the appends queued before it.
                        pending = Some(other);
                    }
                }
            }
            self.commit_appends(&appends, replies);
            match pending.take() {
                None | Some(Command::Append { .. }) => {}
                Some(Command::Ping(p)) => {
                    let ok = self.still_ours().and_then(|()| {
                        self.conn
                            .query_row("SELECT 1", [], |_| Ok(()))
                            .map_err(LogError::from)
                    });
                    let _ = p.send(ok);
                }
                Some(Command::Identity(p)) => {
                    let id = self
                        .still_ours()
                        .and_then(|()| self.identity().map_err(LogError::from));
                    let _ = p.send(id);
                }
                Some(Command::Close(done)) => {
                    let _ = done.send(());
                    return;
                }
            }
        }
    }
}

impl EmbeddedLog {
    /// The log under `data_dir`; nothing is opened until the first read or write.
    pub fn open(data_dir: &Path, default_partitions: u32) -> anyhow::Result<Self> {
        Ok(Self {
            dir: data_dir.to_path_buf(),
            default_partitions,
            notify: Arc::new(Notify::new()),
            writer: Mutex::new(None),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The writer's queue, starting the writer (and taking the lock) on first use.
    fn writer(&self) -> Result<mpsc::Sender<Command>, LogError> {
        let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = guard.as_ref() {
            return Ok(w.tx.clone());
        }
        let w = self.start_writer()?;
        let tx = w.tx.clone();
        *guard = Some(w);
        Ok(tx)
    }

    fn start_writer(&self) -> Result<WriterHandle, LogError> {
        let unavailable = |what: &str, e: std::io::Error| {
            LogError::Unavailable(format!("{what} {}: {e}", self.dir.display()))
        };
        std::fs::create_dir_all(&self.dir).map_err(|e| unavailable("creating", e))?;
        // Opened without truncating: the holder's PID in it must survive a refused second open.
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.dir.join(LOCK_FILE))
            .map_err(|e| unavailable("locking", e))?;
        if lock.try_lock().is_err() {
            let holder = std::fs::read_to_string(self.dir.join(LOCK_FILE)).unwrap_or_default();
            let holder = match holder.trim() {
                "" => "another auren process".to_string(),
                pid => format!("auren process {pid}"),
            };
            return Err(LogError::Unavailable(format!(
                "the embedded log in {dir} is held by {holder}. One process owns an embedded log: \
                 stop that one, or give this one its own directory with AUREN_DATA_DIR (or \
                 --data-dir); to run ingest and bridges as separate processes, use Kafka",
                dir = self.dir.display()
            )));
        }
        {
            use std::io::Write;
            let _ = lock.set_len(0);
            let _ = write!(lock, "{}", std::process::id());
        }
        let conn = open(&self.path())?;
        let file = file_id(&self.path()).map_err(|e| unavailable("opening", e))?;
        let mut writer = Writer {
            conn,
            path: self.path(),
            file,
            replaced: None,
            notify: self.notify.clone(),
            default_partitions: self.default_partitions,
            partitions: HashMap::new(),
            next: HashMap::new(),
        };
        writer.load()?;
        let (tx, rx) = mpsc::channel(16 * 1024);
        std::thread::Builder::new()
            .name("embedded-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| unavailable("starting the writer for", e))?;
        Ok(WriterHandle { tx, _lock: lock })
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, LogError>>) -> Command,
    ) -> Result<T, LogError> {
        let stopped = || LogError::Unavailable("the embedded log writer stopped".into());
        let (reply, rx) = oneshot::channel();
        self.writer()?
            .send(make(reply))
            .await
            .map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

#[async_trait]
impl EventLog for EmbeddedLog {
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        self.ask(|reply| Command::Append {
            topic: topic.to_string(),
            records,
            reply,
        })
        .await
    }

    async fn subscribe(
        &self,
        _group: &str,
        topic: &str,
        start: &[(i32, i64)],
    ) -> Result<Box<dyn Subscription>, LogError> {
        Ok(Box::new(subscription::EmbeddedSubscription::new(
            self.dir.clone(),
            topic.to_string(),
            start,
            self.notify.clone(),
        )))
    }

    fn read(&self, topic: &str, from: StartAt, follow: bool) -> RecordStream {
        reader::stream(self.dir.clone(), topic.to_string(), from, follow)
    }

    fn follow(&self, topic: &str, from: &[(i32, i64)]) -> RecordStream {
        reader::follow(
            self.dir.clone(),
            topic.to_string(),
            from,
            self.notify.clone(),
        )
    }

    async fn end_offsets(&self, topic: &str) -> Result<Vec<(i32, i64)>, LogError> {
        let (dir, topic) = (self.dir.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || {
            let (reader, _) = EmbeddedReader::open_topic(&dir, &topic)?;
            Ok(reader
                .end_offsets(&topic)?
                .into_iter()
                .enumerate()
                .map(|(p, o)| (p as i32, o))
                .collect())
        })
        .await
        .map_err(|e| LogError::Unavailable(format!("embedded log reader: {e}")))?
    }

    async fn create_topics(
        &self,
        topics: &[&str],
        partitions: i32,
        _replication_factor: i32,
    ) -> Result<Vec<(String, bool)>, LogError> {
        let partitions = u32::try_from(partitions)
            .ok()
            .filter(|p| *p >= 1)
            .ok_or_else(|| LogError::Unavailable("partitions must be at least 1".into()))?;
        // A connection of its own, so topics can be made beside a running `auren serve`: the
        // writer reads a topic's partition count from the table when it first writes to it.
        let (dir, path) = (self.dir.clone(), self.path());
        let topics: Vec<String> = topics.iter().map(|t| t.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)
                .map_err(|e| LogError::Unavailable(format!("creating {}: {e}", dir.display())))?;
            let conn = open(&path)?;
            topics
                .into_iter()
                .map(|t| {
                    let n = conn.execute(
                        "INSERT OR IGNORE INTO topics (name, partitions) VALUES (?1, ?2)",
                        params![t, partitions],
                    )?;
                    Ok((t, n == 1))
                })
                .collect()
        })
        .await
        .map_err(|e| LogError::Unavailable(format!("creating topics: {e}")))?
    }

    async fn check(&self) -> Result<(), LogError> {
        self.ask(Command::Ping).await
    }

    async fn identity(&self) -> Result<String, LogError> {
        self.ask(Command::Identity).await
    }

    async fn close(&self) {
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(w) = handle {
            let (reply, rx) = oneshot::channel();
            if w.tx.send(Command::Close(reply)).await.is_ok() {
                let _ = rx.await;
            }
        }
    }

    fn backend(&self) -> &'static str {
        "embedded"
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
