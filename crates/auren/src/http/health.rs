//! Liveness and readiness. `/ready` asks every configured dependency and names the first that
//! does not answer, and says 503 while every processing slot stays taken, so an orchestrator
//! stops routing webhooks to an instance that would 503 them.

use super::problem::Problem;
use super::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::time::Duration;

#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The process is up", body = crate::http::openapi::StatusAnswer)))]
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/ready", tag = "health",
    responses(
        (status = 200, description = "Every dependency answers and slots are free", body = crate::http::openapi::ReadyAnswer),
        (status = 503, description = "A dependency does not answer, the log cannot append, or every slot is taken", body = crate::http::openapi::ProblemDoc, content_type = "application/problem+json"),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    let s = &state.inner;
    // Every processing slot taken for as long as a webhook would wait for one: webhooks sent
    // here now would get 503, so the orchestrator should send them elsewhere.
    if tokio::time::timeout(s.admission_wait, s.admission.acquire())
        .await
        .is_err()
    {
        return Err(Problem::unavailable(
            "overloaded",
            "every webhook processing slot is taken; retry shortly",
            1,
        ));
    }
    let t = Duration::from_secs(3);
    let timeout = |name: &str| format!("{name}: no answer within 3 s");
    let log = tokio::time::timeout(t, s.log.check()).await;
    let keys = tokio::time::timeout(t, s.keys.check()).await;
    let cache = tokio::time::timeout(t, s.dedup.check()).await;
    let checks = [
        (
            "log",
            s.log.backend(),
            log.map(|r| r.map_err(|e| e.to_string())),
        ),
        (
            "store",
            s.keys.backend(),
            keys.map(|r| r.map_err(|e| e.to_string())),
        ),
        (
            "cache",
            s.dedup.backend(),
            cache.map(|r| r.map_err(|e| e.to_string())),
        ),
    ];
    let mut report = serde_json::Map::new();
    for (role, backend, result) in checks {
        match result {
            Ok(Ok(())) => {
                report.insert(role.into(), json!({"backend": backend, "status": "ok"}));
            }
            Ok(Err(e)) => {
                return Err(Problem::unavailable(
                    "dependency_unavailable",
                    format!("{role} ({backend}) is not ready: {e}"),
                    5,
                )
                .with("dependency", json!(backend)));
            }
            Err(_) => {
                return Err(
                    Problem::unavailable("dependency_unavailable", timeout(backend), 5)
                        .with("dependency", json!(backend)),
                );
            }
        }
    }
    Ok(Json(json!({"status": "ready", "checks": report})))
}
