//! What live event streams carry, gathered once per process and fanned out to its clients
//! (`GET /users/{id}/events`, `GET /admin/events`, served by `http::events`).
//!
//! **Switches.** One task per process follows the switches topic through the log port, from the
//! end it had when the task started, outside any consumer group: nothing is committed and the
//! bridge's group never sees it. So every `auren serve` streams the switches of every bridge,
//! whether the bridge runs in the same process (embedded log) or in other processes (Kafka).
//! Switches go to a tokio broadcast channel; a record seen twice (a republish from the outbox)
//! is sent once. A stream that resumes from `Last-Event-ID` subscribes here first and only then
//! reads the history after that id: the bridge publishes a switch only after it committed it to
//! the history, so a switch is either in what the stream read, or arrives here after the stream
//! subscribed, or both (then the stream sends it once).
//!
//! **State.** Users' state views come from the state cache (Redis or in-process), which every
//! bridge writes after each batch, so this too works across processes. Only users with an open
//! stream are read, each at most once a second; a view is passed on only when it changed, through
//! a watch channel per user (latest wins), so a change wakes only that user's streams.
//!
//! The hub never waits for a client: a full broadcast channel overwrites its oldest entries and
//! the client that had not read them learns it lagged (it is then dropped, see `http::events`).
//! The bridge, ingest and other clients are never slowed by a stream.

use crate::cache::StateCache;
use crate::log::{EventLog, LogError};
use crate::messages::{StateView, SwitchMessage};
use crate::shutdown::Shutdown;
use crate::store::StateStore;
use futures::StreamExt;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

/// Switches and state updates in flight to the clients, per channel. A client's own task moves
/// them to its buffer as they come, so this only fills when the runtime itself is starved.
const CHANNEL_CAPACITY: usize = 4096;
/// How often the state of users with an open stream is read, at most.
pub const STATE_INTERVAL: Duration = Duration::from_secs(1);
/// Pause before following the switches topic again after an error (or while it does not exist).
const RETRY: Duration = Duration::from_secs(1);
/// Switch ids remembered to drop a republished switch.
const RECENT_IDS: usize = 4096;
/// Cache reads in flight at once when the users' states are polled.
const STATE_READS: usize = 32;

/// The latest state view of a user, as its streams see it.
pub type StateWatch = watch::Receiver<Option<Arc<StateView>>>;

struct Watched {
    streams: usize,
    /// The last view read; a read that finds the same one changes nothing.
    state: watch::Sender<Option<Arc<StateView>>>,
}

pub struct Hub {
    log: Arc<dyn EventLog>,
    store: Arc<dyn StateStore>,
    cache: Arc<dyn StateCache>,
    topic: String,
    switches: broadcast::Sender<Arc<SwitchMessage>>,
    watched: Mutex<HashMap<String, Watched>>,
    /// True once the follower knows the position it follows from: a stream opened before that
    /// could miss a switch published in between.
    ready: watch::Sender<bool>,
    stop: CancellationToken,
}

/// A switch id fit to be an SSE event id (and a history position): what the bridge makes, and
/// nothing that could break the event framing.
pub fn valid_switch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Hub {
    pub fn new(
        log: Arc<dyn EventLog>,
        store: Arc<dyn StateStore>,
        cache: Arc<dyn StateCache>,
        switches_topic: &str,
    ) -> Arc<Self> {
        Arc::new(Self {
            log,
            store,
            cache,
            topic: switches_topic.to_string(),
            switches: broadcast::channel(CHANNEL_CAPACITY).0,
            watched: Mutex::new(HashMap::new()),
            ready: watch::channel(false).0,
            stop: CancellationToken::new(),
        })
    }

    /// Starts following the switches topic and polling the state of watched users, until
    /// `shutdown`; streams end then too.
    pub fn start(self: &Arc<Self>, shutdown: &Shutdown) {
        let me = self.clone();
        let s = shutdown.clone();
        shutdown.spawn("live-switches", async move {
            me.follow_switches(&s).await;
            Ok(())
        });
        let me = self.clone();
        let s = shutdown.clone();
        shutdown.spawn("live-states", async move {
            me.poll_states(&s).await;
            Ok(())
        });
        let stop = self.stop.clone();
        let s = shutdown.clone();
        shutdown.spawn("live-stop", async move {
            s.wait().await;
            stop.cancel();
            Ok(())
        });
    }

    /// Waits up to `wait` for the follower to know its position; false if it does not by then
    /// (the log is unreachable, or the hub was never started).
    pub async fn ready(&self, wait: Duration) -> bool {
        let mut rx = self.ready.subscribe();
        tokio::time::timeout(wait, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Resolves when the process shuts down.
    pub fn stopping(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    pub fn is_stopping(&self) -> bool {
        self.stop.is_cancelled()
    }

    pub fn subscribe_switches(&self) -> broadcast::Receiver<Arc<SwitchMessage>> {
        self.switches.subscribe()
    }

    pub fn store(&self) -> &dyn StateStore {
        self.store.as_ref()
    }

    /// Marks `pseudonym` as watched (its state is polled) until the guard is dropped; the
    /// guard's receiver sees the user's state as it changes. A user nobody watched yet has
    /// their state read at once, so a new stream can start with it.
    pub async fn watch(self: &Arc<Self>, pseudonym: &str) -> Watching {
        let (state, first) = {
            let mut w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
            let entry = w.entry(pseudonym.to_string()).or_insert_with(|| Watched {
                streams: 0,
                state: watch::channel(None).0,
            });
            entry.streams += 1;
            (entry.state.subscribe(), entry.streams == 1)
        };
        let watching = Watching {
            hub: self.clone(),
            pseudonym: pseudonym.to_string(),
            state,
        };
        if first {
            match self.cache.state(pseudonym).await {
                Ok(Some(view)) => self.offer_state(pseudonym.to_string(), view),
                Ok(None) => {}
                Err(e) => {
                    metrics::counter!("auren_cache_errors_total", "op" => "state_get").increment(1);
                    tracing::warn!(error = %e, "cache read for a live stream failed");
                }
            }
        }
        watching
    }

    /// Takes the follower's starting position, then follows the topic from it; after an error,
    /// resumes from the positions it had reached, so nothing is skipped.
    async fn follow_switches(&self, shutdown: &Shutdown) {
        let mut positions: Option<HashMap<i32, i64>> = None;
        let mut recent = RecentIds::default();
        loop {
            if positions.is_none() {
                match self.log.end_offsets(&self.topic).await {
                    Ok(ends) => positions = Some(ends.into_iter().collect()),
                    // Not written yet: all it will ever hold is newer than this start.
                    Err(LogError::UnknownTopic(_)) => positions = Some(HashMap::new()),
                    Err(e) => tracing::warn!(
                        error = %crate::telemetry::chain(&e),
                        "live streams cannot find the end of the switches topic yet; retrying"
                    ),
                }
                if positions.is_some() {
                    self.ready.send_replace(true);
                }
            }
            if let Some(pos) = positions.as_mut() {
                let from: Vec<(i32, i64)> = pos.iter().map(|(p, o)| (*p, *o)).collect();
                let mut records = self.log.follow(&self.topic, &from);
                loop {
                    let item = tokio::select! {
                        _ = shutdown.wait() => return,
                        item = records.next() => item,
                    };
                    match item {
                        Some(Ok(r)) => {
                            pos.insert(r.partition, r.offset + 1);
                            self.publish(&r.value, &mut recent);
                        }
                        Some(Err(LogError::UnknownTopic(_))) => break,
                        Some(Err(e)) => {
                            tracing::warn!(
                                error = %crate::telemetry::chain(&e),
                                "following the switches topic failed; resuming from the last position"
                            );
                            break;
                        }
                        None => break,
                    }
                }
            }
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    fn publish(&self, value: &[u8], recent: &mut RecentIds) {
        let m: SwitchMessage = match serde_json::from_slice(value) {
            Ok(m) => m,
            Err(e) => {
                // Not the error's text: it can quote the record, which may hold a user id.
                tracing::warn!(kind = ?e.classify(), line = e.line(), column = e.column(),
                    "a record on the switches topic is not a switch message; not streamed");
                return;
            }
        };
        if !valid_switch_id(&m.switch_id) {
            tracing::warn!("a switch message with an unusable switch id; not streamed");
            return;
        }
        if recent.insert(&m.switch_id) {
            // No receiver is not an error: nobody is streaming.
            let _ = self.switches.send(Arc::new(m));
        }
    }

    /// Every [`STATE_INTERVAL`], reads the state of each watched user and sends on those that
    /// changed.
    async fn poll_states(&self, shutdown: &Shutdown) {
        let mut tick = tokio::time::interval(STATE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => {}
            }
            let users: Vec<String> = {
                let w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
                w.keys().cloned().collect()
            };
            if users.is_empty() {
                continue;
            }
            let reads: Vec<_> = futures::stream::iter(users)
                .map(|p| async move {
                    let v = self.cache.state(&p).await;
                    (p, v)
                })
                .buffer_unordered(STATE_READS)
                .collect()
                .await;
            let mut failed = 0u64;
            for (p, v) in reads {
                match v {
                    Ok(Some(view)) => self.offer_state(p, view),
                    Ok(None) => {}
                    Err(_) => failed += 1,
                }
            }
            if failed > 0 {
                metrics::counter!("auren_cache_errors_total", "op" => "state_get")
                    .increment(failed);
                tracing::warn!(
                    users = failed,
                    "cache reads for live streams failed; their state events wait"
                );
            }
        }
    }

    fn offer_state(&self, pseudonym: String, view: StateView) {
        let w = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        // Gone when its last stream closed meanwhile.
        if let Some(entry) = w.get(&pseudonym) {
            entry.state.send_if_modified(|last| {
                if last.as_deref() == Some(&view) {
                    return false;
                }
                *last = Some(Arc::new(view));
                true
            });
        }
    }
}

/// While held, its user's state is polled; see [`Hub::watch`].
pub struct Watching {
    hub: Arc<Hub>,
    pseudonym: String,
    pub state: StateWatch,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let mut w = self.hub.watched.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = w.get_mut(&self.pseudonym) {
            e.streams -= 1;
            if e.streams == 0 {
                w.remove(&self.pseudonym);
            }
        }
    }
}

/// The last [`RECENT_IDS`] switch ids.
#[derive(Default)]
struct RecentIds {
    set: HashSet<String>,
    order: VecDeque<String>,
}

impl RecentIds {
    /// False when `id` was seen recently.
    fn insert(&mut self, id: &str) -> bool {
        if !self.set.insert(id.to_string()) {
            return false;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > RECENT_IDS {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest() {
        let mut r = RecentIds::default();
        assert!(r.insert("a"));
        assert!(!r.insert("a"));
        for i in 0..RECENT_IDS {
            assert!(r.insert(&i.to_string()));
        }
        assert!(r.insert("a"), "forgotten after RECENT_IDS others");
    }

    #[test]
    fn switch_ids_that_could_break_the_framing_are_refused() {
        assert!(valid_switch_id("0a1b2c3d4e5f60718293a4b5c6d7e8f9"));
        assert!(valid_switch_id("sw_00ab-x"));
        for bad in ["", "a\nb", "a b", "a\rb", "a\0", "é", &"a".repeat(129)] {
            assert!(!valid_switch_id(bad), "{bad:?}");
        }
    }
}
