//! Fake vendor APIs on a local port, speaking the documented v2 formats: WHOOP ([`FakeWhoop`]) and
//! Oura ([`FakeOura`]). Both are served from one port; their paths do not collide (WHOOP under
//! `/oauth/oauth2` and `/developer`, Oura under `/oauth/authorize`, `/oauth/token` and `/v2`).
//!
//! The integration tests connect users against them, and `auren dev fake-vendors --port P` runs
//! them so a newcomer can connect simulated users without a vendor account. Control endpoints
//! under `/_fake/whoop` and `/_fake/oura` seed users, history and documents, send signed
//! notifications and inject failures; tests call the same operations directly on the fakes.
//!
//! They are test doubles: consent is automatic (the authorize page redirects at once), tokens
//! are random and nothing is persisted.

mod oura;
mod whoop;

pub use oura::{FakeOura, OuraStats, Subscription};
pub use whoop::{FakeWhoop, Stats};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;

/// A failure served instead of the next answer(s) whose path starts with `path_prefix`.
#[derive(Debug, Clone, Deserialize)]
pub struct Failure {
    pub path_prefix: String,
    pub status: u16,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default = "one")]
    pub count: u32,
    /// Answer only after this long: a vendor that hangs past the client's timeout.
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

/// A random opaque token (codes, access and refresh tokens).
fn token() -> String {
    let bytes: [u8; 24] = rand::random();
    hex::encode(bytes)
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"error": code}))).into_response()
}

/// The automatic consent: back to the client's redirect URI with the code, as both vendors'
/// authorize pages do once the user agrees.
fn consent_redirect(mut target: url::Url, code: &str, scope: &str, state: &str) -> Response {
    target
        .query_pairs_mut()
        .append_pair("code", code)
        .append_pair("scope", scope)
        .append_pair("state", state);
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, target.to_string())],
    )
        .into_response()
}

/// Takes the queued failure for `path`, if any, counting it down.
fn take_failure(queue: &mut VecDeque<Failure>, path: &str) -> Option<Failure> {
    let i = queue
        .iter()
        .position(|x| path.starts_with(&x.path_prefix))?;
    let x = queue[i].clone();
    if x.count <= 1 {
        queue.remove(i);
    } else {
        queue[i].count -= 1;
    }
    Some(x)
}

/// The answer for an injected failure, after its delay: its status, and `Retry-After` when it
/// has one (429).
async fn failure_response(x: &Failure) -> Response {
    if x.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(x.delay_ms)).await;
    }
    let status = StatusCode::from_u16(x.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut r = error(status, "injected");
    if let Some(s) = x.retry_after {
        r.headers_mut().insert("retry-after", s.into());
    }
    r
}

/// Both fakes' routes on one router.
pub fn router(whoop: &FakeWhoop, oura: &FakeOura) -> Router {
    whoop.router().merge(oura.router())
}

/// Serves the fake WHOOP API on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    whoop: FakeWhoop,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, whoop.router())
        .with_graceful_shutdown(stop)
        .await
}

/// Serves the fake WHOOP and Oura APIs together on `listener` until `stop` resolves.
pub async fn serve_all(
    listener: tokio::net::TcpListener,
    whoop: FakeWhoop,
    oura: FakeOura,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(&whoop, &oura))
        .with_graceful_shutdown(stop)
        .await
}

/// `auren dev fake-vendors`.
#[derive(Debug, clap::Args)]
pub struct FakeVendorsArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8300)]
    pub port: u16,
    /// The client id the fake WHOOP accepts (set the service's WHOOP_CLIENT_ID to it).
    #[arg(long, default_value = "auren-dev")]
    pub whoop_client_id: String,
    /// The client secret the fake WHOOP accepts; default: the service's dev-mode secret from
    /// `<data dir>/dev-secrets.json`.
    #[arg(long, env = "WHOOP_CLIENT_SECRET", hide_env_values = true)]
    pub whoop_client_secret: Option<String>,
    /// The client id the fake Oura accepts (set the service's OURA_CLIENT_ID to it).
    #[arg(long, default_value = "auren-dev")]
    pub oura_client_id: String,
    /// The client secret the fake Oura accepts (it also signs its notifications with it);
    /// default: the service's dev-mode secret from `<data dir>/dev-secrets.json`.
    #[arg(long, env = "OURA_CLIENT_SECRET", hide_env_values = true)]
    pub oura_client_secret: Option<String>,
    /// The service's data directory, where dev mode keeps its secrets.
    #[arg(long, env = "AUREN_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
}

/// `given`, else the dev-mode secret `key` from `<data dir>/dev-secrets.json`.
fn secret_or_dev(
    given: Option<String>,
    data_dir: &std::path::Path,
    key: &str,
    flag: &str,
) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Some(s) = given {
        return Ok(s);
    }
    let path = data_dir.join(crate::settings::DEV_SECRETS_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no {flag}, and {} cannot be read (run `AUREN_DEV_MODE=1 auren serve` once)",
            path.display()
        )
    })?;
    let v: Value = serde_json::from_str(&text)?;
    Ok(v[key]
        .as_str()
        .with_context(|| format!("dev-secrets.json has no {key}"))?
        .to_string())
}

pub async fn run(args: FakeVendorsArgs) -> anyhow::Result<()> {
    let whoop_secret = secret_or_dev(
        args.whoop_client_secret,
        &args.data_dir,
        "whoop_client_secret",
        "--whoop-client-secret",
    )?;
    let oura_secret = secret_or_dev(
        args.oura_client_secret,
        &args.data_dir,
        "oura_client_secret",
        "--oura-client-secret",
    )?;
    let whoop = FakeWhoop::new(&args.whoop_client_id, &whoop_secret);
    let oura = FakeOura::new(&args.oura_client_id, &oura_secret);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let at = listener.local_addr()?;
    eprintln!(
        "fake WHOOP and Oura APIs on http://{at}\n\
         WHOOP (client id {}): set WHOOP_API_BASE_URL=http://{at}; POST /_fake/whoop/users adds a user,\n\
         \x20 /_fake/whoop/history {{user_id, days}} seeds nights, /_fake/whoop/webhook {{url}} and\n\
         \x20 /_fake/whoop/notify {{user_id, id, type}} send a signed notification.\n\
         Oura (client id {}): set OURA_API_BASE_URL=http://{at} and OURA_AUTHORIZE_URL=http://{at}/oauth/authorize;\n\
         \x20 POST /_fake/oura/users adds a user, /_fake/oura/history {{user_id, days}} seeds days,\n\
         \x20 /_fake/oura/notify {{user_id, data_type, object_id, event_type}} posts a signed delivery to the\n\
         \x20 subscriptions (or /_fake/oura/webhook {{url}}). GET /_fake/whoop/stats and /_fake/oura/stats.",
        args.whoop_client_id, args.oura_client_id
    );
    serve_all(listener, whoop, oura, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
