//! The fake Oura API v2: OAuth2 authorize and token (authorization code and rotating refresh
//! tokens, `expires_in`), personal info, every fetched data type
//! ([`auren_core::vendors::oura::data::DATA_TYPES`], plus `daily_stress` and `daily_sleep`) as
//! single documents and as paged collections, webhook subscriptions with Oura's verification
//! handshake and expiry, signed deliveries, seeded history and injected failures.
//!
//! Where Oura's documents leave a behaviour open, the fake picks one and says so: collections
//! include both ends of `start_date..end_date` (a client that dedups by document version loses
//! nothing either way), `next_token` is an opaque offset, and a failed handshake refuses the
//! subscription with 400.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::{error, failure_response, take_failure, token, Failure};
use auren_core::vendors::oura::data::{self as oura_data, DateRange};

/// Webhook `data_type` values Oura accepts (`ExtApiV2DataType`, newer spec). `heartrate` is not
/// one: a client that tries to subscribe to it is told 422, as by Oura.
const WEBHOOK_DATA_TYPES: &[&str] = &[
    "tag",
    "enhanced_tag",
    "workout",
    "session",
    "sleep",
    "daily_sleep",
    "daily_readiness",
    "daily_activity",
    "daily_spo2",
    "sleep_time",
    "rest_mode_period",
    "ring_configuration",
    "daily_stress",
    "daily_cycle_phases",
    "activation_status",
    "daily_cardiovascular_age",
    "daily_resilience",
    "vo2_max",
    "period_start",
    "pregnancy",
    "fertile_window",
    "ovulation_confirmed",
    "blood_glucose",
];

/// Types served besides [`oura_data::DATA_TYPES`] (read, though they give no readings).
const EXTRA_TYPES: &[&str] = &["daily_stress", "daily_sleep"];

/// How long a subscription lasts: not in Oura's spec; peers renew on the assumption of 90 days.
const SUBSCRIPTION_DAYS: i64 = 90;

/// What the fake has served, for assertions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OuraStats {
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub refreshes_refused: u64,
    /// Authenticated data requests (personal info, documents, collections).
    pub data_requests: u64,
    pub subscriptions_listed: u64,
    pub subscriptions_created: u64,
    pub subscriptions_updated: u64,
    pub subscriptions_deleted: u64,
    pub subscriptions_renewed: u64,
    /// Subscription calls refused for missing or wrong app credentials.
    pub subscription_auth_refused: u64,
    /// Verification handshakes the callback did not answer correctly.
    pub handshakes_failed: u64,
    /// Deliveries that reached a receiver (whatever it answered).
    pub notifications_sent: u64,
    /// Grants revoked through `/oauth/revoke`.
    pub revocations: u64,
}

/// A webhook subscription, as Oura's `WebhookSubscriptionModel` (the verification token is
/// kept, never shown).
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub id: String,
    pub callback_url: String,
    pub event_type: String,
    pub data_type: String,
    pub expiration_time: DateTime<Utc>,
    #[serde(skip)]
    pub verification_token: String,
}

/// A granted token: its user, and the scopes it carries.
#[derive(Clone)]
struct Grant {
    user: String,
    scope: String,
}

#[derive(Default)]
struct Oura {
    client_id: String,
    client_secret: String,
    access_ttl_seconds: i64,
    page_size: usize,
    next_user: u64,
    /// Oura user id -> email.
    users: BTreeMap<String, String>,
    consent_as: Option<String>,
    /// code -> (grant, redirect_uri).
    codes: HashMap<String, (Grant, String)>,
    access: HashMap<String, (Grant, DateTime<Utc>)>,
    refresh: HashMap<String, Grant>,
    /// Webhook data type -> document id -> (user, document).
    docs: BTreeMap<String, BTreeMap<String, (String, Value)>>,
    /// (user, row), in insertion order; listed sorted by time.
    heartrate: Vec<(String, Value)>,
    subscriptions: BTreeMap<String, Subscription>,
    /// Where [`FakeOura::notify`] posts instead of the subscriptions' callbacks, when set.
    webhook_target: Option<String>,
    failures: VecDeque<Failure>,
    stats: OuraStats,
    issued: Vec<String>,
}

/// The fake Oura API's state; cheap to clone.
#[derive(Clone)]
pub struct FakeOura(Arc<Mutex<Oura>>);

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The webhook name of a collection segment we serve (`vO2_max` -> `vo2_max`).
fn served_type(segment: &str) -> Option<(&'static str, DateRange)> {
    if let Some(t) = oura_data::data_type(segment) {
        return Some((t.webhook, t.dated_by));
    }
    EXTRA_TYPES
        .iter()
        .find(|t| **t == segment)
        .map(|t| (*t, DateRange::Dates))
}

/// The scope a type needs (the extra types are daily summaries).
fn scope_of(data_type: &str) -> &'static str {
    oura_data::data_type(data_type).map_or("daily", |t| t.scope)
}

/// A plausible document of `data_type` for `user` on `day` (the night ending that morning, the
/// day's activity), before ids and meta. None for heart rate (rows, not documents) and unknown
/// types.
fn template(data_type: &str, day: NaiveDate, rng: &mut impl rand::Rng) -> Option<Value> {
    let at = |h: u32, m: u32| day.and_hms_opt(h, m, 0).map(|t| stamp(t.and_utc()));
    let d = day.format("%Y-%m-%d").to_string();
    let prev = day.pred_opt().unwrap_or(day);
    let bed = prev.and_hms_opt(23, 0, 0).map(|t| stamp(t.and_utc()));
    Some(match data_type {
        "sleep" => {
            let hrv = (45.0f64.ln() + rng.random_range(-0.15..0.15)).exp().round();
            json!({"average_breath": 14.0 + rng.random_range(-1.0..1.0f64),
              "average_heart_rate": 57.5, "average_hrv": hrv, "awake_time": 2400,
              "bedtime_end": at(7, 0), "bedtime_start": bed, "day": d,
              "deep_sleep_duration": 5400, "efficiency": 90, "heart_rate": null, "hrv": null,
              "latency": 600, "light_sleep_duration": 13800, "low_battery_alert": false,
              "lowest_heart_rate": 50 + rng.random_range(0..5), "movement_30_sec": null,
              "period": 0,
              "readiness": {"contributors": {"activity_balance": 80, "body_temperature": 95,
                  "hrv_balance": 75, "previous_day_activity": 70, "previous_night": 80,
                  "recovery_index": 85, "resting_heart_rate": 90, "sleep_balance": 80,
                  "sleep_regularity": 80},
                "score": 75, "temperature_deviation": rng.random_range(-0.3..0.3f64),
                "temperature_trend_deviation": 0.0},
              "readiness_score_delta": 0, "rem_sleep_duration": 6600, "restless_periods": 100,
              "sleep_phase_5_min": null, "sleep_score_delta": 0, "time_in_bed": 28800,
              "total_sleep_duration": 25800, "type": "long_sleep", "ring_id": null,
              "sleep_algorithm_version": "v2"})
        }
        "daily_readiness" => json!({"contributors": {"activity_balance": 80,
              "body_temperature": 95, "hrv_balance": 75, "previous_day_activity": 70,
              "previous_night": 80, "recovery_index": 85, "resting_heart_rate": 90,
              "sleep_balance": 80, "sleep_regularity": 80},
            "day": d, "score": 70 + rng.random_range(-15..15),
            "temperature_deviation": rng.random_range(-0.3..0.3f64),
            "temperature_trend_deviation": 0.0, "timestamp": at(0, 0)}),
        "daily_activity" => json!({"active_calories": rng.random_range(200..700),
            "average_met_minutes": 1.5, "class_5_min": null,
            "contributors": {"meet_daily_targets": 60, "move_every_hour": 90,
              "recovery_time": 90, "stay_active": 80, "training_frequency": 80,
              "training_volume": 80},
            "day": d, "equivalent_walking_distance": 8000, "high_activity_met_minutes": 20,
            "high_activity_time": 600, "inactivity_alerts": 0, "low_activity_met_minutes": 150,
            "low_activity_time": 12000, "medium_activity_met_minutes": 60,
            "medium_activity_time": 1800, "met": {"interval": 60.0, "items": [], "timestamp": at(4, 0)},
            "meters_to_target": 1000, "non_wear_time": 0, "resting_time": 30000, "score": 80,
            "sedentary_met_minutes": 10, "sedentary_time": 30000,
            "steps": rng.random_range(4000..12000), "target_calories": 450,
            "target_meters": 9000, "timestamp": at(4, 0), "total_calories": 2300}),
        "daily_spo2" => json!({"breathing_disturbance_index": 4, "day": d,
            "spo2_percentage": {"average": 96.0 + rng.random_range(-1.0..1.5f64)}}),
        "daily_stress" => json!({"day": d, "day_summary": "normal",
            "recovery_high": 3600, "stress_high": 2700}),
        "daily_sleep" => json!({"contributors": {"deep_sleep": 90, "efficiency": 85,
              "latency": 80, "rem_sleep": 90, "restfulness": 80, "timing": 85, "total_sleep": 80},
            "day": d, "score": 80, "timestamp": at(0, 0)}),
        "workout" => json!({"activity": "running", "calories": 420.0, "day": d,
            "distance": 7400.0, "end_datetime": at(18, 45), "intensity": "moderate",
            "label": null, "source": "confirmed", "start_datetime": at(18, 0)}),
        "vo2_max" => json!({"day": d, "timestamp": at(0, 0), "vo2_max": 44}),
        _ => return None,
    })
}

/// When a template's data describes: a document is not served before that (a night before the
/// morning it ends, a workout before it is over).
fn ready_at(doc: &Value) -> Option<DateTime<Utc>> {
    ["bedtime_end", "end_datetime"]
        .iter()
        .find_map(|k| doc[*k].as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
}

impl FakeOura {
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        FakeOura(Arc::new(Mutex::new(Oura {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            access_ttl_seconds: 86_400,
            page_size: 50,
            next_user: 1,
            ..Default::default()
        })))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Oura) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// A new Oura user (its `personal_info` id); the next authorize request consents as them.
    pub fn add_user(&self) -> String {
        self.with(|o| {
            let id = format!("oura-user-{}", o.next_user);
            o.next_user += 1;
            o.users.insert(id.clone(), format!("{id}@example.com"));
            o.consent_as = Some(id.clone());
            id
        })
    }

    /// Lifetime of the access tokens issued from now on (`expires_in`).
    pub fn set_access_ttl(&self, seconds: i64) {
        self.with(|o| o.access_ttl_seconds = seconds);
    }

    /// How many documents or rows a collection page holds (at least 1).
    pub fn set_page_size(&self, n: usize) {
        self.with(|o| o.page_size = n.max(1));
    }

    /// A document of `data_type` for `user`, dated today (the latest one already over): a
    /// plausible one with `fields` laid over it (e.g. `{"average_hrv": 31,
    /// "lowest_heart_rate": 64}` or `{"type": "rest"}`). Its id is new unless `fields` has one;
    /// `meta` is version 1, updated now. None for a type not served.
    pub fn add_document(&self, user: &str, data_type: &str, fields: Value) -> Option<String> {
        let (name, range) = served_type(data_type)?;
        if range == DateRange::DateTimes {
            return None;
        }
        let mut rng = rand::rng();
        let today = Utc::now().date_naive();
        let mut doc = template(name, today, &mut rng)?;
        // Before this morning's night (or this evening's workout) is over, yesterday's: a
        // reading dated in the future would be refused at ingest.
        if ready_at(&doc).is_some_and(|r| r > Utc::now()) {
            doc = template(name, today.pred_opt().unwrap_or(today), &mut rng)?;
        }
        if let (Some(d), Some(f)) = (doc.as_object_mut(), fields.as_object()) {
            for (k, v) in f {
                d.insert(k.clone(), v.clone());
            }
        }
        let id = doc["id"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        doc["id"] = json!(id);
        doc["meta"] = json!({"updated_at": stamp(Utc::now()), "version": 1});
        self.with(|o| {
            o.docs
                .entry(name.to_string())
                .or_default()
                .insert(id.clone(), (user.to_string(), doc))
        });
        Some(id)
    }

    /// Revises a document as Oura does when a late sync changes it: `fields` laid over it, its
    /// version one higher, updated now. Whether there was one.
    pub fn update_document(&self, data_type: &str, id: &str, fields: Value) -> bool {
        let Some((name, _)) = served_type(data_type) else {
            return false;
        };
        self.with(|o| {
            let Some((_, doc)) = o.docs.get_mut(name).and_then(|d| d.get_mut(id)) else {
                return false;
            };
            if let (Some(d), Some(f)) = (doc.as_object_mut(), fields.as_object()) {
                for (k, v) in f {
                    if k != "id" && k != "meta" {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
            let version = doc["meta"]["version"].as_i64().unwrap_or(0) + 1;
            doc["meta"] = json!({"updated_at": stamp(Utc::now()), "version": version});
            true
        })
    }

    /// Deletes a document (the user deleted it in the app). Whether there was one.
    pub fn delete_document(&self, data_type: &str, id: &str) -> bool {
        let Some((name, _)) = served_type(data_type) else {
            return false;
        };
        self.with(|o| o.docs.get_mut(name).is_some_and(|d| d.remove(id).is_some()))
    }

    /// One heart-rate row for `user`.
    pub fn add_heart_rate(&self, user: &str, at: DateTime<Utc>, bpm: u32, source: &str) {
        let row = json!({"bpm": bpm, "source": source, "timestamp": stamp(at),
            "timestamp_unix": at.timestamp_millis()});
        self.with(|o| o.heartrate.push((user.to_string(), row)));
    }

    /// `days` days of history for `user`, the last being today: per day the night's sleep, a
    /// readiness, activity, SpO2, stress and sleep summary, a workout every third day, a VO2 max
    /// estimate every seventh, and heart rate every 5 minutes asleep and every 30 awake; nothing
    /// that would lie in the future. Returns the number of documents added.
    pub fn seed_history(&self, user: &str, days: u32) -> usize {
        let mut rng = rand::rng();
        let now = Utc::now();
        let today = now.date_naive();
        let mut docs = Vec::new();
        let mut rows = Vec::new();
        for back in (0..i64::from(days)).rev() {
            let day = today - Duration::days(back);
            let mut types = vec![
                "sleep",
                "daily_readiness",
                "daily_activity",
                "daily_spo2",
                "daily_stress",
                "daily_sleep",
            ];
            if back % 3 == 0 {
                types.push("workout");
            }
            if back % 7 == 0 {
                types.push("vo2_max");
            }
            for t in types {
                let Some(mut doc) = template(t, day, &mut rng) else {
                    continue;
                };
                if ready_at(&doc).is_some_and(|r| r > now) {
                    continue;
                }
                let id = uuid::Uuid::new_v4().to_string();
                doc["id"] = json!(id);
                let updated = ready_at(&doc)
                    .unwrap_or_else(|| day.and_hms_opt(7, 5, 0).map_or(now, |t| t.and_utc()))
                    .min(now);
                doc["meta"] = json!({"updated_at": stamp(updated), "version": 1});
                docs.push((t, id, doc));
            }
            let night = (day - Duration::days(1))
                .and_hms_opt(23, 0, 0)
                .map(|t| t.and_utc());
            let Some(night) = night else { continue };
            let mut at = night;
            while at < night + Duration::hours(22) && at <= now {
                let asleep = at < night + Duration::hours(8);
                let bpm = if asleep {
                    rng.random_range(48..58)
                } else {
                    rng.random_range(62..85)
                };
                let source = if asleep { "sleep" } else { "awake" };
                rows.push(json!({"bpm": bpm, "source": source, "timestamp": stamp(at),
                    "timestamp_unix": at.timestamp_millis()}));
                at += Duration::minutes(if asleep { 5 } else { 30 });
            }
        }
        let n = docs.len();
        self.with(|o| {
            for (t, id, doc) in docs {
                o.docs
                    .entry(t.to_string())
                    .or_default()
                    .insert(id, (user.to_string(), doc));
            }
            o.heartrate
                .extend(rows.into_iter().map(|r| (user.to_string(), r)));
        });
        n
    }

    /// Serves `f` instead of the next `f.count` answers under its path prefix.
    pub fn fail(&self, f: Failure) {
        self.with(|o| o.failures.push_back(f));
    }

    /// Every access token stops working: the next call gets 401.
    pub fn expire_access_tokens(&self) {
        self.with(|o| o.access.clear());
    }

    /// Every refresh token stops working (the user revoked the app).
    pub fn revoke_refresh_tokens(&self) {
        self.with(|o| o.refresh.clear());
    }

    /// Every access and refresh token issued so far.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.with(|o| o.issued.clone())
    }

    pub fn stats(&self) -> OuraStats {
        self.with(|o| o.stats.clone())
    }

    pub fn subscriptions(&self) -> Vec<Subscription> {
        self.with(|o| o.subscriptions.values().cloned().collect())
    }

    /// Moves a subscription's expiry (every subscription's when `id` is None) to `at`, to test
    /// renewal. Whether any was found.
    pub fn set_subscription_expiry(&self, id: Option<&str>, at: DateTime<Utc>) -> bool {
        self.with(|o| {
            let mut found = false;
            for s in o.subscriptions.values_mut() {
                if id.is_none_or(|i| i == s.id) {
                    s.expiration_time = at;
                    found = true;
                }
            }
            found
        })
    }

    /// Where [`FakeOura::notify`] posts instead of the subscriptions' callbacks (None: the
    /// callbacks).
    pub fn set_webhook_target(&self, url: Option<String>) {
        self.with(|o| o.webhook_target = url);
    }

    /// Posts an Oura delivery `{event_type, data_type, object_id, event_time, user_id}` signed as
    /// Oura signs (upper-case hex HMAC-SHA256 of `x-oura-timestamp` in seconds and the body,
    /// under the client secret) to the webhook target if one is set, else to the callback of
    /// every unexpired subscription for this event and data type. Returns each URL with its
    /// answer's status or the error.
    pub async fn notify(
        &self,
        user: &str,
        data_type: &str,
        object_id: &str,
        event_type: &str,
    ) -> Vec<(String, Result<u16, String>)> {
        let now = Utc::now();
        let (targets, secret) = self.with(|o| {
            let targets: Vec<String> = match &o.webhook_target {
                Some(t) => vec![t.clone()],
                None => {
                    let mut urls: Vec<String> = o
                        .subscriptions
                        .values()
                        .filter(|s| {
                            s.data_type == data_type
                                && s.event_type == event_type
                                && s.expiration_time > now
                        })
                        .map(|s| s.callback_url.clone())
                        .collect();
                    urls.dedup();
                    urls
                }
            };
            (targets, o.client_secret.clone())
        });
        let body = json!({"event_type": event_type, "data_type": data_type,
            "object_id": object_id, "event_time": stamp(now), "user_id": user})
        .to_string();
        let ts = now.timestamp().to_string();
        let client = reqwest::Client::new();
        let mut out = Vec::new();
        for url in targets {
            let mut req = client
                .post(&url)
                .timeout(std::time::Duration::from_secs(10))
                .header("content-type", "application/json");
            for (k, v) in
                auren_core::vendors::oura::signed_headers(secret.as_bytes(), &ts, body.as_bytes())
            {
                req = req.header(k, v);
            }
            let r = req
                .body(body.clone())
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string());
            if r.is_ok() {
                self.with(|o| o.stats.notifications_sent += 1);
            }
            out.push((url, r));
        }
        out
    }

    /// The routes, under the paths of the real hosts (`/oauth/...`, `/v2/...`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token_endpoint))
            .route("/oauth/revoke", get(revoke))
            .route("/v2/usercollection/personal_info", get(personal_info))
            .route("/v2/usercollection/{kind}", get(collection))
            .route("/v2/usercollection/{kind}/{id}", get(document))
            .route(
                "/v2/webhook/subscription",
                get(list_subscriptions).post(create_subscription),
            )
            .route(
                "/v2/webhook/subscription/{id}",
                get(get_subscription)
                    .put(update_subscription)
                    .delete(delete_subscription),
            )
            .route(
                "/v2/webhook/subscription/renew/{id}",
                put(renew_subscription),
            )
            .route("/_fake/oura/users", post(control_add_user))
            .route("/_fake/oura/history", post(control_history))
            .route("/_fake/oura/documents", post(control_add_document))
            .route(
                "/_fake/oura/documents/update",
                post(control_update_document),
            )
            .route(
                "/_fake/oura/documents/delete",
                post(control_delete_document),
            )
            .route("/_fake/oura/failures", post(control_fail))
            .route("/_fake/oura/stats", get(control_stats))
            .route("/_fake/oura/webhook", post(control_webhook))
            .route("/_fake/oura/notify", post(control_notify))
            .route(
                "/_fake/oura/subscriptions/expiry",
                post(control_subscription_expiry),
            )
            .layer(axum::middleware::from_fn_with_state(self.clone(), inject))
            .with_state(self.clone())
    }
}

/// Serves an injected failure when one is queued for the path.
async fn inject(
    State(f): State<FakeOura>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path().to_string();
    match f.with(|o| take_failure(&mut o.failures, &path)) {
        Some(x) => failure_response(&x).await,
        None => next.run(req).await,
    }
}

/// FastAPI's shape for a refusal, which Oura's API uses.
fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({"detail": text}))).into_response()
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

async fn authorize(State(f): State<FakeOura>, Query(q): Query<AuthorizeQuery>) -> Response {
    let Ok(target) = url::Url::parse(&q.redirect_uri) else {
        return error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let code = f.with(|o| {
        if q.client_id != o.client_id || q.response_type != "code" {
            return None;
        }
        let user = match &o.consent_as {
            Some(u) => u.clone(),
            None => {
                let id = format!("oura-user-{}", o.next_user);
                o.next_user += 1;
                o.users.insert(id.clone(), format!("{id}@example.com"));
                id
            }
        };
        let code = token();
        let grant = Grant {
            user,
            scope: q.scope.clone(),
        };
        o.codes
            .insert(code.clone(), (grant, q.redirect_uri.clone()));
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
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

/// The client's credentials: form fields, or HTTP Basic (both are OAuth2 client auth).
fn client_credentials(h: &HeaderMap, t: &TokenForm) -> Option<(String, String)> {
    if let (Some(id), Some(secret)) = (&t.client_id, &t.client_secret) {
        return Some((id.clone(), secret.clone()));
    }
    use base64::Engine;
    let basic = h
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(basic.trim())
        .ok()?;
    let (id, secret) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// Oura always issues a refresh token; a refresh spends the one used (rotation).
fn issue(o: &mut Oura, grant: Grant) -> Value {
    let access = token();
    let refresh = token();
    let body = json!({"token_type": "bearer", "access_token": access,
        "expires_in": o.access_ttl_seconds, "refresh_token": refresh, "scope": grant.scope});
    o.access.insert(
        access.clone(),
        (
            grant.clone(),
            Utc::now() + Duration::seconds(o.access_ttl_seconds),
        ),
    );
    o.refresh.insert(refresh.clone(), grant);
    o.issued.push(access);
    o.issued.push(refresh);
    body
}

async fn token_endpoint(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Form(t): Form<TokenForm>,
) -> Response {
    f.with(|o| {
        match client_credentials(&h, &t) {
            Some((id, secret)) if id == o.client_id && secret == o.client_secret => {}
            _ => return error(StatusCode::UNAUTHORIZED, "invalid_client"),
        }
        match t.grant_type.as_str() {
            "authorization_code" => {
                let Some((grant, redirect)) = t.code.as_deref().and_then(|c| o.codes.remove(c))
                else {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                };
                if t.redirect_uri.as_deref() != Some(redirect.as_str()) {
                    return error(StatusCode::BAD_REQUEST, "invalid_grant");
                }
                o.stats.code_exchanges += 1;
                Json(issue(o, grant)).into_response()
            }
            "refresh_token" => match t.refresh_token.as_deref().and_then(|r| o.refresh.remove(r)) {
                Some(grant) => {
                    o.stats.refreshes += 1;
                    Json(issue(o, grant)).into_response()
                }
                None => {
                    o.stats.refreshes_refused += 1;
                    error(StatusCode::BAD_REQUEST, "invalid_grant")
                }
            },
            _ => error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
        }
    })
}

#[derive(Deserialize)]
struct RevokeQuery {
    access_token: String,
}

/// `GET /oauth/revoke?access_token=`: Oura's OAuth server ends the grant the token belongs to
/// (the API reference documents no revocation; Oura's client libraries call this). Every token
/// the user gave this app stops working.
async fn revoke(State(f): State<FakeOura>, Query(q): Query<RevokeQuery>) -> Response {
    f.with(|o| {
        let Some((grant, _)) = o.access.get(&q.access_token).cloned() else {
            return error(StatusCode::UNAUTHORIZED, "invalid_token");
        };
        o.access.retain(|_, (g, _)| g.user != grant.user);
        o.refresh.retain(|_, g| g.user != grant.user);
        o.stats.revocations += 1;
        StatusCode::OK.into_response()
    })
}

/// The grant of a bearer token valid now.
fn bearer(f: &FakeOura, h: &HeaderMap) -> Option<Grant> {
    let t = h
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    f.with(|o| {
        o.stats.data_requests += 1;
        o.access
            .get(t)
            .filter(|(_, exp)| *exp > Utc::now())
            .map(|(g, _)| g.clone())
    })
}

macro_rules! authed {
    ($f:expr, $h:expr) => {
        match bearer(&$f, &$h) {
            Some(g) => g,
            None => return detail(StatusCode::UNAUTHORIZED, "Unauthorized"),
        }
    };
}

/// The 403 Oura answers a token without the type's scope (or an expired membership) with.
fn check_scope(g: &Grant, data_type: &str) -> Option<Response> {
    let need = scope_of(data_type);
    (!g.scope.split(' ').any(|s| s == need)).then(|| detail(StatusCode::FORBIDDEN, "missing scope"))
}

async fn personal_info(State(f): State<FakeOura>, h: HeaderMap) -> Response {
    let g = authed!(f, h);
    let email = f.with(|o| o.users.get(&g.user).cloned());
    Json(
        json!({"id": g.user, "age": 34, "weight": 70.5, "height": 1.78,
        "biological_sex": "female", "email": email}),
    )
    .into_response()
}

async fn document(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> Response {
    let g = authed!(f, h);
    let Some((name, DateRange::Dates)) = served_type(&kind) else {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Some(r) = check_scope(&g, name) {
        return r;
    }
    let doc = f.with(|o| {
        o.docs
            .get(name)
            .and_then(|d| d.get(&id))
            .filter(|(u, _)| *u == g.user)
            .map(|(_, v)| v.clone())
    });
    match doc {
        Some(v) => Json(v).into_response(),
        None => detail(StatusCode::NOT_FOUND, "Document not found"),
    }
}

#[derive(Deserialize)]
struct CollectionQuery {
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default)]
    start_datetime: Option<String>,
    #[serde(default)]
    end_datetime: Option<String>,
    #[serde(default)]
    next_token: Option<String>,
}

/// A date bound: `2024-03-10` or a date-time, whose date counts.
fn date_bound(s: &Option<String>) -> Result<Option<NaiveDate>, ()> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .get(..10)
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(Some)
            .ok_or(()),
    }
}

fn time_bound(s: &Option<String>) -> Result<Option<DateTime<Utc>>, ()> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some(t.with_timezone(&Utc)))
            .map_err(|_| ()),
    }
}

async fn collection(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Path(kind): Path<String>,
    Query(q): Query<CollectionQuery>,
) -> Response {
    let g = authed!(f, h);
    let Some((name, range)) = served_type(&kind) else {
        return detail(StatusCode::NOT_FOUND, "Not Found");
    };
    if let Some(r) = check_scope(&g, name) {
        return r;
    }
    let mine: Vec<Value> = match range {
        DateRange::Dates => {
            let (Ok(start), Ok(end)) = (date_bound(&q.start_date), date_bound(&q.end_date)) else {
                return detail(StatusCode::BAD_REQUEST, "invalid date");
            };
            let mut docs: Vec<Value> = f.with(|o| {
                o.docs
                    .get(name)
                    .into_iter()
                    .flat_map(|d| d.values())
                    .filter(|(u, _)| *u == g.user)
                    .map(|(_, v)| v.clone())
                    .collect()
            });
            let day = |v: &Value| {
                v["day"]
                    .as_str()
                    .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            };
            docs.retain(|v| {
                let d = day(v);
                start.is_none_or(|s| d.is_some_and(|d| d >= s))
                    && end.is_none_or(|e| d.is_some_and(|d| d <= e))
            });
            docs.sort_by_key(day);
            docs
        }
        DateRange::DateTimes => {
            let (Ok(start), Ok(end)) = (time_bound(&q.start_datetime), time_bound(&q.end_datetime))
            else {
                return detail(StatusCode::BAD_REQUEST, "invalid datetime");
            };
            let at = |v: &Value| v["timestamp_unix"].as_i64().unwrap_or(0);
            let mut rows: Vec<Value> = f.with(|o| {
                o.heartrate
                    .iter()
                    .filter(|(u, _)| *u == g.user)
                    .map(|(_, v)| v.clone())
                    .collect()
            });
            rows.retain(|v| {
                start.is_none_or(|s| at(v) >= s.timestamp_millis())
                    && end.is_none_or(|e| at(v) <= e.timestamp_millis())
            });
            rows.sort_by_key(at);
            rows
        }
    };
    let size = f.with(|o| o.page_size);
    let from: usize = match q.next_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match t.strip_prefix("fake-").and_then(|n| n.parse().ok()) {
            Some(n) => n,
            None => return detail(StatusCode::BAD_REQUEST, "invalid next_token"),
        },
    };
    let data: Vec<Value> = mine.iter().skip(from).take(size).cloned().collect();
    let next = (from + size < mine.len()).then(|| format!("fake-{}", from + size));
    Json(json!({"data": data, "next_token": next})).into_response()
}

/// The refusal of a subscription call without the app's credentials: 401 when missing, 403
/// when wrong.
fn app_auth(f: &FakeOura, h: &HeaderMap) -> Option<Response> {
    let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (id, secret) = (header("x-client-id"), header("x-client-secret"));
    f.with(|o| match (id, secret) {
        (Some(i), Some(s)) if i == o.client_id && s == o.client_secret => None,
        (Some(_), Some(_)) => {
            o.stats.subscription_auth_refused += 1;
            Some(detail(StatusCode::FORBIDDEN, "Forbidden"))
        }
        _ => {
            o.stats.subscription_auth_refused += 1;
            Some(detail(StatusCode::UNAUTHORIZED, "Unauthorized"))
        }
    })
}

/// Oura's verification: `GET callback?verification_token=..&challenge=..` must answer 200 with
/// `{"challenge": <the same>}` within 10 seconds.
async fn handshake(f: &FakeOura, callback_url: &str, verification_token: &str) -> bool {
    let Ok(mut url) = url::Url::parse(callback_url) else {
        return false;
    };
    let challenge = token();
    url.query_pairs_mut()
        .append_pair("verification_token", verification_token)
        .append_pair("challenge", &challenge);
    let answer = async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        if r.status() != StatusCode::OK {
            return None;
        }
        r.json::<Value>().await.ok()
    }
    .await;
    let ok = answer.is_some_and(|v| v["challenge"] == json!(challenge));
    if !ok {
        f.with(|o| o.stats.handshakes_failed += 1);
    }
    ok
}

#[derive(Deserialize)]
struct CreateSubscription {
    callback_url: String,
    verification_token: String,
    event_type: String,
    data_type: String,
}

#[derive(Deserialize)]
struct UpdateSubscription {
    verification_token: String,
    #[serde(default)]
    callback_url: Option<String>,
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    data_type: Option<String>,
}

/// 422 as FastAPI answers a body that does not fit the model.
fn unprocessable(what: &str) -> Response {
    detail(StatusCode::UNPROCESSABLE_ENTITY, what)
}

fn check_types(event_type: &str, data_type: &str) -> Option<Response> {
    if !["create", "update", "delete"].contains(&event_type) {
        return Some(unprocessable(
            "event_type is not one of create, update, delete",
        ));
    }
    if !WEBHOOK_DATA_TYPES.contains(&data_type) {
        return Some(unprocessable("data_type is not a webhook data type"));
    }
    None
}

async fn list_subscriptions(State(f): State<FakeOura>, h: HeaderMap) -> Response {
    if let Some(r) = app_auth(&f, &h) {
        return r;
    }
    f.with(|o| o.stats.subscriptions_listed += 1);
    Json(f.subscriptions()).into_response()
}

async fn create_subscription(State(f): State<FakeOura>, h: HeaderMap, body: Bytes) -> Response {
    if let Some(r) = app_auth(&f, &h) {
        return r;
    }
    let Ok(c) = serde_json::from_slice::<CreateSubscription>(&body) else {
        return unprocessable(
            "callback_url, verification_token, event_type and data_type are required",
        );
    };
    if let Some(r) = check_types(&c.event_type, &c.data_type) {
        return r;
    }
    if !handshake(&f, &c.callback_url, &c.verification_token).await {
        return detail(StatusCode::BAD_REQUEST, "callback verification failed");
    }
    let s = Subscription {
        id: uuid::Uuid::new_v4().to_string(),
        callback_url: c.callback_url,
        event_type: c.event_type,
        data_type: c.data_type,
        expiration_time: Utc::now() + Duration::days(SUBSCRIPTION_DAYS),
        verification_token: c.verification_token,
    };
    f.with(|o| {
        o.stats.subscriptions_created += 1;
        o.subscriptions.insert(s.id.clone(), s.clone());
    });
    (StatusCode::CREATED, Json(s)).into_response()
}

/// Oura answers 403 for a subscription id that does not exist.
fn unknown_subscription() -> Response {
    detail(StatusCode::FORBIDDEN, "subscription not found")
}

async fn get_subscription(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = app_auth(&f, &h) {
        return r;
    }
    match f.with(|o| o.subscriptions.get(&id).cloned()) {
        Some(s) => Json(s).into_response(),
        None => unknown_subscription(),
    }
}

async fn update_subscription(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(r) = app_auth(&f, &h) {
        return r;
    }
    let Ok(u) = serde_json::from_slice::<UpdateSubscription>(&body) else {
        return unprocessable("verification_token is required");
    };
    let Some(mut s) = f.with(|o| o.subscriptions.get(&id).cloned()) else {
        return unknown_subscription();
    };
    if let Some(c) = u.callback_url {
        s.callback_url = c;
    }
    if let Some(e) = u.event_type {
        s.event_type = e;
    }
    if let Some(d) = u.data_type {
        s.data_type = d;
    }
    if let Some(r) = check_types(&s.event_type, &s.data_type) {
        return r;
    }
    if !handshake(&f, &s.callback_url, &u.verification_token).await {
        return detail(StatusCode::BAD_REQUEST, "callback verification failed");
    }
    s.verification_token = u.verification_token;
    let updated = f.with(|o| {
        let slot = o.subscriptions.get_mut(&id)?;
        *slot = s.clone();
        o.stats.subscriptions_updated += 1;
        Some(s)
    });
    match updated {
        Some(s) => Json(s).into_response(),
        None => unknown_subscription(),
    }
}

async fn delete_subscription(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = app_auth(&f, &h) {
        return r;
    }
    let removed = f.with(|o| {
        let r = o.subscriptions.remove(&id).is_some();
        if r {
            o.stats.subscriptions_deleted += 1;
        }
        r
    });
    if removed {
        StatusCode::NO_CONTENT.into_response()
    } else {
        unknown_subscription()
    }
}

async fn renew_subscription(
    State(f): State<FakeOura>,
    h: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = app_auth(&f, &h) {
        return r;
    }
    let renewed = f.with(|o| {
        let s = o.subscriptions.get_mut(&id)?;
        s.expiration_time = Utc::now() + Duration::days(SUBSCRIPTION_DAYS);
        o.stats.subscriptions_renewed += 1;
        Some(s.clone())
    });
    match renewed {
        Some(s) => Json(s).into_response(),
        None => unknown_subscription(),
    }
}

async fn control_add_user(State(f): State<FakeOura>) -> Json<Value> {
    Json(json!({"user_id": f.add_user()}))
}

#[derive(Deserialize)]
struct History {
    user_id: String,
    days: u32,
}

async fn control_history(State(f): State<FakeOura>, Json(h): Json<History>) -> Json<Value> {
    Json(json!({"documents": f.seed_history(&h.user_id, h.days.min(3660))}))
}

#[derive(Deserialize)]
struct NewDocument {
    user_id: String,
    data_type: String,
    #[serde(default)]
    fields: Value,
}

async fn control_add_document(State(f): State<FakeOura>, Json(n): Json<NewDocument>) -> Response {
    match f.add_document(&n.user_id, &n.data_type, n.fields) {
        Some(id) => Json(json!({"id": id})).into_response(),
        None => error(StatusCode::NOT_FOUND, "unknown data_type"),
    }
}

#[derive(Deserialize)]
struct DocumentChange {
    data_type: String,
    id: String,
    #[serde(default)]
    fields: Value,
}

async fn control_update_document(
    State(f): State<FakeOura>,
    Json(c): Json<DocumentChange>,
) -> StatusCode {
    if f.update_document(&c.data_type, &c.id, c.fields) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn control_delete_document(
    State(f): State<FakeOura>,
    Json(c): Json<DocumentChange>,
) -> StatusCode {
    if f.delete_document(&c.data_type, &c.id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn control_fail(State(f): State<FakeOura>, Json(x): Json<Failure>) -> StatusCode {
    f.fail(x);
    StatusCode::NO_CONTENT
}

async fn control_stats(State(f): State<FakeOura>) -> Json<OuraStats> {
    Json(f.stats())
}

#[derive(Deserialize)]
struct Target {
    url: Option<String>,
}

async fn control_webhook(State(f): State<FakeOura>, Json(t): Json<Target>) -> StatusCode {
    f.set_webhook_target(t.url);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Notify {
    user_id: String,
    data_type: String,
    object_id: String,
    #[serde(default = "update")]
    event_type: String,
}

fn update() -> String {
    "update".into()
}

async fn control_notify(State(f): State<FakeOura>, Json(n): Json<Notify>) -> Json<Value> {
    let sent = f
        .notify(&n.user_id, &n.data_type, &n.object_id, &n.event_type)
        .await;
    let sent: Vec<Value> = sent
        .into_iter()
        .map(|(url, r)| match r {
            Ok(status) => json!({"url": url, "status": status}),
            Err(e) => json!({"url": url, "error": e}),
        })
        .collect();
    Json(json!({ "deliveries": sent }))
}

#[derive(Deserialize)]
struct Expiry {
    #[serde(default)]
    id: Option<String>,
    /// From now; negative for already expired.
    seconds: i64,
}

async fn control_subscription_expiry(
    State(f): State<FakeOura>,
    Json(e): Json<Expiry>,
) -> StatusCode {
    let at = Utc::now() + Duration::seconds(e.seconds.clamp(-1_000_000_000, 1_000_000_000));
    if f.set_subscription_expiry(e.id.as_deref(), at) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use auren_core::vendors::oura::data::page_samples;

    const ID: &str = "oura-client";
    const SECRET: &str = "oura-secret";

    async fn start() -> (FakeOura, String) {
        let fake = FakeOura::new(ID, SECRET);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = fake.router();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (fake, url)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    /// Consent and code exchange; returns the token answer.
    async fn connect(url: &str, scope: &str) -> Value {
        let c = client();
        let r = c
            .get(format!("{url}/oauth/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", ID),
                ("redirect_uri", "http://app.test/cb"),
                ("scope", scope),
                ("state", "st"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 302);
        let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
        let q: HashMap<_, _> = back.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "st");
        let r = c
            .post(format!("{url}/oauth/token"))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", q["code"].as_str()),
                ("redirect_uri", "http://app.test/cb"),
                ("client_id", ID),
                ("client_secret", SECRET),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn refresh(url: &str, token: &str) -> reqwest::Response {
        client()
            .post(format!("{url}/oauth/token"))
            .basic_auth(ID, Some(SECRET))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn codes_are_single_use_and_refresh_tokens_rotate() {
        let (fake, url) = start().await;
        let user = fake.add_user();
        let t = connect(&url, "personal daily").await;
        assert_eq!(t["expires_in"], 86_400);
        let info: Value = client()
            .get(format!("{url}/v2/usercollection/personal_info"))
            .bearer_auth(t["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["id"], json!(user));

        let first = t["refresh_token"].as_str().unwrap();
        let r = refresh(&url, first).await;
        assert_eq!(r.status(), 200);
        let second: Value = r.json().await.unwrap();
        assert_ne!(second["refresh_token"], t["refresh_token"]);
        assert_eq!(second["scope"], "personal daily");
        // The spent token is refused; the new one works once.
        assert_eq!(refresh(&url, first).await.status(), 400);
        let next = second["refresh_token"].as_str().unwrap();
        assert_eq!(refresh(&url, next).await.status(), 200);
        let s = fake.stats();
        assert_eq!(
            (s.code_exchanges, s.refreshes, s.refreshes_refused),
            (1, 2, 1)
        );
        let wrong = client()
            .post(format!("{url}/oauth/token"))
            .basic_auth(ID, Some("nope"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
    }

    #[tokio::test]
    async fn collections_page_documents_and_heart_rate() {
        let (fake, url) = start().await;
        let user = fake.add_user();
        let token = connect(&url, "daily heartrate").await["access_token"]
            .as_str()
            .unwrap()
            .to_string();
        fake.seed_history(&user, 10);
        fake.set_page_size(3);
        let get = |path: String| {
            let token = token.clone();
            async move { client().get(path).bearer_auth(token).send().await.unwrap() }
        };
        let today = Utc::now().date_naive();
        let start = (today - Duration::days(30)).to_string();
        let mut next: Option<String> = None;
        let mut ids = Vec::new();
        let mut hrv = 0;
        loop {
            let mut u =
                format!("{url}/v2/usercollection/sleep?start_date={start}&end_date={today}");
            if let Some(t) = &next {
                u.push_str(&format!("&next_token={t}"));
            }
            let r = get(u).await;
            assert_eq!(r.status(), 200);
            let body = r.bytes().await.unwrap();
            let page: Value = serde_json::from_slice(&body).unwrap();
            assert!(page["data"].as_array().unwrap().len() <= 3);
            ids.extend(
                page["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["id"].clone()),
            );
            let (samples, token) = page_samples("sleep", &body).unwrap();
            hrv += samples
                .iter()
                .filter(|s| s.metric == auren_core::model::Metric::HrvRmssd)
                .count();
            next = token;
            if next.is_none() {
                break;
            }
        }
        // Ten mornings, or nine when this morning's night is not over yet (before 07:00 UTC).
        assert!(ids.len() == 10 || ids.len() == 9, "{}", ids.len());
        assert_eq!(hrv, ids.len());

        // One document by id; someone else's or a made-up one is 404.
        let id = ids[0].as_str().unwrap();
        assert_eq!(
            get(format!("{url}/v2/usercollection/sleep/{id}"))
                .await
                .status(),
            200
        );
        assert_eq!(
            get(format!("{url}/v2/usercollection/sleep/nope"))
                .await
                .status(),
            404
        );

        // Heart rate by date-time, paged; spo2 needs its own scope.
        let from = stamp(Utc::now() - Duration::hours(30));
        let r = get(format!(
            "{url}/v2/usercollection/heartrate?start_datetime={from}"
        ))
        .await;
        let page: Value = r.json().await.unwrap();
        assert_eq!(page["data"].as_array().unwrap().len(), 3);
        assert!(page["next_token"].is_string());
        assert_eq!(
            get(format!("{url}/v2/usercollection/daily_spo2"))
                .await
                .status(),
            403
        );
        assert_eq!(
            get(format!("{url}/v2/usercollection/sleep?next_token=bogus"))
                .await
                .status(),
            400
        );

        // A revision is a new version; an injected 429 carries Retry-After.
        assert!(fake.update_document("sleep", id, json!({"average_hrv": 30})));
        let doc: Value = get(format!("{url}/v2/usercollection/sleep/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(doc["meta"]["version"], 2);
        assert_eq!(doc["average_hrv"], 30);
        fake.fail(Failure {
            path_prefix: "/v2/usercollection".into(),
            status: 429,
            retry_after: Some(7),
            count: 1,
            delay_ms: 0,
        });
        let r = get(format!("{url}/v2/usercollection/sleep/{id}")).await;
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
    }

    /// A receiver that passes Oura's handshake for `tok` and records the deliveries it gets.
    async fn receiver() -> (String, Arc<Mutex<Vec<(HeaderMap, Bytes)>>>) {
        #[derive(Deserialize)]
        struct Hs {
            verification_token: String,
            challenge: String,
        }
        let got: Arc<Mutex<Vec<(HeaderMap, Bytes)>>> = Arc::default();
        let seen = got.clone();
        let app = Router::new().route(
            "/hook",
            get(|Query(q): Query<Hs>| async move {
                if q.verification_token == "tok" {
                    Json(json!({"challenge": q.challenge})).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            })
            .post(move |h: HeaderMap, b: Bytes| async move {
                seen.lock().unwrap().push((h, b));
                StatusCode::OK
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, got)
    }

    #[tokio::test]
    async fn subscriptions_need_app_credentials_and_a_passed_handshake() {
        let (fake, url) = start().await;
        let (hook, got) = receiver().await;
        let subs = format!("{url}/v2/webhook/subscription");
        let app = |r: reqwest::RequestBuilder| {
            r.header("x-client-id", ID)
                .header("x-client-secret", SECRET)
        };
        assert_eq!(client().get(&subs).send().await.unwrap().status(), 401);
        let wrong = client()
            .get(&subs)
            .header("x-client-id", ID)
            .header("x-client-secret", "nope")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 403);

        let body = |token: &str, data_type: &str| {
            json!({"callback_url": hook, "verification_token": token,
                "event_type": "update", "data_type": data_type})
        };
        // The callback does not echo for a token it does not know: no subscription.
        let r = app(client().post(&subs))
            .json(&body("other", "sleep"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert!(fake.subscriptions().is_empty());
        let r = app(client().post(&subs))
            .json(&body("tok", "heartrate"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422);
        let r = app(client().post(&subs))
            .json(&body("tok", "sleep"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let s: Value = r.json().await.unwrap();
        let id = s["id"].as_str().unwrap().to_string();
        assert!(s.get("verification_token").is_none());
        let exp: DateTime<Utc> = s["expiration_time"].as_str().unwrap().parse().unwrap();
        assert!(exp > Utc::now() + Duration::days(89));

        let listed: Value = app(client().get(&subs))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        let one = app(client().get(format!("{subs}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(one.status(), 200);
        let none = app(client().get(format!("{subs}/nope")))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 403);

        // Renewal moves the expiry forward again.
        assert!(fake.set_subscription_expiry(Some(&id), Utc::now() + Duration::days(3)));
        let r = app(client().put(format!("{subs}/renew/{id}")))
            .send()
            .await
            .unwrap();
        let s: Value = r.json().await.unwrap();
        let exp: DateTime<Utc> = s["expiration_time"].as_str().unwrap().parse().unwrap();
        assert!(exp > Utc::now() + Duration::days(89));

        // Update re-runs the handshake.
        let r = app(client().put(format!("{subs}/{id}")))
            .json(&json!({"verification_token": "other"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = app(client().put(format!("{subs}/{id}")))
            .json(&json!({"verification_token": "tok", "event_type": "create"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);

        // A delivery goes to the matching subscription, signed with the client secret.
        let user = fake.add_user();
        let sent = fake.notify(&user, "sleep", "doc-1", "create").await;
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, Ok(200));
        assert!(fake
            .notify(&user, "sleep", "doc-1", "delete")
            .await
            .is_empty());
        let (h, b) = got.lock().unwrap()[0].clone();
        let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok());
        assert!(auren_core::vendors::oura::verify(
            SECRET.as_bytes(),
            header("x-oura-signature"),
            header("x-oura-timestamp"),
            &b,
            Utc::now(),
        )
        .is_ok());
        let d = auren_core::vendors::oura::parse_delivery(&b).unwrap();
        assert_eq!(
            (d.user_id.as_str(), d.object_id.as_str()),
            (user.as_str(), "doc-1")
        );

        // Expired subscriptions get nothing.
        fake.set_subscription_expiry(None, Utc::now() - Duration::seconds(1));
        assert!(fake
            .notify(&user, "sleep", "doc-1", "create")
            .await
            .is_empty());

        let r = app(client().delete(format!("{subs}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let r = app(client().delete(format!("{subs}/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
        let st = fake.stats();
        assert_eq!(
            (
                st.subscriptions_created,
                st.subscriptions_updated,
                st.subscriptions_deleted
            ),
            (1, 1, 1)
        );
        assert_eq!(st.subscriptions_renewed, 1);
        assert_eq!(st.handshakes_failed, 2);
        assert_eq!(st.subscription_auth_refused, 2);
    }
}
