//! The API listener: HTTP/1.1 with explicit timers and a cap on open connections.
//!
//! `axum::serve` has no timers at all: a client that opens a connection and sends nothing, or
//! sends a header a byte a minute, keeps its socket (and a file descriptor) for ever, and enough
//! of them exhaust the process. Here every connection is watched:
//!
//! - **header read**: once the first byte of a request arrives, its whole header must follow
//!   within `header_read_timeout`;
//! - **idle keep-alive**: a connection with no request in flight and no byte of the next one is
//!   closed after `idle_timeout`;
//! - **body**: the handlers read bodies under a deadline of their own (`body_read_timeout`), so a
//!   body dribbled a byte a second ends in 408, not in a held processing slot;
//! - **cap**: at most `max_connections` are open; past it the listener stops accepting and new
//!   connections wait in the kernel's backlog until one closes.
//!
//! - **TLS handshake** (when the listener serves HTTPS): it must end within `header_read_timeout`
//!   of the accept, so a client that connects and says nothing, or speaks plain HTTP to the TLS
//!   port, holds its slot no longer than a slow header would.
//!
//! A response still streaming (a live event stream) keeps its connection busy, never idle.
//! Hyper's own header timer is not used: it starts as soon as a connection waits for a request,
//! so it cannot tell a slow header from an idle keep-alive connection.

use crate::settings::HttpSettings;
use crate::shutdown::Shutdown;
use crate::tls::ReloadingCert;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// How long open connections get to finish their requests after the shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What the watchdog knows of one connection. Times are milliseconds since `epoch`; 0 is unset.
struct Activity {
    epoch: Instant,
    /// Requests whose response has not been fully sent.
    busy: AtomicUsize,
    /// When the first byte of the next request arrived.
    head_started: AtomicU64,
    /// When the connection last became idle.
    idle_since: AtomicU64,
    /// A handler asked for the connection to be closed ([`CloseConnection`]).
    close: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            busy: AtomicUsize::new(0),
            head_started: AtomicU64::new(0),
            // Offset by one so that "idle since the start" is not the unset value.
            idle_since: AtomicU64::new(1),
            close: AtomicBool::new(false),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn bytes_read(&self) {
        if self.busy.load(Ordering::Acquire) == 0 && self.head_started.load(Ordering::Relaxed) == 0
        {
            self.head_started.store(self.now(), Ordering::Relaxed);
        }
    }

    fn request_started(self: &Arc<Self>) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(0, Ordering::Relaxed);
        BusyGuard(self.clone())
    }

    /// Why the connection should be closed now, if it should.
    fn expired(&self, limits: &Limits) -> Option<&'static str> {
        if self.close.load(Ordering::Acquire) {
            return Some("closed_by_handler");
        }
        if self.busy.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.now();
        let head = self.head_started.load(Ordering::Relaxed);
        if head != 0 {
            return (now.saturating_sub(head) > limits.header_read).then_some("header_timeout");
        }
        let idle = self.idle_since.load(Ordering::Relaxed);
        (now.saturating_sub(idle) > limits.idle).then_some("idle_timeout")
    }
}

/// Lets the handler of a long streaming response (a live event stream) close its connection.
/// Ending the body is not enough when the client stopped reading: hyper, blocked writing to it,
/// no longer polls the body, so the connection would stay open for as long as the client likes.
/// The watchdog closes it at its next tick. In the request's extensions when served here.
#[derive(Clone)]
pub struct CloseConnection(Arc<Activity>);

impl CloseConnection {
    pub fn close(&self) {
        self.0.close.store(true, Ordering::Release);
    }
}

/// Held by a request until its response body is dropped (sent or abandoned).
struct BusyGuard(Arc<Activity>);

/// A response body holding its request's [`BusyGuard`]. Size and end are the inner body's, so
/// hyper writes a complete answer at once as it would without the guard.
struct Guarded {
    inner: axum::body::Body,
    _guard: BusyGuard,
}

impl axum::body::HttpBody for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Ordering::Relaxed);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The socket (or the TLS stream over it), reporting each read to the watchdog.
struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The connection timers in milliseconds.
#[derive(Clone, Copy)]
struct Limits {
    header_read: u64,
    idle: u64,
}

/// Serves `router` on `listener` until `shutdown` fires; then stops accepting, lets requests in
/// flight finish (up to a grace period) and returns. With `tls`, every connection is HTTPS and
/// the certificate files are watched (polled each second) and reloaded when they change.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    settings: &HttpSettings,
    tls: Option<Arc<ReloadingCert>>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let limits = Limits {
        header_read: settings.header_read_timeout_ms,
        idle: settings.idle_timeout_ms,
    };
    let acceptor = match tls {
        Some(cert) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config()?);
            tokio::spawn(watch_certificate(cert, shutdown.clone()));
            Some(acceptor)
        }
        None => None,
    };
    let tick = Duration::from_millis((limits.header_read.min(limits.idle) / 4).clamp(20, 1000));
    let slots = Arc::new(Semaphore::new(settings.max_connections as usize));
    let connections = tokio_util::task::TaskTracker::new();
    let gauge = metrics::gauge!("auren_http_connections");
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = shutdown.wait() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a little
                    // rather than spin, and keep serving the connections already open.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.wait() => break,
        };
        let _ = stream.set_nodelay(true);
        let (router, shutdown, gauge) = (router.clone(), shutdown.clone(), gauge.clone());
        let acceptor = acceptor.clone();
        gauge.increment(1.0);
        connections.spawn(async move {
            match acceptor {
                None => serve_connection(stream, peer, router, limits, tick, shutdown).await,
                Some(acceptor) => {
                    if let Some(tls) = handshake(&acceptor, stream, limits, &shutdown).await {
                        serve_connection(tls, peer, router, limits, tick, shutdown).await;
                    }
                }
            }
            gauge.decrement(1.0);
            drop(permit);
        });
    }
    connections.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace period; closing them"
        );
    }
    Ok(())
}

/// The server side of a TLS handshake, under the header deadline; `None` closes the connection.
async fn handshake(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    limits: Limits,
    shutdown: &Shutdown,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let deadline = Duration::from_millis(limits.header_read);
    let reason = tokio::select! {
        done = tokio::time::timeout(deadline, acceptor.accept(stream)) => match done {
            Ok(Ok(tls)) => return Some(tls),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                "tls_handshake_failed"
            }
            Err(_) => "tls_handshake_timeout",
        },
        _ = shutdown.wait() => "shutdown",
    };
    metrics::counter!("auren_http_connections_closed_total", "reason" => reason).increment(1);
    None
}

/// Reloads the listener's certificate when its files change, until shutdown. A pair that does
/// not load is logged and the certificate in force is kept.
async fn watch_certificate(cert: Arc<ReloadingCert>, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait() => return,
        }
        match cert.reload_if_changed() {
            None => {}
            Some(Ok(())) => {
                metrics::counter!("auren_tls_reloads_total", "outcome" => "ok").increment(1);
                tracing::info!("reloaded the API listener's TLS certificate");
            }
            Some(Err(e)) => {
                metrics::counter!("auren_tls_reloads_total", "outcome" => "rejected").increment(1);
                tracing::warn!(error = %e, "the new TLS certificate does not load; keeping the one in force");
            }
        }
    }
}

async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Router,
    limits: Limits,
    tick: Duration,
    shutdown: Shutdown,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new();
    let io = TokioIo::new(Watched {
        io: stream,
        activity: activity.clone(),
    });
    let tracker = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let guard = tracker.request_started();
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut()
            .insert(CloseConnection(tracker.clone()));
        let router = router.clone();
        async move {
            let resp = router.oneshot(req).await?;
            // The guard lives as long as the response body, so a streaming response keeps the
            // connection busy until its last byte.
            Ok::<_, std::convert::Infallible>(resp.map(|body| {
                axum::body::Body::new(Guarded {
                    inner: body,
                    _guard: guard,
                })
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(None)
        .serve_connection(io, service)
        .with_upgrades();
    tokio::pin!(conn);
    // Made once: every wake-up of the connection polls these too, so they must be cheap to poll
    // and must not register anew each time.
    let stop = shutdown.wait();
    tokio::pin!(stop);
    let check = tokio::time::sleep(tick);
    tokio::pin!(check);
    let mut draining = false;
    loop {
        tokio::select! {
            biased;
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = &mut check => {
                if let Some(reason) = activity.expired(&limits) {
                    metrics::counter!("auren_http_connections_closed_total", "reason" => reason)
                        .increment(1);
                    return; // dropping the connection closes the socket
                }
                check.as_mut().reset(tokio::time::Instant::now() + tick);
            }
            () = &mut stop, if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
