//! The fake WHOOP API: OAuth2 authorize and token (with refresh-token rotation), the basic
//! profile, access revocation, sleeps, workouts, cycles and recoveries (single and paged, with
//! `start`/`end`/`limit`/`nextToken`), seeded history, deletions, signed notifications to a
//! target URL, and injected failures (401, 429 with `Retry-After`, 5xx).

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

use super::{error, failure_response, take_failure, token, Failure};

/// What the fake has served, for assertions.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub refreshes_refused: u64,
    pub revocations: u64,
    pub data_requests: u64,
    /// Signed notifications posted to the webhook target.
    pub notifications_sent: u64,
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
    cycles: BTreeMap<i64, Value>,
    workouts: BTreeMap<String, Value>,
    /// Where [`FakeWhoop::notify`] posts (WHOOP's dashboard webhook URL).
    webhook_target: Option<String>,
    failures: VecDeque<Failure>,
    stats: Stats,
    /// Every token ever issued, access and refresh.
    issued: Vec<String>,
}

/// The fake WHOOP API's state; cheap to clone.
#[derive(Clone)]
pub struct FakeWhoop(Arc<Mutex<Whoop>>);

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
        let end = Utc::now() - Duration::minutes(5);
        self.with(|w| {
            night(
                w,
                user,
                end,
                score_state,
                Vitals {
                    recovery_score,
                    hrv_rmssd_milli,
                    resting_heart_rate,
                    respiratory_rate: 16.1,
                },
            )
        })
    }

    /// `days` nights of history for `user`, the last ending this morning (each a scored sleep,
    /// cycle and recovery with plausible values: RMSSD around 55 ms, resting heart rate around
    /// 56, recovery around 65), and a 45-minute scored run every third day. Returns the sleep
    /// ids, oldest first.
    pub fn seed_history(&self, user: i64, days: u32) -> Vec<String> {
        use rand::Rng;
        let mut rng = rand::rng();
        let today = Utc::now()
            .date_naive()
            .and_hms_opt(6, 30, 0)
            .map(|t| t.and_utc())
            .unwrap_or_else(Utc::now);
        let last = if today > Utc::now() {
            today - Duration::days(1)
        } else {
            today
        };
        self.with(|w| {
            let mut ids = Vec::new();
            for d in (0..i64::from(days)).rev() {
                let end = last - Duration::days(d);
                let hrv: f64 = (55.0f64.ln() + 0.15 * (rng.random::<f64>() - 0.5) * 2.0).exp();
                let vitals = Vitals {
                    recovery_score: (65.0 + rng.random_range(-20.0..20.0f64)).round(),
                    hrv_rmssd_milli: hrv,
                    resting_heart_rate: (56.0 + rng.random_range(-3.0..3.0f64)).round(),
                    respiratory_rate: 15.5 + rng.random_range(-1.0..1.0f64),
                };
                ids.push(night(w, user, end, "SCORED", vitals));
                if d % 3 == 0 {
                    let start = end + Duration::hours(11);
                    if start < Utc::now() {
                        workout(w, user, start, 45, "running", "SCORED");
                    }
                }
            }
            ids
        })
    }

    /// A workout of `minutes` for `user`, ended five minutes ago. Returns its id.
    pub fn add_workout(
        &self,
        user: i64,
        minutes: i64,
        sport_name: &str,
        score_state: &str,
    ) -> String {
        let start = Utc::now() - Duration::minutes(5 + minutes);
        self.with(|w| workout(w, user, start, minutes, sport_name, score_state))
    }

    /// Deletes an object, as the user deleting it in the app would: `sleep` (and its recovery,
    /// which WHOOP deletes with it), `recovery` (named by its sleep id, like the notification) or
    /// `workout`. Whether there was one.
    pub fn delete(&self, kind: &str, id: &str) -> bool {
        self.with(|w| match kind {
            "sleep" => {
                let Some(s) = w.sleeps.remove(id) else {
                    return false;
                };
                if let Some(c) = s["cycle_id"].as_i64() {
                    w.recoveries.remove(&c);
                }
                true
            }
            "recovery" => {
                let cycle = w.sleeps.get(id).and_then(|s| s["cycle_id"].as_i64());
                cycle.is_some_and(|c| w.recoveries.remove(&c).is_some())
            }
            "workout" => w.workouts.remove(id).is_some(),
            _ => false,
        })
    }

    /// Where notifications go: the service's `/webhooks/whoop` (WHOOP's dashboard setting).
    pub fn set_webhook_target(&self, url: Option<String>) {
        self.with(|w| w.webhook_target = url);
    }

    /// Posts a WHOOP notification (`{user_id, id, type, trace_id}`, type e.g.
    /// `recovery.updated`) to the webhook target, signed as WHOOP signs: base64 HMAC-SHA256 of
    /// the millisecond timestamp and the body under the client secret. Returns the answer's
    /// status.
    pub async fn notify(&self, user: i64, id: &str, event_type: &str) -> anyhow::Result<u16> {
        let (target, secret) = self.with(|w| (w.webhook_target.clone(), w.client_secret.clone()));
        let target = target.ok_or_else(|| anyhow::anyhow!("no webhook target set"))?;
        let body = json!({"user_id": user, "id": id, "type": event_type,
            "trace_id": uuid::Uuid::new_v4().to_string()})
        .to_string();
        let ts = Utc::now().timestamp_millis().to_string();
        let mut req = reqwest::Client::new()
            .post(&target)
            .timeout(std::time::Duration::from_secs(10))
            .header("content-type", "application/json");
        for (k, v) in
            auren_core::vendors::whoop::signed_headers(secret.as_bytes(), &ts, body.as_bytes())
        {
            req = req.header(k, v);
        }
        let status = req.body(body).send().await?.status().as_u16();
        self.with(|w| w.stats.notifications_sent += 1);
        Ok(status)
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
            .route("/developer/v2/activity/sleep", get(sleeps))
            .route("/developer/v2/activity/workout/{id}", get(workout_one))
            .route("/developer/v2/activity/workout", get(workouts))
            .route("/developer/v2/cycle/{id}", get(cycle_one))
            .route("/developer/v2/cycle", get(cycles))
            .route("/developer/v2/cycle/{id}/recovery", get(cycle_recovery))
            .route("/developer/v2/recovery", get(recoveries))
            .route("/_fake/whoop/users", post(control_add_user))
            .route("/_fake/whoop/recoveries", post(control_add_recovery))
            .route("/_fake/whoop/history", post(control_history))
            .route("/_fake/whoop/workouts", post(control_add_workout))
            .route("/_fake/whoop/delete", post(control_delete))
            .route("/_fake/whoop/webhook", post(control_webhook))
            .route("/_fake/whoop/notify", post(control_notify))
            .route("/_fake/whoop/failures", post(control_fail))
            .route("/_fake/whoop/stats", get(control_stats))
            .layer(axum::middleware::from_fn_with_state(self.clone(), inject))
            .with_state(self.clone())
    }
}

/// Serves an injected failure when one is queued for the path.
async fn inject(
    State(f): State<FakeWhoop>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    match f.with(|w| take_failure(&mut w.failures, &path)) {
        Some(x) => failure_response(&x).await,
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
    let Ok(target) = url::Url::parse(&q.redirect_uri) else {
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
    match code {
        Some(code) => super::consent_redirect(target, &code, &q.scope, &q.state),
        None => error(StatusCode::BAD_REQUEST, "invalid_client"),
    }
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
    #[serde(default)]
    start: Option<DateTime<Utc>>,
    #[serde(default)]
    end: Option<DateTime<Utc>>,
    #[serde(default, rename = "nextToken")]
    next_token: Option<String>,
}

/// A collection page as WHOOP serves one: the user's records with `time_field` in
/// [`start`, `end`), newest first, at most 25 a page (10 by default), `next_token` the position
/// of the next page (absent on the last).
fn page(mut mine: Vec<Value>, q: PageQuery, time_field: &str) -> Response {
    let time = |v: &Value| {
        v[time_field]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
    };
    mine.retain(|v| {
        let t = time(v);
        q.start.is_none_or(|s| t.is_some_and(|t| t >= s))
            && q.end.is_none_or(|e| t.is_some_and(|t| t < e))
    });
    // Stable: records of one instant keep their (newest-id-first) order.
    mine.sort_by_key(|v| std::cmp::Reverse(time(v)));
    let limit = q.limit.unwrap_or(10).clamp(1, 25);
    let from: usize = match q.next_token.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "invalid nextToken"),
    };
    let records: Vec<Value> = mine.iter().skip(from).take(limit).cloned().collect();
    let mut body = json!({ "records": records });
    if from + limit < mine.len() {
        body["next_token"] = json!((from + limit).to_string());
    }
    Json(body).into_response()
}

fn of_user<'a>(values: impl Iterator<Item = &'a Value>, user: i64) -> Vec<Value> {
    values
        .filter(|v| v["user_id"] == json!(user))
        .cloned()
        .collect()
}

async fn recoveries(
    State(f): State<FakeWhoop>,
    h: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let user = authed!(f, h);
    let mine = f.with(|w| of_user(w.recoveries.values().rev(), user));
    page(mine, q, "created_at")
}

async fn sleeps(State(f): State<FakeWhoop>, h: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let user = authed!(f, h);
    let mine = f.with(|w| of_user(w.sleeps.values(), user));
    page(mine, q, "start")
}

async fn workouts(
    State(f): State<FakeWhoop>,
    h: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let user = authed!(f, h);
    let mine = f.with(|w| of_user(w.workouts.values(), user));
    page(mine, q, "start")
}

async fn cycles(State(f): State<FakeWhoop>, h: HeaderMap, Query(q): Query<PageQuery>) -> Response {
    let user = authed!(f, h);
    let mine = f.with(|w| of_user(w.cycles.values().rev(), user));
    page(mine, q, "start")
}

async fn workout_one(State(f): State<FakeWhoop>, h: HeaderMap, Path(id): Path<String>) -> Response {
    let user = authed!(f, h);
    match f.with(|w| owned(w.workouts.get(&id), user)) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

async fn cycle_one(State(f): State<FakeWhoop>, h: HeaderMap, Path(id): Path<i64>) -> Response {
    let user = authed!(f, h);
    match f.with(|w| owned(w.cycles.get(&id), user)) {
        Some(v) => Json(v).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found"),
    }
}

fn stamp(d: DateTime<Utc>) -> String {
    d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a night measured.
struct Vitals {
    recovery_score: f64,
    hrv_rmssd_milli: f64,
    resting_heart_rate: f64,
    respiratory_rate: f64,
}

/// A night ending at `end`: an eight-hour scored sleep with its stages, its cycle (from waking,
/// still open) and its recovery in `score_state`. Returns the sleep id.
fn night(w: &mut Whoop, user: i64, end: DateTime<Utc>, score_state: &str, v: Vitals) -> String {
    let cycle = w.next_cycle;
    w.next_cycle += 1;
    let sleep_id = uuid::Uuid::new_v4().to_string();
    let start = end - Duration::hours(8);
    let t = stamp;
    let ms = |min: i64| min * 60_000;
    w.sleeps.insert(
        sleep_id.clone(),
        json!({"id": sleep_id, "cycle_id": cycle, "v1_id": null, "user_id": user,
          "created_at": t(end), "updated_at": t(end), "start": t(start), "end": t(end),
          "timezone_offset": "+00:00", "nap": false, "score_state": "SCORED",
          "score": {"stage_summary": {"total_in_bed_time_milli": ms(480),
              "total_awake_time_milli": ms(35), "total_no_data_time_milli": 0,
              "total_light_sleep_time_milli": ms(235), "total_slow_wave_sleep_time_milli": ms(100),
              "total_rem_sleep_time_milli": ms(110), "sleep_cycle_count": 4,
              "disturbance_count": 11},
            "sleep_needed": {"baseline_milli": ms(460), "need_from_sleep_debt_milli": 0,
              "need_from_recent_strain_milli": 0, "need_from_recent_nap_milli": 0},
            "respiratory_rate": v.respiratory_rate, "sleep_performance_percentage": 90.0,
            "sleep_consistency_percentage": 85.0, "sleep_efficiency_percentage": 92.7}}),
    );
    w.cycles.insert(
        cycle,
        json!({"id": cycle, "user_id": user, "created_at": t(end), "updated_at": t(end),
          "start": t(start), "timezone_offset": "+00:00", "score_state": "SCORED",
          "score": {"strain": 9.8, "kilojoule": 8288.3, "average_heart_rate": 68,
            "max_heart_rate": 141}}),
    );
    // The previous cycle of this user ends where this one starts.
    let previous = w
        .cycles
        .iter()
        .rev()
        .find(|(id, c)| **id != cycle && c["user_id"] == json!(user) && c["end"].is_null())
        .map(|(id, _)| *id);
    if let Some(c) = previous.and_then(|id| w.cycles.get_mut(&id)) {
        c["end"] = json!(t(start));
    }
    let mut r = json!({"cycle_id": cycle, "sleep_id": sleep_id, "user_id": user,
        "created_at": t(end), "updated_at": t(end), "score_state": score_state});
    if score_state == "SCORED" {
        r["score"] = json!({"user_calibrating": false, "recovery_score": v.recovery_score,
            "resting_heart_rate": v.resting_heart_rate, "hrv_rmssd_milli": v.hrv_rmssd_milli,
            "spo2_percentage": 95.6875, "skin_temp_celsius": 33.7});
    }
    w.recoveries.insert(cycle, r);
    sleep_id
}

fn workout(
    w: &mut Whoop,
    user: i64,
    start: DateTime<Utc>,
    minutes: i64,
    sport_name: &str,
    score_state: &str,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let end = start + Duration::minutes(minutes);
    let t = stamp;
    let mut v = json!({"id": id, "v1_id": null, "user_id": user, "created_at": t(end),
        "updated_at": t(end), "start": t(start), "end": t(end), "timezone_offset": "+00:00",
        "sport_name": sport_name, "score_state": score_state});
    if score_state == "SCORED" {
        let zone = minutes * 60_000 / 6;
        v["score"] = json!({"strain": 11.2, "average_heart_rate": 142, "max_heart_rate": 171,
            "kilojoule": 2100.5, "percent_recorded": 100.0, "distance_meter": 7400.0,
            "zone_durations": {"zone_zero_milli": zone, "zone_one_milli": zone,
              "zone_two_milli": zone, "zone_three_milli": zone, "zone_four_milli": zone,
              "zone_five_milli": zone}});
    }
    w.workouts.insert(id.clone(), v);
    id
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

#[derive(Deserialize)]
struct History {
    user_id: i64,
    days: u32,
}

async fn control_history(State(f): State<FakeWhoop>, Json(h): Json<History>) -> Json<Value> {
    Json(json!({"sleep_ids": f.seed_history(h.user_id, h.days.min(3660))}))
}

#[derive(Deserialize)]
struct NewWorkout {
    user_id: i64,
    #[serde(default = "forty_five")]
    minutes: i64,
    #[serde(default = "running")]
    sport_name: String,
    #[serde(default = "scored")]
    score_state: String,
}

fn forty_five() -> i64 {
    45
}

fn running() -> String {
    "running".into()
}

async fn control_add_workout(State(f): State<FakeWhoop>, Json(n): Json<NewWorkout>) -> Json<Value> {
    let minutes = n.minutes.clamp(1, 24 * 60);
    Json(json!({"id": f.add_workout(n.user_id, minutes, &n.sport_name, &n.score_state)}))
}

#[derive(Deserialize)]
struct Deletion {
    kind: String,
    id: String,
}

async fn control_delete(State(f): State<FakeWhoop>, Json(d): Json<Deletion>) -> StatusCode {
    if f.delete(&d.kind, &d.id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[derive(Deserialize)]
struct Target {
    url: Option<String>,
}

async fn control_webhook(State(f): State<FakeWhoop>, Json(t): Json<Target>) -> StatusCode {
    f.set_webhook_target(t.url);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Notify {
    user_id: i64,
    id: String,
    #[serde(rename = "type")]
    event_type: String,
}

async fn control_notify(State(f): State<FakeWhoop>, Json(n): Json<Notify>) -> Response {
    match f.notify(n.user_id, &n.id, &n.event_type).await {
        Ok(status) => Json(json!({"status": status})).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, &e.to_string()),
    }
}

async fn control_fail(State(f): State<FakeWhoop>, Json(x): Json<Failure>) -> StatusCode {
    f.fail(x);
    StatusCode::NO_CONTENT
}

async fn control_stats(State(f): State<FakeWhoop>) -> Json<Stats> {
    Json(f.stats())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auren_core::vendors::whoop::data::{self, Page, Sleep, Workout};

    const ID: &str = "whoop-client";
    const SECRET: &str = "whoop-secret";

    async fn start() -> (FakeWhoop, String) {
        let fake = FakeWhoop::new(ID, SECRET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = fake.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (fake, url)
    }

    /// A token for `user` without the browser: the fake's state, as the token endpoint fills it.
    fn token_for(fake: &FakeWhoop, user: i64) -> String {
        fake.with(|w| {
            issue(w, user, "offline read:sleep")["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        })
    }

    #[tokio::test]
    async fn history_pages_newest_first_and_deletes_take_the_recovery_along() {
        let (fake, url) = start().await;
        let user = fake.add_user();
        let ids = fake.seed_history(user, 30);
        assert_eq!(ids.len(), 30);
        let token = token_for(&fake, user);
        let c = reqwest::Client::new();
        let mut next: Option<String> = None;
        let mut seen: Vec<Sleep> = Vec::new();
        loop {
            let mut q = vec![("limit", "25".to_string())];
            if let Some(t) = &next {
                q.push(("nextToken", t.clone()));
            }
            let r = c
                .get(format!("{url}/developer/v2/activity/sleep"))
                .query(&q)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let page: Page<Sleep> = data::parse(&r.bytes().await.unwrap()).unwrap();
            assert!(page.records.len() <= 25);
            seen.extend(page.records);
            next = page.next_token;
            if next.is_none() {
                break;
            }
        }
        assert_eq!(seen.len(), 30);
        assert!(seen.windows(2).all(|w| w[0].start > w[1].start));
        assert!(seen.iter().all(|s| !data::sleep_samples(s).is_empty()));

        // start/end bound the page by the sleep's start.
        let start = seen[4].start.to_rfc3339();
        let r = c
            .get(format!("{url}/developer/v2/activity/sleep"))
            .query(&[("start", start.as_str())])
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let page: Page<Sleep> = data::parse(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(page.records.len(), 5);

        let workout = fake.add_workout(user, 40, "cycling", "SCORED");
        let r = c
            .get(format!("{url}/developer/v2/activity/workout/{workout}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let w: Workout = data::parse(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(data::workout_samples(&w)[0].value, 40.0);

        let last = ids.last().unwrap();
        assert!(fake.delete("sleep", last));
        let gone = c
            .get(format!("{url}/developer/v2/activity/sleep/{last}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 404);
        assert!(!fake.delete("recovery", last));
        assert_eq!(fake.with(|w| w.recoveries.len()), 29);
    }

    #[tokio::test]
    async fn notify_posts_a_signed_notification_to_the_target() {
        let (fake, _) = start().await;
        let got: Arc<Mutex<Vec<(HeaderMap, axum::body::Bytes)>>> = Arc::default();
        let seen = got.clone();
        let app = Router::new().route(
            "/webhooks/whoop",
            post(move |h: HeaderMap, b: axum::body::Bytes| async move {
                seen.lock().unwrap().push((h, b));
                StatusCode::NO_CONTENT
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = format!("http://{}/webhooks/whoop", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let user = fake.add_user();
        assert!(fake.notify(user, "x", "recovery.updated").await.is_err());
        fake.set_webhook_target(Some(target));
        let sleep = fake.add_recovery(user, "SCORED", 30.0, 31.8, 64.0);
        assert_eq!(
            fake.notify(user, &sleep, "recovery.updated").await.unwrap(),
            204
        );
        let (h, b) = got.lock().unwrap()[0].clone();
        let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
        assert!(auren_core::vendors::whoop::verify(
            SECRET.as_bytes(),
            header("x-whoop-signature"),
            header("x-whoop-signature-timestamp"),
            &b,
            Utc::now(),
        )
        .is_ok());
        let d = auren_core::vendors::whoop::parse_delivery(&b).unwrap();
        assert_eq!(d.split_type(), ("recovery", "updated"));
        assert_eq!(d.id.to_id_string(), sleep);
        assert_eq!(fake.stats().notifications_sent, 1);
    }
}
