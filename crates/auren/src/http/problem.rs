//! RFC 9457 problem details: every error the API returns is `application/problem+json` with a
//! stable machine-readable `reason` (also the metric outcome label) and a human `detail`.
//! Details never echo request bodies, keys or user ids.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// The `reason` of an error answer, kept on the response for the access log.
#[derive(Debug, Clone, Copy)]
pub struct Reason(pub &'static str);

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
        resp.extensions_mut().insert(Reason(self.reason));
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

/// No route has this path.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

/// The path exists, not with this method.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
}

/// The longest detail taken over from an error body that was not ours.
const FOREIGN_DETAIL_CHARS: usize = 200;

/// The last layer: an error answer that is not yet a problem document (axum's own rejections of
/// a query, a path or a body) becomes one, with a reason from its status and the first
/// [`FOREIGN_DETAIL_CHARS`] characters of its text as the detail.
pub async fn ensure_problem(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if is_problem || !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let detail: String = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        t => t.chars().take(FOREIGN_DETAIL_CHARS).collect(),
    };
    let reason = match status.as_u16() {
        400 => "invalid_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "body_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        429 => "too_many_requests",
        500..=599 => "internal_error",
        _ => "client_error",
    };
    let mut out = Problem::new(status, reason, detail).into_response();
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(v) = parts.headers.get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    out
}

/// `Query<T>` whose rejection is a problem document with reason `invalid_query`.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| {
                let detail: String = e.body_text().chars().take(FOREIGN_DETAIL_CHARS).collect();
                Problem::bad_request("invalid_query", detail)
            })
    }
}
