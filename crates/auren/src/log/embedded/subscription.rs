//! The bridge's view of the embedded log: a group of one, reading every partition from the
//! positions the bridge stored with its state, woken by the writer's commit signal instead of
//! polling.

use super::EmbeddedReader;
use crate::log::{LogError, SourceRecord, Subscription};
use async_trait::async_trait;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

pub struct EmbeddedSubscription {
    reader: Arc<Mutex<Option<EmbeddedReader>>>,
    data_dir: PathBuf,
    topic: String,
    next: HashMap<i32, i64>,
    notify: Arc<Notify>,
    wait: Duration,
}

impl EmbeddedSubscription {
    pub(super) fn new(
        data_dir: PathBuf,
        topic: String,
        start: &[(i32, i64)],
        notify: Arc<Notify>,
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
        f: impl FnOnce(&EmbeddedReader) -> Result<T, LogError> + Send + 'static,
    ) -> impl std::future::Future<Output = Result<Option<T>, LogError>> {
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
            .await
            .map_err(|e| LogError::Unavailable(format!("embedded log reader: {e}")))?
        }
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(&mut self, max: usize) -> Result<Vec<SourceRecord>, LogError> {
        // Register for the commit signal before reading, so a commit in between is not missed.
        let notify = self.notify.clone();
        let notified = notify.notified();
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
            let _ = tokio::time::timeout(self.wait, notified).await;
        }
        for r in &batch {
            self.next.insert(r.partition, r.offset + 1);
        }
        Ok(batch)
    }

    async fn committed(&mut self, _offsets: &[(i32, i64)]) {}

    /// One process reads the embedded log: it is never rebalanced.
    async fn reset(&mut self, _stored: &[(i32, i64)]) {}

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
