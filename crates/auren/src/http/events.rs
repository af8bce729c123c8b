//! Live event streams (Server-Sent Events): `GET /users/{id}/events` and `GET /admin/events`.
//!
//! Events:
//! - `mode_switch`: a switch message (as on `cognitive-mode-switches`), its SSE `id` the switch
//!   id. A user's stream carries that user's switches; the admin stream everyone's.
//! - `state` (user streams only): the user's state view (mode, latest readings, baselines,
//!   calibration) from the state cache, when it changed, at most once a second; the current one
//!   first. No `id`, so it never moves the client's resume position.
//! - `position_unknown`: the `Last-Event-ID` the client sent is not in the (user's) history;
//!   what follows is live only.
//! - `closed`: the last event before the server ends the stream, with a `reason`:
//!   `slow_client` (its buffer filled), `lagged` (it fell behind the process's fan-out),
//!   `replay_limit` (more than [`MAX_REPLAY`] switches to catch up on: reconnect for the rest),
//!   `store_unavailable`, `shutting_down`. The client reconnects with `Last-Event-ID` and misses
//!   nothing.
//!
//! Each client has its own task and a bounded buffer (`AUREN_SSE_CLIENT_BUFFER` events). Nothing
//! else waits for a client: when its buffer stays full for [`SLOW_CLIENT_WAIT`] the client is
//! dropped with a `closed` event, and if it does not read even that within [`FINAL_GRACE`], its
//! connection is closed.
//! With `Last-Event-ID` (the header, or a `last_event_id` query parameter for clients that
//! cannot set headers) the switches after that one are first read from the history, in history
//! order; the live ones follow without gap or repeat (see [`crate::live`]).

use super::problem::{ApiQuery, Problem};
use super::server::CloseConnection;
use super::users::{require_admin, require_user_or_admin};
use super::{AppState, ClientAddr};
use crate::live::{valid_switch_id, Hub, Watching, STATE_INTERVAL};
use crate::messages::{StateView, SwitchMessage};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::error::{SendTimeoutError, TrySendError};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

/// Switches read from the history per query while catching up.
const REPLAY_PAGE: i64 = 200;
/// Switches one connection catches up on at most; past it the stream ends with `closed`
/// (`replay_limit`) and the client reconnects from where it got to. Bounds what a connection
/// remembers to drop the live copies of replayed switches.
pub const MAX_REPLAY: usize = 10_000;
/// How long a catch-up waits for room in the client's buffer before dropping it.
const REPLAY_SEND_WAIT: Duration = Duration::from_secs(10);
/// How long a live event waits for room in a full client buffer before the client is dropped:
/// a burst fills a buffer for a moment even for a client that reads, one that stopped keeps
/// it full. Only this client's task waits; the fan-out goes on.
pub const SLOW_CLIENT_WAIT: Duration = Duration::from_secs(2);
/// How long a dropped client has to read its `closed` event before its connection is closed.
pub const FINAL_GRACE: Duration = Duration::from_secs(5);
/// How long a new stream waits for the switch follower to know its position.
const READY_WAIT: Duration = Duration::from_secs(5);

/// One event of a live stream (the stream is a sequence of these, and keep-alive comments).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SseEventDoc {
    pub event: SseEventName,
    /// JSON: a switch message (`mode_switch`), a state view (`state`), or `{reason, detail}`
    /// (`position_unknown`, `closed`).
    #[schema(content_media_type = "application/json")]
    pub data: String,
    /// On `mode_switch` only: its switch id, the position to resume from.
    #[schema(nullable = false)]
    pub id: Option<String>,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum SseEventName {
    ModeSwitch,
    State,
    PositionUnknown,
    Closed,
}

#[derive(Deserialize)]
pub struct EventsQuery {
    last_event_id: Option<String>,
}

/// The connection's closer, when the request came through our listener.
pub struct Closer(Option<CloseConnection>);

impl<S: Send + Sync> FromRequestParts<S> for Closer {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Closer(parts.extensions.get::<CloseConnection>().cloned()))
    }
}

#[utoipa::path(get, path = "/users/{user_id}/events", tag = "users",
    params(
        ("user_id" = String, Path, description = "The user's own id (1-256 printable characters, no / or \\, not . or ..)"),
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last `mode_switch` event received: the switches after it are sent first"),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers; the header wins"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "An endless Server-Sent Events stream: `mode_switch` (data: a switch message, id: its switch id), `state` (data: the state view, at most once a second), `position_unknown`, `closed` (data: `{reason, detail}`), and keep-alive comments", content_type = "text/event-stream", body = SseEventDoc),
        (status = 400, description = "Invalid user id or query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A key of another user", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The event log or the store is unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn user_events(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    Closer(closer): Closer,
    headers: HeaderMap,
    Path(user_id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, Problem> {
    require_user_or_admin(&state, ip, &headers, &user_id).await?;
    let pseudonym = state.inner.pseudonyms.pseudonym(&user_id);
    let after = last_event_id(&headers, q.last_event_id);
    open(&state, Some(pseudonym), after, closer).await
}

#[utoipa::path(get, path = "/admin/events", tag = "admin",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last `mode_switch` event received: the switches after it are sent first"),
        ("last_event_id" = Option<String>, Query, description = "The same, for clients that cannot set headers; the header wins"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "An endless Server-Sent Events stream of every user's switches: `mode_switch` (data: a switch message, id: its switch id), `position_unknown`, `closed` (data: `{reason, detail}`), and keep-alive comments. No `state` events", content_type = "text/event-stream", body = SseEventDoc),
        (status = 400, description = "Invalid query", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 401, description = "Token missing or unknown", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not the admin token", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed authentications from this address", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The event log or the store is unavailable; retry", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn admin_events(
    State(state): State<AppState>,
    ClientAddr(ip): ClientAddr,
    Closer(closer): Closer,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Response, Problem> {
    require_admin(&state, ip, &headers).await?;
    let after = last_event_id(&headers, q.last_event_id);
    open(&state, None, after, closer).await
}

/// Where the client wants to resume: the header, else the query parameter; empty is none.
fn last_event_id(headers: &HeaderMap, query: Option<String>) -> Option<String> {
    headers
        .get("last-event-id")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
        .or(query)
        .filter(|id| !id.is_empty())
}

async fn open(
    state: &AppState,
    pseudonym: Option<String>,
    after: Option<String>,
    closer: Option<CloseConnection>,
) -> Result<Response, Problem> {
    let hub = state.inner.live.clone();
    if !hub.ready(READY_WAIT).await {
        return Err(Problem::unavailable(
            "log_unavailable",
            "live streams are not following the switches yet; retry shortly",
            5,
        ));
    }
    // Subscribed before anything is read from the history: see `crate::live`.
    let switches = hub.subscribe_switches();
    let watching = match pseudonym.as_deref() {
        Some(p) => Some(hub.watch(p).await),
        None => None,
    };
    let (tx, rx) = mpsc::channel(state.inner.sse.client_buffer);
    let (final_tx, final_rx) = oneshot::channel();
    let client = Client {
        hub,
        pseudonym,
        tx,
        final_tx: Some(final_tx),
        closer,
        replayed: HashSet::new(),
        last_state: None,
        last_state_at: None,
        pending_state: None,
        _gauge: Gauge::new(if watching.is_some() { "user" } else { "admin" }),
    };
    tokio::spawn(client.run(after, switches, watching));
    let keep_alive = KeepAlive::new()
        .interval(state.inner.sse.keepalive)
        .text("keep-alive");
    Ok((
        // Proxies that buffer answers (nginx) would hold the events back.
        [("x-accel-buffering", "no")],
        Sse::new(events(final_rx, rx)).keep_alive(keep_alive),
    )
        .into_response())
}

/// The response body: the client's buffer, and the final event, which jumps the queue (the
/// client is being dropped; what it has not received it gets again when it resumes).
fn events(
    final_rx: oneshot::Receiver<Event>,
    rx: mpsc::Receiver<Event>,
) -> impl futures::Stream<Item = Result<Event, Infallible>> {
    struct Body {
        fin: Option<oneshot::Receiver<Event>>,
        rx: mpsc::Receiver<Event>,
        done: bool,
    }
    enum Next {
        Final(Event),
        NoFinal,
        Event(Option<Event>),
    }
    let body = Body {
        fin: Some(final_rx),
        rx,
        done: false,
    };
    futures::stream::unfold(body, |mut b| async move {
        if b.done {
            return None;
        }
        let next = match b.fin.as_mut() {
            Some(fin) => tokio::select! {
                biased;
                f = fin => match f {
                    Ok(ev) => Next::Final(ev),
                    Err(_) => Next::NoFinal,
                },
                ev = b.rx.recv() => Next::Event(ev),
            },
            None => Next::Event(b.rx.recv().await),
        };
        let ev = match next {
            Next::Final(ev) => {
                b.done = true;
                ev
            }
            Next::NoFinal => {
                b.fin = None;
                b.rx.recv().await?
            }
            Next::Event(ev) => ev?,
        };
        Some((Ok(ev), b))
    })
}

/// Counts open streams in `auren_sse_clients{stream}` while alive.
struct Gauge(&'static str);

impl Gauge {
    fn new(stream: &'static str) -> Self {
        metrics::gauge!("auren_sse_clients", "stream" => stream).increment(1.0);
        Gauge(stream)
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        metrics::gauge!("auren_sse_clients", "stream" => self.0).decrement(1.0);
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client went away: nobody to tell.
    Gone,
    SlowClient,
    Lagged,
    ReplayLimit,
    StoreUnavailable,
    ShuttingDown,
}

impl End {
    fn reason(self) -> &'static str {
        match self {
            End::Gone => "gone",
            End::SlowClient => "slow_client",
            End::Lagged => "lagged",
            End::ReplayLimit => "replay_limit",
            End::StoreUnavailable => "store_unavailable",
            End::ShuttingDown => "shutting_down",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            End::Gone => "",
            End::SlowClient => "the client did not read its events fast enough; reconnect with Last-Event-ID to resume",
            End::Lagged => "the client fell behind the server's fan-out; reconnect with Last-Event-ID to resume",
            End::ReplayLimit => "too many switches to catch up on at once; reconnect with Last-Event-ID for the rest",
            End::StoreUnavailable => "the history could not be read; reconnect with Last-Event-ID shortly",
            End::ShuttingDown => "the server is shutting down; reconnect with Last-Event-ID",
        }
    }
}

fn switch_event(m: &SwitchMessage) -> Event {
    let event = Event::default().event("mode_switch");
    // `Event::id` panics on a line break: only an id checked here becomes one (the hub and the
    // bridge only make such ids).
    let event = match valid_switch_id(&m.switch_id) {
        true => event.id(&m.switch_id),
        false => event,
    };
    event
        .json_data(m)
        .unwrap_or_else(|_| Event::default().comment("unserialisable switch"))
}

fn state_event(v: &StateView) -> Event {
    Event::default()
        .event("state")
        .json_data(v)
        .unwrap_or_else(|_| Event::default().comment("unserialisable state"))
}

/// One client's task: catches up from the history, then moves live events into the client's
/// buffer without ever waiting for it.
struct Client {
    hub: Arc<Hub>,
    pseudonym: Option<String>,
    tx: mpsc::Sender<Event>,
    final_tx: Option<oneshot::Sender<Event>>,
    closer: Option<CloseConnection>,
    /// Switches sent from the history: their live copies are not sent again.
    replayed: HashSet<String>,
    last_state: Option<Arc<StateView>>,
    last_state_at: Option<Instant>,
    /// A state that came within a second of the last one sent, held until the second is over.
    pending_state: Option<Arc<StateView>>,
    _gauge: Gauge,
}

impl Client {
    async fn run(
        mut self,
        after: Option<String>,
        switches: broadcast::Receiver<Arc<SwitchMessage>>,
        watching: Option<Watching>,
    ) {
        let end = self.serve(after, switches, watching).await;
        if end == End::Gone {
            return;
        }
        metrics::counter!("auren_sse_closed_total", "reason" => end.reason()).increment(1);
        let event = Event::default()
            .event("closed")
            .json_data(serde_json::json!({"reason": end.reason(), "detail": end.detail()}))
            .unwrap_or_else(|_| Event::default().event("closed"));
        if let Some(fin) = self.final_tx.take() {
            let _ = fin.send(event);
        }
        // A client that reads nothing holds hyper in a write that no longer polls the body:
        // only closing the connection frees it.
        if let Some(closer) = self.closer.take() {
            tokio::select! {
                _ = self.tx.closed() => {}
                _ = tokio::time::sleep(FINAL_GRACE) => {
                    tracing::debug!(reason = end.reason(), "closing the connection of a dropped event-stream client");
                    closer.close();
                }
            }
        }
    }

    async fn serve(
        &mut self,
        after: Option<String>,
        mut switches: broadcast::Receiver<Arc<SwitchMessage>>,
        mut watching: Option<Watching>,
    ) -> End {
        if let Some(after) = after {
            if let Err(end) = self.replay(after).await {
                return end;
            }
        }
        // The current state first, then its changes.
        let current = watching
            .as_mut()
            .and_then(|w| w.state.borrow_and_update().clone());
        if let Some(v) = current {
            if let Err(end) = self.offer_state(v).await {
                return end;
            }
        }
        let hub = self.hub.clone();
        loop {
            let hold_until = self
                .last_state_at
                .map_or_else(Instant::now, |t| t + STATE_INTERVAL);
            let result = tokio::select! {
                biased;
                _ = hub.stopping() => Err(End::ShuttingDown),
                _ = self.tx.closed() => Err(End::Gone),
                m = switches.recv() => match m {
                    Ok(m) => self.offer_switch(&m).await,
                    // Switches were lost to this client: it must resume from the history.
                    Err(broadcast::error::RecvError::Lagged(_)) => Err(End::Lagged),
                    Err(broadcast::error::RecvError::Closed) => Err(End::ShuttingDown),
                },
                v = state_change(&mut watching) => match v {
                    Some(v) => self.offer_state(v).await,
                    None => Ok(()),
                },
                _ = tokio::time::sleep_until(hold_until), if self.pending_state.is_some() => {
                    match self.pending_state.take() {
                        Some(v) => self.send_state(v).await,
                        None => Ok(()),
                    }
                }
            };
            if let Err(end) = result {
                return end;
            }
        }
    }

    /// Sends the switches after `after` from the history, page by page, in history order.
    async fn replay(&mut self, after: String) -> Result<(), End> {
        if !valid_switch_id(&after) {
            return self.position_unknown().await;
        }
        let mut cursor = after;
        loop {
            if self.hub.is_stopping() {
                return Err(End::ShuttingDown);
            }
            let page = self
                .hub
                .store()
                .switches_after(self.pseudonym.as_deref(), &cursor, REPLAY_PAGE)
                .await;
            let page = match page {
                Ok(Some(page)) => page,
                Ok(None) if self.replayed.is_empty() => return self.position_unknown().await,
                // The cursor came from the history a moment ago.
                Ok(None) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %crate::telemetry::chain(&e), "reading the history for an event stream failed");
                    return Err(End::StoreUnavailable);
                }
            };
            let full = page.len() as i64 == REPLAY_PAGE;
            for m in page {
                if self.replayed.len() >= MAX_REPLAY {
                    return Err(End::ReplayLimit);
                }
                cursor = m.switch_id.clone();
                match self
                    .tx
                    .send_timeout(switch_event(&m), REPLAY_SEND_WAIT)
                    .await
                {
                    Ok(()) => {}
                    Err(SendTimeoutError::Timeout(_)) => return Err(End::SlowClient),
                    Err(SendTimeoutError::Closed(_)) => return Err(End::Gone),
                }
                self.replayed.insert(m.switch_id);
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn position_unknown(&mut self) -> Result<(), End> {
        let detail = match self.pseudonym {
            Some(_) => "the Last-Event-ID is not a switch in this user's history; what follows is live only (GET /users/{id}/modes has the history)",
            None => "the Last-Event-ID is not a switch in the history; what follows is live only",
        };
        let event = Event::default()
            .event("position_unknown")
            .json_data(serde_json::json!({"reason": "unknown_last_event_id", "detail": detail}))
            .unwrap_or_else(|_| Event::default().event("position_unknown"));
        self.push(event).await
    }

    async fn offer_switch(&mut self, m: &SwitchMessage) -> Result<(), End> {
        if let Some(p) = &self.pseudonym {
            if &m.user_pseudonym != p {
                return Ok(());
            }
        }
        if self.replayed.remove(&m.switch_id) {
            return Ok(());
        }
        self.push(switch_event(m)).await
    }

    async fn offer_state(&mut self, v: Arc<StateView>) -> Result<(), End> {
        if self.last_state.as_deref() == Some(&*v) {
            return Ok(());
        }
        match self.last_state_at {
            Some(at) if at.elapsed() < STATE_INTERVAL => {
                self.pending_state = Some(v);
                Ok(())
            }
            _ => self.send_state(v).await,
        }
    }

    async fn send_state(&mut self, v: Arc<StateView>) -> Result<(), End> {
        if self.last_state.as_deref() == Some(&*v) {
            return Ok(());
        }
        self.push(state_event(&v)).await?;
        self.last_state = Some(v);
        self.last_state_at = Some(Instant::now());
        Ok(())
    }

    /// Into the client's buffer; a buffer that stays full drops the client.
    async fn push(&self, event: Event) -> Result<(), End> {
        let event = match self.tx.try_send(event) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(event)) => event,
            Err(TrySendError::Closed(_)) => return Err(End::Gone),
        };
        match self.tx.send_timeout(event, SLOW_CLIENT_WAIT).await {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => Err(End::SlowClient),
            Err(SendTimeoutError::Closed(_)) => Err(End::Gone),
        }
    }
}

/// The user's next state; never, on the admin stream.
async fn state_change(watching: &mut Option<Watching>) -> Option<Arc<StateView>> {
    match watching {
        Some(w) => match w.state.changed().await {
            Ok(()) => w.state.borrow_and_update().clone(),
            // The hub keeps the sender while the guard lives.
            Err(_) => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The stream settings the handlers need.
#[derive(Debug, Clone)]
pub struct SseSettings {
    pub keepalive: Duration,
    pub client_buffer: usize,
}

impl SseSettings {
    pub fn of(http: &crate::settings::HttpSettings) -> Self {
        Self {
            keepalive: Duration::from_secs(http.sse_keepalive_seconds),
            client_buffer: http.sse_client_buffer as usize,
        }
    }
}
