//! Request ids and the access log.
//!
//! Every request gets an `x-request-id` (the client's own when it sent one, else a new UUID),
//! echoed on the answer. One line per request goes to the `auren::access` log target: the
//! request id, method, the route's *template* (`/users/{user_id}/state`, never the raw path,
//! which holds a user id), status, problem reason and latency. Never a body, key or user id.
//! `RUST_LOG=auren::access=off` turns it off.

use super::problem::Reason;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use std::time::Instant;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// Request ids longer than this are cut in the log line.
const MAX_ID_CHARS: usize = 64;

/// Sets and echoes `x-request-id` around `router`.
pub fn request_ids(router: Router) -> Router {
    router
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The access line of a request that matched a route.
pub async fn log_matched(route: MatchedPath, req: Request, next: Next) -> Response {
    let route = route.as_str().to_owned();
    log(route, req, next).await
}

/// The access line of any request; `route` is the template, or a fixed word when none matched.
pub async fn log(route: String, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let id: String = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .chars()
        .take(MAX_ID_CHARS)
        .collect();
    let resp = next.run(req).await;
    let reason = resp.extensions().get::<Reason>().map_or("-", |r| r.0);
    tracing::info!(
        target: "auren::access",
        request_id = %id,
        method = %method,
        route = %route,
        status = resp.status().as_u16(),
        reason = %reason,
        latency_ms = started.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    resp
}

/// The access line of a request no route matched.
pub async fn log_unmatched(req: Request, next: Next) -> Response {
    log("(no route)".to_owned(), req, next).await
}
