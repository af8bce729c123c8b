//! RFC 9457 problem details: every error the API returns is `application/problem+json` with a
//! stable machine-readable `reason` (also the metric outcome label) and a human `detail`.
//! Details never echo request bodies, keys or user ids.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub reason: &'static str,
    pub detail: String,
    pub extra: Vec<(&'static str, Value)>,
    pub retry_after_seconds: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, reason: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            detail: detail.into(),
            extra: Vec::new(),
            retry_after_seconds: None,
        }
    }
    pub fn bad_request(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason, detail)
    }
    pub fn unauthorized(reason: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason, detail)
    }
    pub fn unavailable(reason: &'static str, detail: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after_seconds: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, reason, detail)
        }
    }
    pub fn with(mut self, key: &'static str, value: Value) -> Self {
        self.extra.push((key, value));
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = json!({
            "type": format!("https://auren.dev/problems/{}", self.reason.replace('_', "-")),
            "title": self.status.canonical_reason().unwrap_or("Error"),
            "status": self.status.as_u16(),
            "reason": self.reason,
            "detail": self.detail,
        });
        for (k, v) in self.extra {
            body[k] = v;
        }
        let mut resp = (self.status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_seconds {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

/// Every store failure reaches a client the same way: 503 with a retry hint. The cause is logged
/// here, once, with its source chain; the client sees no internals.
impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::warn!(error = %crate::telemetry::chain(&e), "state store unavailable");
        Problem::unavailable(
            "store_unavailable",
            "the state store is unavailable; retry shortly",
            5,
        )
    }
}
