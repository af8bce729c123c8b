//! Users' OAuth2 connections to the vendors that only notify (Oura, WHOOP), the worker that
//! fetches what they notify about ([`fetch`]), and the one that backfills a new connection's
//! history and reconciles it on a schedule ([`sync`]).
//!
//! The `state` of an authorize request is the user and vendor sealed with the token key, with
//! a nonce and an expiry: it cannot be forged or read without the key, it binds the callback to
//! the user who started it, and the nonce is recorded when used so a replay is refused on every
//! instance. Tokens are stored sealed ([`crate::crypto`]) and never logged.
//!
//! Both vendors' refresh tokens rotate (WHOOP documents it; Oura's do in practice): the refresh that spends it must store the new pair before
//! anything else uses it, so refreshes of one user are serialised: in-process by a lock, and
//! across instances by a lease on the connection's row (the others wait for the new tokens). A refresh the vendor
//! refuses with 400/401 means the user revoked us: the connection is marked `revoked` and not
//! refreshed again until the user connects anew.

pub mod fetch;
pub mod subscriptions;
pub mod sync;

use crate::crypto::TokenKey;
use crate::settings::{Secrets, VendorSettings};
use crate::store::{ConnectionStore, StoreError, VendorConnection};
use auren_core::model::Vendor;
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every WHOOP scope the fetches need; `offline` is what yields a refresh token at all.
pub const WHOOP_SCOPES: &str =
    "offline read:recovery read:cycles read:sleep read:workout read:profile read:body_measurement";
/// Every Oura scope the fetches need: `personal` for the account id that links notifications to
/// the user, `daily` for sleep, readiness, activity and stress, `spo2Daily` as the OpenAPI
/// spells it. Oura has no `offline` scope: its token answer always carries a refresh token.
pub const OURA_SCOPES: &str = "personal daily heartrate workout session spo2Daily";
/// How long an authorize request may take before its callback is refused.
const STATE_TTL_SECONDS: i64 = 600;
/// Refresh this long before the vendor's `expires_in` runs out.
const REFRESH_AHEAD_SECONDS: i64 = 300;

pub const CONNECTED: &str = "connected";
pub const REVOKED: &str = "revoked";

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("unknown vendor (connectable: oura, whoop)")]
    UnknownVendor,
    #[error("{0} is not configured on this service (its client id is not set)")]
    NotConfigured(&'static str),
    #[error("AUREN_TOKEN_KEY is not set: vendor tokens cannot be stored")]
    NoTokenKey,
    #[error("the state is {0}")]
    BadState(&'static str),
    #[error("the vendor refused: {0}")]
    Refused(String),
    #[error("the vendor is unavailable: {0}")]
    Unavailable(String),
    #[error("the vendor limits our requests")]
    RateLimited(Option<Duration>),
    #[error("the vendor has no such object")]
    NotFound,
    #[error("the user has no connection to this vendor")]
    NotConnected,
    #[error("the connection was revoked at the vendor; the user must connect again")]
    Revoked,
    #[error("the state store failed")]
    Store(#[from] StoreError),
}

impl ConnectError {
    /// Short machine-readable reason, also a bounded metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectError::UnknownVendor => "unknown_vendor",
            ConnectError::NotConfigured(_) => "vendor_not_configured",
            ConnectError::NoTokenKey => "no_token_key",
            ConnectError::BadState(_) => "invalid_state",
            ConnectError::Refused(_) => "vendor_refused",
            ConnectError::Unavailable(_) => "vendor_unavailable",
            ConnectError::RateLimited(_) => "vendor_rate_limited",
            ConnectError::NotFound => "vendor_not_found",
            ConnectError::NotConnected => "not_connected",
            ConnectError::Revoked => "connection_revoked",
            ConnectError::Store(_) => "store_unavailable",
        }
    }
}

/// The vendor named in a path.
pub fn vendor_of(name: &str) -> Result<Vendor, ConnectError> {
    match name {
        "whoop" => Ok(Vendor::Whoop),
        "oura" => Ok(Vendor::Oura),
        _ => Err(ConnectError::UnknownVendor),
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    /// Vendor.
    v: String,
    /// Our user id.
    u: String,
    /// Nonce, recorded once used.
    n: String,
    /// Expiry, Unix seconds.
    e: i64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    expires_in: i64,
    #[serde(default)]
    scope: Option<String>,
}

/// A connection as `GET /users/{id}/connections` shows it: its health, never its tokens.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectionView {
    pub vendor: String,
    pub vendor_user_id: String,
    /// `connected` or `revoked`.
    pub status: String,
    pub scope: String,
    pub connected_at: DateTime<Utc>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub backfill: BackfillView,
    /// When the next reconciliation is due (none: as soon as a worker is free).
    pub next_sync_at: Option<DateTime<Utc>>,
}

/// How far the history fetched at connect time has come.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackfillView {
    /// `pending`, `running` or `done`.
    pub status: String,
    pub from: Option<DateTime<Utc>>,
    /// History up to here is in the log.
    pub done_until: Option<DateTime<Utc>>,
    /// Fraction of the backfill's time span fetched, 0 to 1.
    pub progress: f64,
    /// Readings fetched so far.
    pub events: i64,
}

impl BackfillView {
    fn of(s: &crate::store::SyncState) -> Self {
        let progress = match (
            s.backfill_status.as_str(),
            s.backfill_from,
            s.backfill_done_until,
        ) {
            ("done", _, _) => 1.0,
            (_, Some(from), Some(until)) => {
                let total = (Utc::now() - from).num_seconds().max(1) as f64;
                ((until - from).num_seconds() as f64 / total).clamp(0.0, 1.0)
            }
            _ => 0.0,
        };
        BackfillView {
            status: s.backfill_status.clone(),
            from: s.backfill_from,
            done_until: s.backfill_done_until,
            progress,
            events: s.backfill_events,
        }
    }
}

type RefreshLock = Arc<tokio::sync::Mutex<()>>;

/// Where one vendor's OAuth2 and data endpoints are, and the app's credentials there.
#[derive(Clone)]
struct VendorApi {
    client_id: String,
    client_secret: String,
    authorize: url::Url,
    token: String,
    /// Data paths (`/v2/...`) are joined to this.
    data_base: String,
    scopes: &'static str,
    /// What a refresh request adds to the form (WHOOP wants `scope=offline` again).
    refresh_extra: &'static [(&'static str, &'static str)],
    /// The application's request budget: (window seconds, requests in it).
    budget: Vec<(i64, i64)>,
}

impl VendorApi {
    fn data_url(&self, path: &str) -> String {
        format!("{}{path}", self.data_base)
    }
}

fn trimmed(u: &url::Url) -> String {
    u.as_str().trim_end_matches('/').to_string()
}

/// The vendors whose client id is set, with their endpoints.
fn vendor_apis(
    s: &VendorSettings,
    secrets: &Secrets,
) -> anyhow::Result<HashMap<Vendor, VendorApi>> {
    let mut apis = HashMap::new();
    if let Some(id) = s.whoop_client_id.as_deref().filter(|c| !c.is_empty()) {
        let base = trimmed(&s.whoop_api_base_url);
        apis.insert(
            Vendor::Whoop,
            VendorApi {
                client_id: id.into(),
                client_secret: secrets.whoop_client_secret.clone(),
                authorize: format!("{base}/oauth/oauth2/auth").parse()?,
                token: format!("{base}/oauth/oauth2/token"),
                data_base: format!("{base}/developer"),
                scopes: WHOOP_SCOPES,
                refresh_extra: &[("scope", "offline")],
                budget: vec![
                    (60, i64::from(s.whoop_requests_per_minute)),
                    (86_400, i64::from(s.whoop_requests_per_day)),
                ],
            },
        );
    }
    if let Some(id) = s.oura_client_id.as_deref().filter(|c| !c.is_empty()) {
        let base = trimmed(&s.oura_api_base_url);
        apis.insert(
            Vendor::Oura,
            VendorApi {
                client_id: id.into(),
                client_secret: secrets.oura_client_secret.clone(),
                authorize: s.oura_authorize_url.clone(),
                token: format!("{base}/oauth/token"),
                data_base: base,
                scopes: OURA_SCOPES,
                refresh_extra: &[],
                budget: vec![(300, i64::from(s.oura_requests_per_5_minutes))],
            },
        );
    }
    Ok(apis)
}

/// Whether `access` must be replaced: it expires soon, or it is the token the vendor just
/// refused (a token that failed but is no longer the stored one was replaced by another refresh
/// meanwhile: the stored one is used).
fn needs_refresh(c: &VendorConnection, access: &str, failed: Option<&str>) -> bool {
    c.expires_at <= Utc::now() + ChronoDuration::seconds(REFRESH_AHEAD_SECONDS)
        || failed == Some(access)
}

/// The connections service: authorize, callback, disconnect, tokens for the fetches.
pub struct Connections {
    settings: VendorSettings,
    public_url: url::Url,
    apis: HashMap<Vendor, VendorApi>,
    key: Option<TokenKey>,
    store: Arc<dyn ConnectionStore>,
    http: reqwest::Client,
    /// One lock per (vendor, user): a rotating refresh token is spent by exactly one refresh.
    refresh_locks: Mutex<HashMap<(Vendor, String), RefreshLock>>,
    /// This instance, as the holder of refresh leases in the store.
    owner: String,
}

impl Connections {
    pub fn new(
        settings: &VendorSettings,
        http_addr: SocketAddr,
        secrets: &Secrets,
        store: Arc<dyn ConnectionStore>,
    ) -> anyhow::Result<Self> {
        let public_url = match &settings.public_url {
            Some(u) => u.clone(),
            None => format!("http://localhost:{}", http_addr.port()).parse()?,
        };
        let key = secrets
            .token_key
            .as_deref()
            .map(TokenKey::parse)
            .transpose()?;
        let apis = vendor_apis(settings, secrets)?;
        if key.is_none() && !apis.is_empty() {
            anyhow::bail!(
                "refusing to start: a vendor client id (OURA_CLIENT_ID or WHOOP_CLIENT_ID) is set \
                 but AUREN_TOKEN_KEY is not, so users' vendor tokens could not be stored \
                 encrypted. Set AUREN_TOKEN_KEY (32 random bytes, base64; `openssl rand -base64 \
                 32`), or unset the client ids."
            );
        }
        Ok(Self {
            settings: settings.clone(),
            public_url,
            apis,
            key,
            store,
            http: reqwest::Client::builder()
                // rustls: TLS 1.3 preferred, 1.2 the floor.
                .min_tls_version(reqwest::tls::Version::TLS_1_2)
                .timeout(Duration::from_millis(settings.vendor_timeout_ms))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            refresh_locks: Mutex::new(HashMap::new()),
            owner: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
        })
    }

    pub fn store(&self) -> &Arc<dyn ConnectionStore> {
        &self.store
    }

    fn key(&self) -> Result<&TokenKey, ConnectError> {
        self.key.as_ref().ok_or(ConnectError::NoTokenKey)
    }

    /// The vendor's endpoints; a vendor without a client id is not connectable.
    fn api(&self, vendor: Vendor) -> Result<&VendorApi, ConnectError> {
        match vendor {
            Vendor::Whoop | Vendor::Oura => self
                .apis
                .get(&vendor)
                .ok_or(ConnectError::NotConfigured(vendor.as_str())),
            _ => Err(ConnectError::UnknownVendor),
        }
    }

    /// The vendors this service can connect, for the workers.
    pub fn configured(&self) -> impl Iterator<Item = Vendor> + '_ {
        self.apis.keys().copied()
    }

    /// Settings the workers read (backfill length, reconciliation period ...).
    pub fn settings(&self) -> &VendorSettings {
        &self.settings
    }

    fn redirect_uri(&self, vendor: Vendor) -> String {
        let base = self.public_url.as_str().trim_end_matches('/');
        format!("{base}/connect/{vendor}/callback")
    }

    /// Where to send the user's browser to grant us access.
    pub fn authorize_url(&self, vendor: Vendor, user_id: &str) -> Result<url::Url, ConnectError> {
        let api = self.api(vendor)?;
        let state = State {
            v: vendor.as_str().into(),
            u: user_id.into(),
            n: uuid::Uuid::new_v4().simple().to_string(),
            e: (Utc::now() + ChronoDuration::seconds(STATE_TTL_SECONDS)).timestamp(),
        };
        let sealed = self
            .key()?
            .seal(&serde_json::to_vec(&state).map_err(|_| ConnectError::BadState("unwritable"))?);
        let mut url = api.authorize.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &api.client_id)
            .append_pair("redirect_uri", &self.redirect_uri(vendor))
            .append_pair("scope", api.scopes)
            .append_pair("state", &sealed);
        Ok(url)
    }

    /// Completes a connection: checks the state, exchanges the code, links the vendor account.
    /// Returns our user id.
    pub async fn callback(
        &self,
        vendor: Vendor,
        code: &str,
        state: &str,
    ) -> Result<String, ConnectError> {
        let api = self.api(vendor)?;
        let plain = self
            .key()?
            .open(state)
            .map_err(|_| ConnectError::BadState("forged or damaged"))?;
        let st: State = serde_json::from_slice(&plain)
            .map_err(|_| ConnectError::BadState("forged or damaged"))?;
        if st.v != vendor.as_str() {
            return Err(ConnectError::BadState("for another vendor"));
        }
        let expires = DateTime::from_timestamp(st.e, 0).unwrap_or_default();
        if expires < Utc::now() {
            return Err(ConnectError::BadState("expired"));
        }
        if !self.store.consume_oauth_state(&st.n, expires).await? {
            return Err(ConnectError::BadState("already used"));
        }
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri(vendor)),
            ("client_id", &api.client_id),
            ("client_secret", &api.client_secret),
        ];
        let tokens = self.token_request(api, &form).await?;
        let vendor_user_id = self.vendor_user_id(vendor, &tokens.access_token).await?;
        let key = self.key()?;
        let now = Utc::now();
        self.store
            .upsert_connection(&VendorConnection {
                sync: Default::default(),
                vendor: vendor.as_str().into(),
                user_id: st.u.clone(),
                vendor_user_id,
                access_sealed: key.seal(tokens.access_token.as_bytes()),
                refresh_sealed: tokens
                    .refresh_token
                    .as_deref()
                    .map(|r| key.seal(r.as_bytes())),
                expires_at: now + ChronoDuration::seconds(tokens.expires_in),
                scope: tokens.scope.unwrap_or_default(),
                status: CONNECTED.into(),
                last_sync_at: None,
                last_error: None,
                created_at: now,
            })
            .await?;
        metrics::counter!("auren_vendor_connections_total", "vendor" => vendor.as_str(), "outcome" => "connected").increment(1);
        Ok(st.u)
    }

    /// The vendor's id for the account the token belongs to: what its notifications name.
    async fn vendor_user_id(&self, vendor: Vendor, token: &str) -> Result<String, ConnectError> {
        fn unreadable<E>(_: E) -> ConnectError {
            ConnectError::Unavailable("unreadable profile".into())
        }
        match vendor {
            Vendor::Whoop => {
                let body = self
                    .get_with(vendor, token, "/v2/user/profile/basic")
                    .await?;
                let p: auren_core::vendors::whoop::data::Profile =
                    auren_core::vendors::whoop::data::parse(&body).map_err(unreadable)?;
                Ok(p.user_id.to_string())
            }
            _ => {
                let body = self
                    .get_with(vendor, token, "/v2/usercollection/personal_info")
                    .await?;
                #[derive(Deserialize)]
                struct PersonalInfo {
                    id: String,
                }
                let p: PersonalInfo = serde_json::from_slice(&body).map_err(unreadable)?;
                Ok(p.id)
            }
        }
    }

    /// Revokes our access at the vendor and forgets the tokens. WHOOP documents
    /// `DELETE /v2/user/access`; Oura's API reference documents no revocation, and its OAuth
    /// server answers `GET /oauth/revoke?access_token=` (as Oura client libraries call it).
    /// The tokens are deleted even when the vendor cannot be reached: the user asked us to stop.
    pub async fn disconnect(&self, vendor: Vendor, user_id: &str) -> Result<(), ConnectError> {
        let api = self.api(vendor)?;
        if self
            .store
            .connection(vendor.as_str(), user_id)
            .await?
            .is_none()
        {
            return Err(ConnectError::NotConnected);
        }
        let revoked = match self.access_token(vendor, user_id, None).await {
            Ok(t) => {
                let req = match vendor {
                    Vendor::Whoop => self
                        .http
                        .delete(api.data_url("/v2/user/access"))
                        .bearer_auth(t),
                    _ => self
                        .http
                        .get(api.data_url("/oauth/revoke"))
                        .query(&[("access_token", t)]),
                };
                self.send(req).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = &revoked {
            tracing::warn!(vendor = %vendor, reason = e.reason(), "could not revoke at the vendor; deleting the tokens anyway");
        }
        self.store
            .delete_connection(vendor.as_str(), user_id)
            .await?;
        metrics::counter!("auren_vendor_connections_total", "vendor" => vendor.as_str(), "outcome" => "disconnected").increment(1);
        Ok(())
    }

    pub async fn list(&self, user_id: &str) -> Result<Vec<ConnectionView>, ConnectError> {
        Ok(self
            .store
            .connections_of(user_id)
            .await?
            .into_iter()
            .map(|c| ConnectionView {
                vendor: c.vendor,
                vendor_user_id: c.vendor_user_id,
                status: c.status,
                scope: c.scope,
                connected_at: c.created_at,
                last_sync_at: c.last_sync_at,
                last_error: c.last_error,
                backfill: BackfillView::of(&c.sync),
                next_sync_at: c.sync.next_sync_at,
            })
            .collect())
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>, ConnectError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ConnectError::Unavailable(crate::delivery::describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            return resp
                .bytes()
                .await
                .map(|b| b.to_vec())
                .map_err(|e| ConnectError::Unavailable(crate::delivery::describe(&e)));
        }
        Err(match status.as_u16() {
            401 | 403 => ConnectError::Refused(format!("HTTP {}", status.as_u16())),
            404 => ConnectError::NotFound,
            429 => ConnectError::RateLimited(
                resp.headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs),
            ),
            400 => ConnectError::Refused("HTTP 400".into()),
            s => ConnectError::Unavailable(format!("HTTP {s}")),
        })
    }

    /// Takes one request from every window of the vendor's application budget (shared by all
    /// instances through the store), or says how long until the full window ends. The vendor
    /// would answer 429 anyway; asking first keeps one busy instance from spending the others'
    /// share and keeps us from being throttled harder.
    async fn take_budget(&self, vendor: Vendor, api: &VendorApi) -> Result<(), ConnectError> {
        let now = Utc::now();
        for &(span, limit) in &api.budget {
            let start = now.timestamp() - now.timestamp().rem_euclid(span);
            let window = DateTime::from_timestamp(start, 0).unwrap_or(now);
            if !self
                .store
                .take_rate(vendor.as_str(), span, window, limit)
                .await?
            {
                metrics::counter!("auren_vendor_budget_exhausted_total", "vendor" => vendor.as_str()).increment(1);
                let wait = (start + span - now.timestamp()).max(1) as u64;
                return Err(ConnectError::RateLimited(Some(Duration::from_secs(wait))));
            }
        }
        Ok(())
    }

    async fn token_request(
        &self,
        api: &VendorApi,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, ConnectError> {
        let body = self.send(self.http.post(&api.token).form(form)).await?;
        serde_json::from_slice(&body)
            .map_err(|_| ConnectError::Unavailable("unreadable token answer".into()))
    }

    async fn get_with(
        &self,
        vendor: Vendor,
        token: &str,
        path: &str,
    ) -> Result<Vec<u8>, ConnectError> {
        let api = self.api(vendor)?;
        self.take_budget(vendor, api).await?;
        self.send(self.http.get(api.data_url(path)).bearer_auth(token))
            .await
    }

    fn lock_for(&self, vendor: Vendor, user_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.refresh_locks.lock().unwrap_or_else(|e| e.into_inner());
        // Locks nobody holds or waits for are only kept while the map is small: one per user
        // ever seen would grow without end.
        if locks.len() >= 1024 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks
            .entry((vendor, user_id.to_string()))
            .or_default()
            .clone()
    }

    /// A usable access token for the user: the stored one, or a fresh one when it expires soon
    /// or when `failed` (the token the vendor just refused) is still the stored one.
    pub async fn access_token(
        &self,
        vendor: Vendor,
        user_id: &str,
        failed: Option<&str>,
    ) -> Result<String, ConnectError> {
        let lock = self.lock_for(vendor, user_id);
        let _held = lock.lock().await;
        let timeout = Duration::from_millis(self.settings.vendor_timeout_ms);
        let deadline = std::time::Instant::now() + timeout + Duration::from_secs(5);
        loop {
            let (c, access) = self.current(vendor, user_id).await?;
            if !needs_refresh(&c, &access, failed) {
                return Ok(access);
            }
            // Across instances: whoever holds the lease refreshes; the others wait for its
            // tokens. The lease outlives one refresh request, so a crashed holder only delays.
            let until = Utc::now()
                + ChronoDuration::from_std(timeout * 2 + Duration::from_secs(5))
                    .unwrap_or_default();
            if self
                .store
                .claim_refresh(vendor.as_str(), user_id, &self.owner, until)
                .await?
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(ConnectError::Unavailable(
                    "another instance is refreshing this user's token".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Tokens stored between the read and the claim are fresh: no refresh then.
        let (c, access) = self.current(vendor, user_id).await?;
        if !needs_refresh(&c, &access, failed) {
            self.store
                .release_refresh(vendor.as_str(), user_id, &self.owner)
                .await?;
            return Ok(access);
        }
        let result = self.refresh(vendor, user_id, &c).await;
        if result.is_err() {
            self.store
                .release_refresh(vendor.as_str(), user_id, &self.owner)
                .await?;
        }
        result
    }

    /// The stored connection and its access token, opened.
    async fn current(
        &self,
        vendor: Vendor,
        user_id: &str,
    ) -> Result<(VendorConnection, String), ConnectError> {
        let c = self
            .store
            .connection(vendor.as_str(), user_id)
            .await?
            .ok_or(ConnectError::NotConnected)?;
        if c.status == REVOKED {
            return Err(ConnectError::Revoked);
        }
        let access = self.open(&c.access_sealed)?;
        Ok((c, access))
    }

    fn open(&self, sealed: &str) -> Result<String, ConnectError> {
        self.key()?
            .open(sealed)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(ConnectError::NoTokenKey)
    }

    /// Spends the refresh token (the caller holds the lease) and stores the new pair before
    /// returning the access token.
    async fn refresh(
        &self,
        vendor: Vendor,
        user_id: &str,
        c: &VendorConnection,
    ) -> Result<String, ConnectError> {
        let key = self.key()?;
        let Some(refresh) = c
            .refresh_sealed
            .as_deref()
            .map(|r| self.open(r))
            .transpose()?
        else {
            self.mark_revoked(
                vendor,
                user_id,
                "no refresh token (the offline scope was not granted)",
            )
            .await?;
            return Err(ConnectError::Revoked);
        };
        let api = self.api(vendor)?;
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", api.client_id.as_str()),
            ("client_secret", api.client_secret.as_str()),
        ];
        form.extend_from_slice(api.refresh_extra);
        match self.token_request(api, &form).await {
            Ok(t) => {
                // Stored before use: the old refresh token is spent at the vendor.
                self.store
                    .store_tokens(
                        vendor.as_str(),
                        user_id,
                        &key.seal(t.access_token.as_bytes()),
                        t.refresh_token
                            .as_deref()
                            .map(|r| key.seal(r.as_bytes()))
                            .as_deref()
                            .or(c.refresh_sealed.as_deref()),
                        Utc::now() + ChronoDuration::seconds(t.expires_in),
                    )
                    .await?;
                metrics::counter!("auren_vendor_token_refreshes_total", "vendor" => vendor.as_str(), "outcome" => "refreshed").increment(1);
                Ok(t.access_token)
            }
            Err(ConnectError::Refused(why)) => {
                metrics::counter!("auren_vendor_token_refreshes_total", "vendor" => vendor.as_str(), "outcome" => "revoked").increment(1);
                self.mark_revoked(vendor, user_id, &format!("refresh refused ({why})"))
                    .await?;
                Err(ConnectError::Revoked)
            }
            Err(e) => Err(e),
        }
    }

    async fn mark_revoked(
        &self,
        vendor: Vendor,
        user_id: &str,
        why: &str,
    ) -> Result<(), ConnectError> {
        self.store
            .set_health(vendor.as_str(), user_id, REVOKED, Some(why), None)
            .await?;
        Ok(())
    }

    /// GETs a vendor data path (`/v2/...`) with the user's token, refreshing once when the
    /// vendor says 401.
    pub async fn vendor_get(
        &self,
        vendor: Vendor,
        user_id: &str,
        path: &str,
    ) -> Result<Vec<u8>, ConnectError> {
        let token = self.access_token(vendor, user_id, None).await?;
        match self.get_with(vendor, &token, path).await {
            Err(ConnectError::Refused(_)) => {
                let token = self.access_token(vendor, user_id, Some(&token)).await?;
                self.get_with(vendor, &token, path).await
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(token_key: Option<String>) -> Secrets {
        Secrets {
            oura_client_secret: "o".into(),
            oura_verification_token: "t".into(),
            whoop_client_secret: "w".into(),
            pseudonym_key: "0123456789abcdef".into(),
            admin_token: None,
            token_key,
        }
    }

    #[test]
    fn a_configured_vendor_without_a_token_key_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ConnectionStore> =
            Arc::new(crate::store::SqliteStore::open(dir.path()).unwrap());
        let mut settings = crate::settings::Settings::defaults().vendors;
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        // No vendor: nothing to store, no key needed.
        assert!(Connections::new(&settings, addr, &secrets(None), store.clone()).is_ok());
        settings.whoop_client_id = Some("client".into());
        let e = Connections::new(&settings, addr, &secrets(None), store.clone())
            .err()
            .expect("refused");
        assert!(e.to_string().contains("AUREN_TOKEN_KEY"), "{e}");
        let key = Some(TokenKey::generate());
        let c = Connections::new(&settings, addr, &secrets(key), store).unwrap();
        assert_eq!(c.configured().collect::<Vec<_>>(), vec![Vendor::Whoop]);
    }
}
