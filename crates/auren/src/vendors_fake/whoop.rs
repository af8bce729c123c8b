//! A fake WHOOP API on a local port, speaking the documented v2 formats: OAuth2 authorize and
//! token (with refresh-token rotation), the basic profile, access revocation, sleeps, recoveries
//! (single and paged), and injected failures (401, 429 with `Retry-After`, 5xx).
//!
//! The integration tests connect users against it, and `auren dev fake-vendors --port P` runs it
//! so a newcomer can connect a simulated WHOOP user without a vendor account. Control endpoints
//! under `/_fake` seed users and recoveries and inject failures; tests also call the same
//! operations directly on [`FakeWhoop`].
//!
//! It is a test double: consent is automatic (the authorize page redirects at once) and nothing
//! is persisted.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// A failure served instead of the next answer(s) whose path starts with `path_prefix`.
#[derive(Debug, Clone, Deserialize)]
pub struct Failure {
    pub path_prefix: String,
    pub status: u16,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default = "one")]
    pub count: u32,
}

fn one() -> u32 {
    1
}

/// What the fake has served, for assertions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub refreshes_refused: u64,
    pub revocations: u64,
    pub data_requests: u64,
}

#[derive(Default)]
struct Whoop {
    client_id: String,
    client_secret: String,
    access_ttl_seconds: i64,
    /// How long the token endpoint takes to answer (to make concurrent refreshes overlap).
    token_delay_ms: u64,
    next_user: i64,
    next_cycle: i64,
    users: BTreeMap<i64, String>,
    /// The user the next authorize request consents as (else the newest user).
    consent_as: Option<i64>,
    codes: HashMap<String, (i64, String, String)>,
    access: HashMap<String, (i64, DateTime<Utc>)>,
    refresh: HashMap<String, i64>,
    sleeps: BTreeMap<String, Value>,
    /// By cycle id.
    recoveries: BTreeMap<i64, Value>,
    failures: VecDeque<Failure>,
    stats: Stats,
    /// Every token ever issued, access and refresh.
    issued: Vec<String>,
}

/// The fake WHOOP API's state; cheap to clone.
#[derive(Clone)]
pub struct FakeWhoop(Arc<Mutex<Whoop>>);

fn token() -> String {
    let bytes: [u8; 24] = rand::random();
    hex::encode(bytes)
}

impl FakeWhoop {
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        FakeWhoop(Arc::new(Mutex::new(Whoop {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            access_ttl_seconds: 3600,
            next_user: 10_129,
            next_cycle: 93_845,
            ..Default::default()
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Whoop) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new WHOOP user; the next authorize request consents as them.
    pub fn add_user(&self) -> i64 {
        self.with(|w| {
            let id = w.next_user;
            w.next_user += 1;
            w.users.insert(id, format!("user{id}@example.com"));
            w.consent_as = Some(id);
            id
        })
    }

    /// Lifetime of the access tokens issued from now on (`expires_in`).
    pub fn set_access_ttl(&self, seconds: i64) {
        self.with(|w| w.access_ttl_seconds = seconds);
    }

    /// Makes the token endpoint answer after `ms` milliseconds.
    pub fn set_token_delay(&self, ms: u64) {
        self.with(|w| w.token_delay_ms = ms);
    }

    /// A night for `user`: a sleep ending now, its cycle and recovery, in `score_state`
    /// (`SCORED`, `PENDING_SCORE`). Returns the sleep id (what `recovery.updated` names).
    pub fn add_recovery(
        &self,
        user: i64,
        score_state: &str,
        recovery_score: f64,
        hrv_rmssd_milli: f64,
        resting_heart_rate: f64,
    ) -> String {
        self.with(|w| {
            let cycle = w.next_cycle;
            w.next_cycle += 1;
            let sleep_id = uuid::Uuid::new_v4().to_string();
            let end = Utc::now() - Duration::minutes(5);
            let start = end - Duration::hours(8);
            let t = |d: DateTime<Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            w.sleeps.insert(
                sleep_id.clone(),
                json!({"id": sleep_id, "cycle_id": cycle, "v1_id": null, "user_id": user,
                  "created_at": t(end), "updated_at": t(end), "start": t(start), "end": t(end),
                  "timezone_offset": "+00:00", "nap": false, "score_state": "SCORED",
                  "score": {"respiratory_rate": 16.1, "sleep_performance_percentage": 90.0}}),
            );
            let mut r = json!({"cycle_id": cycle, "sleep_id": sleep_id, "user_id": user,
                "created_at": t(end), "updated_at": t(end), "score_state": score_state});
            if score_state == "SCORED" {
                r["score"] = json!({"user_calibrating": false, "recovery_score": recovery_score,
                    "resting_heart_rate": resting_heart_rate, "hrv_rmssd_milli": hrv_rmssd_milli,
                    "spo2_percentage": 95.6875, "skin_temp_celsius": 33.7});
            }
            w.recoveries.insert(cycle, r);
            sleep_id
        })
    }

    /// Scores a pending recovery (named by its sleep), as WHOOP does once it has the data.
    pub fn score_recovery(
        &self,
        sleep_id: &str,
        recovery_score: f64,
        hrv_rmssd_milli: f64,
        resting_heart_rate: f64,
    ) {
        self.with(|w| {
            let Some(cycle) = w.sleeps.get(sleep_id).map(|s| s["cycle_id"].clone()) else {
                return;
            };
            let Some(r) = cycle.as_i64().and_then(|c| w.recoveries.get_mut(&c)) else {
                return;
            };
            r["score_state"] = json!("SCORED");
            r["updated_at"] =
                json!(Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            r["score"] = json!({"user_calibrating": false, "recovery_score": recovery_score,
                "resting_heart_rate": resting_heart_rate, "hrv_rmssd_milli": hrv_rmssd_milli});
        });
    }

    /// Serves `f` instead of the next `f.count` answers under its path prefix.
    pub fn fail(&self, f: Failure) {
        self.with(|w| w.failures.push_back(f));
    }

    /// Every access token stops working (as if expired early): the next call gets 401.
    pub fn expire_access_tokens(&self) {
        self.with(|w| w.access.clear());
    }

    /// Every refresh token stops working (the user revoked the app at WHOOP).
    pub fn revoke_refresh_tokens(&self) {
        self.with(|w| w.refresh.clear());
    }

    /// Every access and refresh token issued so far (to check none is stored in clear).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|w| w.issued.clone())
    }

    pub fn stats(&self) -> Stats {
        self.with(|w| w.stats.clone())
    }

    /// The routes, under the paths of the real host (`/oauth/oauth2/...`, `/developer/v2/...`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/oauth2/auth", get(authorize))
            .route("/oauth/oauth2/token", post(token_endpoint))
            .route("/developer/v2/user/profile/basic", get(profile))
            .route("/developer/v2/user/access", delete(revoke))
            .route("/developer/v2/activity/sleep/{id}", get(sleep))
            .route("/developer/v2/cycle/{id}/recovery", get(cycle_recovery))
            .route("/developer/v2/recovery", get(recoveries))
            .route("/_fake/whoop/users", post(control_add_user))
            .route("/_fake/whoop/recoveries", post(control_add_recovery))
            .route("/_fake/whoop/failures", post(control_fail))
            .route("/_fake/whoop/stats", get(control_stats))
            .layer(axum::middleware::from_fn_with_state(self.clone(), inject))
            .with_state(self.clone())
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({"error": code}))).into_response()
}

/// Serves an injected failure when one is queued for the path.
async fn inject(
    State(f): State<FakeWhoop>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    let hit = f.with(|w| {
        let i = w
            .failures
            .iter()
            .position(|x| path.starts_with(&x.path_prefix))?;
        let x = w.failures[i].clone();
        if x.count <= 1 {
            w.failures.remove(i);
        } else {
            w.failures[i].count -= 1;
        }
        Some(x)
    });
    match hit {
        Some(x) => {
            let status = StatusCode::from_u16(x.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut r = error(status, "injected");
            if let Some(s) = x.retry_after {
                r.headers_mut().insert("retry-after", s.into());
            }
            r
        }
        None => next.run(req).await,
    }
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    state: String,
    response_type: String,
}

async fn authorize(State(f): State<FakeWhoop>, Query(q): Query<AuthorizeQuery>) -> Response {
    let Ok(mut target) = url::Url::parse(&q.redirect_uri) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let code = f.with(|w| {
        if q.client_id != w.client_id || q.response_type != "code" {
            return None;
        }
        let user = match w.consent_as {
            Some(u) => u,
            None => {
                let id = w.next_user;
                w.next_user += 1;
                w.users.insert(id, format!("user{id}@example.com"));
                id
            }
        };
        let code = token();
        w.codes.insert(
            code.clone(),
            (user, q.redirect_uri.clone(), q.scope.clone()),
        );
        Some(code)
    });
    let Some(code) = code else {
        return error(StatusCode::BAD_REQUEST, "invalid_client");
    };
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("scope", &q.scope)
        .append_pair("state", &q.state);
    (
        StatusCode::FOUND,
        [(axum::http::header::LOCATION, target.to_string())],
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
}

fn issue(w: &mut Whoop, user: i64, scope: &str) -> Value {
    let access = token();
    w.access.insert(
        access.clone(),
        (user, Utc::now() + Duration::seconds(w.access_ttl_seconds)),
    );
    w.issued.push(access.clone());
    let mut body = json!({"access_token": access, "expires_in": w.access_ttl_seconds,
        "scope": scope, "token_type": "bearer"});
    if scope.split(' ').any(|s| s == "offline") {
        let refresh = token();
        w.refresh.insert(refresh.clone(), user);
        w.issued.push(refresh.clone());
        body["refresh_token"] = json!(refresh);
    }
    body
}

async fn token_endpoint(State(f): State<FakeWhoop>, Form(t): Form<TokenForm>) -> Response {
    let delay = f.with(|w| w.token_delay_ms);
    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    f.with(|w| {
        if t.client_id != w.client_id || t.client_secret != w.client_secret {
            return error(StatusCode::UNAUTHORIZED, "invalid_client");
        }
        match t.grant_type.as_str() {
            "authorization_code" => {
                let Some((user, redirect, scope)) =
                    t.code.as_deref().and_then(|c| w.codes.remove(c))
                else {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                if t.redirect_uri.as_deref() != Some(redirect.as_str()) {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                w.stats.code_exchanges += 1;
                Json(issue(w, user, &scope)).into_response()
            }
            "refresh_token" => {
                // Rotation: the refresh token used is spent, whatever happens next.
                match t.refresh_token.as_deref().and_then(|r| w.refresh.remove(r)) {
                    Some(user) => {
                        w.stats.refreshes += 1;
                        Json(issue(
                            w,
                            user,
                            "offline read:recovery read:sleep read:profile",
                        ))
                        .into_response()
                    }
                    None => {
                        w.stats.refreshes_refused += 1;
                        error(StatusCode::BAD_REQUEST, "invalid_grant")
                    }
                }
            }
            _ => error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    })
}

/// The user a bearer token belongs to, if it is valid now.
fn bearer(f: &FakeWhoop, h: &HeaderMap) -> Option<i64> {
    let t = h
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    f.with(|w| {
        w.stats.data_requests += 1;
        w.access
            .get(t)
            .filter(|(_, exp)| *exp > Utc::now())
            .map(|(u, _)| *u)
    })
}

macro_rules! authed {
    ($f:expr, $h:expr) => {
        match bearer(&$f, &$h) {
            Some(u) => u,
            None => return error(StatusCode::UNAUTHORIZED, "invalid_token"),
        }
    };
}

async fn profile(State(f): State<FakeWhoop>, h: HeaderMap) -> Response {
    let user = authed!(f, h);
    let email = f.with(|w| w.users.get(&user).cloned()).unwrap_or_default();
    Json(json!({"user_id": user, "email": email, "first_name": "Fake", "last_name": "User"}))
        .into_response()
}

async fn revoke(State(f): State<FakeWhoop>, h: HeaderMap) -> Response {
    let user = authed!(f, h);
    f.with(|w| {
        w.access.retain(|_, (u, _)| *u != user);
        w.refresh.retain(|_, u| *u != user);
        w.stats.revocations += 1;
    });
    StatusCode::NO_CONTENT.into_response()
}

fn owned(v: Option<&Value>, user: i64) -> Option<Value> {
    v.filter(|v| v["user_id"] == json!(user)).cloned()
}

async fn sleep(State(f): State<FakeWhoop>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let user = authed!(f, h);
    match f.with(|w| owned(w.sleeps.get(&id), user)) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn cycle_recovery(State(f): State<FakeWhoop>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    let user = authed!(f, h);
    match f.with(|w| owned(w.recoveries.get(&id), user)) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default, rename = "nextToken")]
    next_token: Option<String>,
}

/// Newest first, at most 25 a page, `next_token` the position of the next page.
async fn recoveries(
    State(f): State<FakeWhoop>,
    h: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let user = authed!(f, h);
    let limit = q.limit.unwrap_or(10).clamp(1, 25);
    let from: usize = q.next_token.and_then(|t| t.parse().ok()).unwrap_or(0);
    let mine: Vec<Value> = f.with(|w| {
        w.recoveries
            .values()
            .rev()
            .filter(|v| v["user_id"] == json!(user))
            .cloned()
            .collect()
    });
    let page: Vec<Value> = mine.iter().skip(from).take(limit).cloned().collect();
    let next = (from + limit < mine.len()).then(|| (from + limit).to_string());
    Json(json!({"records": page, "next_token": next})).into_response()
}

async fn control_add_user(State(f): State<FakeWhoop>) -> Json<Value> {
    Json(json!({"user_id": f.add_user()}))
}

#[derive(Deserialize)]
struct NewRecovery {
    user_id: i64,
    #[serde(default = "scored")]
    score_state: String,
    recovery_score: f64,
    hrv_rmssd_milli: f64,
    resting_heart_rate: f64,
}

fn scored() -> String {
    "SCORED".into()
}

async fn control_add_recovery(
    State(f): State<FakeWhoop>,
    Json(r): Json<NewRecovery>,
) -> Json<Value> {
    let id = f.add_recovery(
        r.user_id,
        &r.score_state,
        r.recovery_score,
        r.hrv_rmssd_milli,
        r.resting_heart_rate,
    );
    Json(json!({"sleep_id": id}))
}

async fn control_fail(State(f): State<FakeWhoop>, Json(x): Json<Failure>) -> StatusCode {
    f.fail(x);
    StatusCode::NO_CONTENT
}

async fn control_stats(State(f): State<FakeWhoop>) -> Json<Stats> {
    Json(f.stats())
}

/// Serves the fake on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    whoop: FakeWhoop,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, whoop.router())
        .with_graceful_shutdown(stop)
        .await
}

/// `auren dev fake-vendors`.
#[derive(Debug, clap::Args)]
pub struct FakeVendorsArgs {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 8300)]
    pub port: u16,
    /// The client id the fake accepts (set the service's WHOOP_CLIENT_ID to it).
    #[arg(long, default_value = "auren-dev")]
    pub whoop_client_id: String,
    /// The client secret the fake accepts; default: the service's dev-mode secret from
    /// `<data dir>/dev-secrets.json`.
    #[arg(long, env = "WHOOP_CLIENT_SECRET", hide_env_values = true)]
    pub whoop_client_secret: Option<String>,
    /// The service's data directory, where dev mode keeps its secrets.
    #[arg(long, env = "AUREN_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,
}

pub async fn run(args: FakeVendorsArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let secret = match args.whoop_client_secret {
        Some(s) => s,
        None => {
            let path = args.data_dir.join(crate::settings::DEV_SECRETS_FILE);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "no --whoop-client-secret, and {} cannot be read (run `AUREN_DEV_MODE=1 auren serve` once)",
                    path.display()
                )
            })?;
            let v: Value = serde_json::from_str(&text)?;
            v["whoop_client_secret"]
                .as_str()
                .context("dev-secrets.json has no whoop_client_secret")?
                .to_string()
        }
    };
    let whoop = FakeWhoop::new(&args.whoop_client_id, &secret);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    eprintln!(
        "fake WHOOP API on http://{} (client id {}); POST /_fake/whoop/users to add a user",
        listener.local_addr()?,
        args.whoop_client_id
    );
    serve(listener, whoop, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
