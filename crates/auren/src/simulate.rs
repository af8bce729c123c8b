//! `auren simulate`: back-fills a running service with weeks of synthetic wearable traffic.
//!
//! The mode engine calibrates on 14 days of data before it calls anything an anomaly, so trying it
//! by hand would mean wearing a watch for two weeks. The simulator sends `--days` of plausible data
//! per user as fast as the service allows, with event times in the past (the server judges by event
//! time, not wall clock), and injects known episodes at known places (an illness, an acute stress
//! episode, a sensor artefact) so the modes the server derives can be checked against what was put in.
//!
//! Everything, ids included, comes from one seeded RNG per user: a run can be repeated exactly, and
//! a repeat is answered with duplicates, which exercises deduplication too.

use anyhow::{anyhow, bail, Context};
use chrono::{DateTime, Duration, NaiveDate, SecondsFormat, Utc};
use futures::{stream, StreamExt, TryStreamExt};
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde_json::{json, Value};
use std::sync::Mutex;
use std::time::Duration as StdDuration;

mod vendors;

/// Episodes need a calibrated baseline to stand out from; before this they would be learned as normal.
pub const MIN_DAYS_FOR_EPISODES: u32 = 20;
const CALIBRATION_DAYS: u32 = 14;
const MAX_SAMPLES_PER_PUSH: usize = 200;
/// How long one request is retried on 503 and transport errors, as a vendor keeps retrying a
/// webhook: long enough to ride out a restart, and the in-flight claims a killed instance left
/// (they expire after the log timeout).
const RETRY_BUDGET: StdDuration = StdDuration::from_secs(60);
/// Last intraday sample of a day; a day is only simulated once this is in the past.
const DAY_END_HOUR: u32 = 22;

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 5)]
    pub users: u32,
    /// Simulated days per user, ending today.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Base URL of the running service.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Admin token, used to issue one API key per simulated user. Default: read from the dev secrets file.
    #[arg(long, env = crate::settings::env::ADMIN_TOKEN, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// JSON file with oura_client_secret, whoop_client_secret, admin_token (written by `auren serve` in dev mode).
    #[arg(
        long,
        default_value = "./data/dev-secrets.json",
        env = "AUREN_DEV_SECRETS"
    )]
    pub secrets_file: std::path::PathBuf,
    /// WHOOP client secret to sign with. Default: read from the dev secrets file.
    #[arg(long, env = crate::settings::env::WHOOP_CLIENT_SECRET, hide_env_values = true)]
    pub whoop_client_secret: Option<String>,
    /// Oura client secret to sign with. Default: read from the dev secrets file.
    #[arg(long, env = crate::settings::env::OURA_CLIENT_SECRET, hide_env_values = true)]
    pub oura_client_secret: Option<String>,
    /// RNG seed, so a run can be repeated exactly.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Prefix of the simulated user ids (sim-user-1, ...).
    #[arg(long, default_value = "sim-user")]
    pub user_prefix: String,
    #[command(flatten)]
    pub telemetry: crate::settings::TelemetrySettings,
}

/// `auren simulate`: HealthKit traffic ([`SimulateArgs`]), or with `--vendors` vendor users
/// driven through the service's connections ([`VendorModeArgs`]).
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateCommand {
    #[command(flatten)]
    pub args: SimulateArgs,
    #[command(flatten)]
    pub vendor_mode: VendorModeArgs,
}

/// The vendor mode of `auren simulate`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VendorModeArgs {
    /// Drive vendor users instead of sending HealthKit traffic, against `auren dev fake-vendors`
    /// at this URL (the service's WHOOP_API_BASE_URL, OURA_API_BASE_URL and OURA_AUTHORIZE_URL
    /// point at it): each user gets a WHOOP and an Oura account on the fakes with --days of
    /// history, is connected through the service's /connect redirect flow (with the admin
    /// token) and backfilled, then has a bad night that the fakes notify.
    #[arg(long, value_name = "FAKE_URL")]
    pub vendors: Option<String>,
    /// With --vendors: how long to wait for the backfills.
    #[arg(long, default_value_t = 300, requires = "vendors")]
    pub vendor_wait_seconds: u64,
}

/// Runs the mode `c` asks for.
pub async fn run_command(c: SimulateCommand) -> anyhow::Result<()> {
    match c.vendor_mode.vendors {
        Some(_) => {
            let (base, secrets) = precheck(&c.args).await?;
            vendors::run(&c.args, &c.vendor_mode, base, secrets.admin_token).await
        }
        None => run(c.args).await,
    }
}

/// A user's personal normal; episodes are defined relative to it, so they can be checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub hrv_sdnn: f64,
    pub resting_hr: f64,
    pub body_temp: f64,
    pub resp_rate: f64,
}

/// One HealthKit sample as our iOS app sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub kind: &'static str,
    pub value: f64,
    pub unit: Option<&'static str>,
    pub at: DateTime<Utc>,
    pub source: &'static str,
    pub end: Option<DateTime<Utc>>,
}

impl Sample {
    fn new(kind: &'static str, value: f64, unit: &'static str, at: DateTime<Utc>) -> Sample {
        let source = if kind == "stepCount" {
            "iPhone"
        } else {
            "Apple Watch"
        };
        let (unit, end) = (Some(unit), None);
        Sample {
            kind,
            value,
            unit,
            at,
            source,
            end,
        }
    }

    fn json(&self) -> Value {
        // Whole numbers go out as integers, as HealthKit writes them: sleep stages must be integers.
        let value = if self.value.fract() == 0.0 {
            json!(self.value as i64)
        } else {
            json!(self.value)
        };
        let mut v = json!({"type": self.kind, "value": value});
        if let Some(u) = self.unit {
            v["unit"] = json!(u);
        }
        v["timestamp"] = json!(rfc3339(self.at));
        v["source"] = json!(self.source);
        if let Some(end) = self.end {
            v["end_timestamp"] = json!(rfc3339(end));
        }
        v
    }
}

/// Where the episodes fall, as 0-based day indices; all after calibration, none overlapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episodes {
    pub artefact_day: u32,
    pub illness_first_night: u32,
    pub stress_day: u32,
}

impl Episodes {
    pub fn for_days(days: u32) -> Option<Episodes> {
        if days < MIN_DAYS_FOR_EPISODES {
            return None;
        }
        let artefact_day = (days / 2).max(CALIBRATION_DAYS);
        Some(Episodes {
            artefact_day,
            illness_first_night: (days * 3 / 4).max(artefact_day + 1),
            stress_day: days - 1,
        })
    }
}

/// One request of a user's plan. Signatures are made at send time: vendors bound their age.
#[derive(Debug, Clone, PartialEq)]
pub enum Planned {
    /// A push body and how many samples it holds.
    HealthKit(String, usize),
    Whoop(String),
    Oura(String),
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Standard normal by Box-Muller: rand 0.9 ships no Normal without the rand_distr crate.
fn gauss(rng: &mut StdRng) -> f64 {
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn round(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// The latest UTC day whose whole schedule is already in the past, so no event is in the future.
pub fn last_full_day(now: DateTime<Utc>) -> NaiveDate {
    (now - Duration::hours(DAY_END_HOUR as i64) - Duration::minutes(1)).date_naive()
}

/// A user's samples, one vector per simulated day, each in strictly increasing time.
pub fn generate(rng: &mut StdRng, days: u32, last_day: NaiveDate) -> (Baseline, Vec<Vec<Sample>>) {
    let b = Baseline {
        hrv_sdnn: round(rng.random_range(35.0..70.0), 1),
        resting_hr: round(rng.random_range(50.0..68.0), 1),
        body_temp: round(36.6 + 0.1 * gauss(rng), 2),
        resp_rate: round(rng.random_range(13.0..16.5), 1),
    };
    let episodes = Episodes::for_days(days);
    let hr = |v, at| Sample::new("heartRate", v, "count/min", at);
    // Steps go one second before the heart rate they qualify: the server then knows whether the
    // user was moving when that heart rate arrives, and per-user times stay strictly increasing.
    let steps =
        |v, at: DateTime<Utc>| Sample::new("stepCount", v, "count", at - Duration::seconds(1));
    let mut out = Vec::with_capacity(days as usize);
    for d in 0..days {
        let date = last_day - Duration::days((days - 1 - d) as i64);
        let at = |h: u32, m: u32, s: u32| date.and_hms_opt(h, m, s).expect("valid time").and_utc();
        let ill = episodes
            .is_some_and(|e| (e.illness_first_night..e.illness_first_night + 3).contains(&d));
        let (hr_up, temp_up, hrv_factor) = if ill {
            (8.0, 0.9, 0.75)
        } else {
            (0.0, 0.0, 1.0)
        };
        let deep = at(2, 0, 0);
        let mut s = vec![Sample {
            end: Some(deep + Duration::minutes(rng.random_range(55..95))),
            unit: None,
            ..Sample::new("sleepAnalysis", 4.0, "", deep)
        }];
        let hrv = b.hrv_sdnn * hrv_factor * (0.08 * gauss(rng)).exp();
        let rhr = b.resting_hr + hr_up + 2.0 * gauss(rng);
        let temp = b.body_temp + temp_up + 0.15 * gauss(rng);
        let resp = b.resp_rate + 0.5 * gauss(rng);
        let night = [
            ("heartRateVariabilitySDNN", "ms", round(hrv, 1)),
            ("restingHeartRate", "count/min", round(rhr, 0)),
            ("bodyTemperature", "degC", round(temp, 2)),
            ("respiratoryRate", "count/min", round(resp, 1)),
        ];
        for (minute, (kind, unit, v)) in (0..).zip(night) {
            s.push(Sample::new(kind, v, unit, at(6, minute, 0)));
        }
        let stress = episodes.is_some_and(|e| e.stress_day == d);
        let artefact = episodes.is_some_and(|e| e.artefact_day == d);
        for slot in 0..=(DAY_END_HOUR - 8) * 2 {
            let t = at(8 + slot / 2, 30 * (slot % 2), 0);
            if stress && t == at(15, 0, 0) {
                // Heart rate up, no movement: the signature of acute stress, not exercise.
                for m in 0..20 {
                    let tm = t + Duration::minutes(m);
                    s.push(steps(0.0, tm));
                    s.push(hr(rng.random_range(105..=120) as f64, tm));
                    if m == 10 {
                        let low = round(b.hrv_sdnn * 0.55, 1);
                        let at = tm + Duration::seconds(30);
                        s.push(Sample::new("heartRateVariabilitySDNN", low, "ms", at));
                    }
                }
                continue;
            }
            let rest = artefact && t == at(11, 0, 0);
            let n = rng.random_range(0..=1500);
            s.push(steps(if rest { 0.0 } else { n as f64 }, t));
            s.push(hr(round(b.resting_hr + 10.0 + 5.0 * gauss(rng), 0), t));
            if rest {
                // Plausible to ingest (20..250) yet impossible a minute after a resting reading.
                s.push(hr(220.0, t + Duration::minutes(1)));
            }
        }
        out.push(s);
    }
    (b, out)
}

/// 16 RNG bytes shaped as a v4 UUID: reruns with the same seed reuse the same vendor ids.
fn uuid(rng: &mut StdRng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Everything one user sends, in the order it must arrive. `number` is the 1-based user number; it
/// is also the WHOOP user id, since WHOOP ids are integers.
pub fn plan_user(
    seed: u64,
    number: u32,
    user_id: &str,
    days: u32,
    last_day: NaiveDate,
) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(number as u64 - 1));
    let (_, per_day) = generate(&mut rng, days, last_day);
    let mut plan = Vec::new();
    for (d, samples) in per_day.iter().enumerate() {
        for chunk in samples.chunks(MAX_SAMPLES_PER_PUSH) {
            let samples: Vec<Value> = chunk.iter().map(Sample::json).collect();
            let body = json!({"user_id": user_id, "samples": samples}).to_string();
            plan.push(Planned::HealthKit(body, chunk.len()));
        }
        let date = last_day - Duration::days((days as usize - 1 - d) as i64);
        let (id, trace) = (uuid(&mut rng), uuid(&mut rng));
        let whoop =
            json!({"user_id": number, "id": id, "type": "recovery.updated", "trace_id": trace});
        plan.push(Planned::Whoop(whoop.to_string()));
        let event_time = rfc3339(date.and_hms_opt(7, 0, 0).expect("valid time").and_utc());
        let oura = json!({"event_type": "update", "data_type": "daily_readiness",
            "object_id": uuid(&mut rng), "event_time": event_time, "user_id": user_id});
        plan.push(Planned::Oura(oura.to_string()));
    }
    plan
}

/// WHOOP: standard base64 HMAC over timestamp (ms) + raw body.
pub fn whoop_headers(secret: &str, ts_millis: &str, body: &str) -> Vec<(&'static str, String)> {
    auren_core::vendors::whoop::signed_headers(secret.as_bytes(), ts_millis, body.as_bytes())
        .to_vec()
}

/// Oura: upper-case hex HMAC over timestamp (s) + raw body.
pub fn oura_headers(secret: &str, ts_secs: &str, body: &str) -> Vec<(&'static str, String)> {
    auren_core::vendors::oura::signed_headers(secret.as_bytes(), ts_secs, body.as_bytes()).to_vec()
}

#[derive(Debug, Default, serde::Deserialize)]
struct SecretsFile {
    oura_client_secret: Option<String>,
    whoop_client_secret: Option<String>,
    admin_token: Option<String>,
}

#[derive(Debug)]
struct Secrets {
    admin_token: String,
    whoop: Option<String>,
    oura: Option<String>,
}

/// Flags and env win; the dev secrets file fills the gaps, so `serve` in dev mode needs no setup.
fn resolve_secrets(args: &SimulateArgs) -> anyhow::Result<Secrets> {
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let (admin, whoop, oura) = (
        given(&args.admin_token),
        given(&args.whoop_client_secret),
        given(&args.oura_client_secret),
    );
    let path = &args.secrets_file;
    let file = match std::fs::read_to_string(path) {
        _ if admin.is_some() && whoop.is_some() && oura.is_some() => SecretsFile::default(),
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => SecretsFile::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let admin_token = admin.or(given(&file.admin_token)).ok_or_else(|| {
        anyhow!(
            "no admin token: pass --admin-token (or AUREN_ADMIN_TOKEN), or point --secrets-file at \
             the dev-secrets.json that `AUREN_DEV_MODE=1 auren serve` writes (looked in {})",
            path.display()
        )
    })?;
    Ok(Secrets {
        admin_token,
        whoop: whoop.or(given(&file.whoop_client_secret)),
        oura: oura.or(given(&file.oura_client_secret)),
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    requests: u64,
    retries: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    notifications: u64,
    /// Notifications answered `duplicate`: counted apart from samples, which they are not.
    duplicate_notifications: u64,
}

/// How a request proves itself: a bearer token, or a vendor signature made at send time.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer(&'a str),
    Whoop(&'a str),
    Oura(&'a str),
}

impl Auth<'_> {
    fn headers(self, body: &str) -> Vec<(&'static str, String)> {
        match self {
            Auth::Bearer(token) => vec![("authorization", format!("Bearer {token}"))],
            Auth::Whoop(s) => whoop_headers(s, &Utc::now().timestamp_millis().to_string(), body),
            Auth::Oura(s) => oura_headers(s, &Utc::now().timestamp().to_string(), body),
        }
    }
}

fn num(answer: &Value, field: &str) -> u64 {
    answer.get(field).and_then(Value::as_u64).unwrap_or(0)
}

struct Client {
    http: reqwest::Client,
    base: reqwest::Url,
    counts: Mutex<Counts>,
    progress: ProgressBar,
}

impl Client {
    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().expect("counts lock"));
    }

    /// POSTs with retries on 503 and transport errors: ingest is idempotent (deterministic event
    /// ids), so a retried request that had landed after all only comes back as duplicates.
    async fn post(&self, segments: &[&str], body: &str, auth: Auth<'_>) -> anyhow::Result<Value> {
        let mut url = self.base.clone();
        // Segments are pushed, not formatted, so a user id cannot change the path.
        url.path_segments_mut()
            .expect("http URL")
            .pop_if_empty()
            .extend(segments);
        let mut last;
        let started = std::time::Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let req = self
                .http
                .post(url.clone())
                .header("content-type", "application/json");
            let req = auth
                .headers(body)
                .into_iter()
                .fold(req, |r, (k, v)| r.header(k, v));
            let mut wait = None;
            match req.body(body.to_string()).send().await {
                Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                    Ok(bytes) => {
                        self.count(|c| c.requests += 1);
                        self.progress.inc(1);
                        return Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null));
                    }
                    Err(e) => last = e.to_string(),
                },
                Ok(resp) if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    let after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok());
                    wait = after.and_then(|v| v.parse::<u64>().ok());
                    last = "503".into();
                }
                Ok(resp) => {
                    let status = resp.status();
                    let p: Value = resp.json().await.unwrap_or(Value::Null);
                    let field = |k: &str| p[k].as_str().unwrap_or("-").to_string();
                    let (reason, detail) = (field("reason"), field("detail"));
                    bail!("POST {} answered {status}: {reason}: {detail}", url.path());
                }
                Err(e) if e.is_builder() => return Err(e.into()),
                Err(e) => last = e.to_string(),
            }
            if started.elapsed() >= RETRY_BUDGET {
                bail!(
                    "POST {} failed after {attempt} tries in {} s: {last}",
                    url.path(),
                    RETRY_BUDGET.as_secs()
                );
            }
            self.count(|c| c.retries += 1);
            let backoff = StdDuration::from_millis((100u64 << (attempt - 1).min(5)).min(2000));
            tokio::time::sleep(wait.map_or(backoff, |s| StdDuration::from_secs(s.min(5)))).await;
        }
    }

    async fn issue_key(&self, user_id: &str, admin_token: &str) -> anyhow::Result<String> {
        let segments = ["admin", "users", user_id, "keys"];
        let answer = self
            .post(&segments, "{}", Auth::Bearer(admin_token))
            .await?;
        match answer.get("key").and_then(Value::as_str) {
            Some(key) if !key.is_empty() => Ok(key.to_string()),
            _ => bail!("the answer to POST /admin/users/{user_id}/keys holds no key"),
        }
    }

    /// One request at a time: the mode engine reads each user's stream in arrival order.
    async fn send_user(
        &self,
        plan: &[Planned],
        key: String,
        secrets: &Secrets,
    ) -> anyhow::Result<()> {
        for p in plan {
            match (p, &secrets.whoop, &secrets.oura) {
                (Planned::HealthKit(body, _), _, _) => {
                    let a = self
                        .post(&["webhooks", "healthkit"], body, Auth::Bearer(&key))
                        .await?;
                    let rejected = a["rejected"].as_array().map_or(0, Vec::len) as u64;
                    self.count(|c| {
                        c.accepted += num(&a, "accepted");
                        c.duplicates += num(&a, "duplicates");
                        c.rejected += rejected;
                    });
                }
                (Planned::Whoop(body), Some(secret), _) => {
                    let a = self
                        .post(&["webhooks", "whoop"], body, Auth::Whoop(secret))
                        .await?;
                    self.notified(&a);
                }
                (Planned::Oura(body), _, Some(secret)) => {
                    let a = self
                        .post(&["webhooks", "oura"], body, Auth::Oura(secret))
                        .await?;
                    self.notified(&a);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn notified(&self, answer: &Value) {
        let duplicate = answer["status"] == "duplicate";
        self.count(|c| {
            c.notifications += 1;
            c.duplicate_notifications += duplicate as u64;
        });
    }
}

/// A rate for a person: whole units with thousands separators.
fn rate(per_sec: f64) -> String {
    format!("{}/s", HumanCount(per_sec.max(0.0).round() as u64))
}

/// Fails at once, naming the URL, when no service answers there: without this, the first
/// request would ride out the whole retry budget meant for a restart mid-run.
async fn check_service(base: &reqwest::Url) -> anyhow::Result<()> {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("http URL")
        .pop_if_empty()
        .push("health");
    let client = reqwest::Client::builder()
        .timeout(StdDuration::from_secs(5))
        .build()?;
    let shown = base.as_str().trim_end_matches('/');
    match client.get(url).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => bail!(
            "{shown}/health answered {}: is `auren serve` running at {shown}?",
            r.status()
        ),
        Err(e) => bail!(
            "no answer from {shown}/health ({}): is `auren serve` running at {shown}?",
            crate::telemetry::chain(&e)
        ),
    }
}

/// What every mode checks first: the flags, a service answering at `--url`, an admin token.
async fn precheck(args: &SimulateArgs) -> anyhow::Result<(reqwest::Url, Secrets)> {
    if args.users == 0 || args.days == 0 {
        bail!("--users and --days must be at least 1");
    }
    let base = reqwest::Url::parse(&args.url).with_context(|| format!("--url {}", args.url))?;
    if base.scheme() != "http" {
        bail!(
            "--url must be http:// (built without TLS), got {}",
            args.url
        );
    }
    check_service(&base).await?;
    let secrets = resolve_secrets(args)?;
    Ok((base, secrets))
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let (base, secrets) = precheck(&args).await?;
    for (vendor, secret) in [("WHOOP", &secrets.whoop), ("Oura", &secrets.oura)] {
        if secret.is_none() {
            eprintln!("note: no {vendor} client secret known, skipping {vendor} notifications");
        }
    }
    if Episodes::for_days(args.days).is_none() {
        eprintln!("note: no episodes injected below --days {MIN_DAYS_FOR_EPISODES}");
    }
    let last_day = last_full_day(Utc::now());
    let users: Vec<(String, Vec<Planned>)> = (1..=args.users)
        .map(|n| {
            let id = format!("{}-{n}", args.user_prefix);
            let mut plan = plan_user(args.seed, n, &id, args.days, last_day);
            plan.retain(|p| match p {
                Planned::Whoop(_) => secrets.whoop.is_some(),
                Planned::Oura(_) => secrets.oura.is_some(),
                Planned::HealthKit(..) => true,
            });
            (id, plan)
        })
        .collect();
    let total = users.iter().map(|(_, p)| 1 + p.len() as u64).sum();
    let progress = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    // Whole requests per second with thousands separators: indicatif's own `{per_sec}` shows
    // four decimals (`3,657.4649/s`).
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} requests, {rate}, eta {eta}")
        .expect("valid template")
        .with_key(
            "rate",
            |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&rate(state.per_sec()));
            },
        );
    progress.set_style(style);
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(StdDuration::from_secs(30))
            .build()?,
        base,
        counts: Mutex::default(),
        progress,
    };
    let concurrency = args.concurrency.max(1);
    let (client, secrets) = (&client, &secrets);
    let result = async {
        let keys: Vec<String> = stream::iter(&users)
            .map(|(id, _)| client.issue_key(id, &secrets.admin_token))
            .buffered(concurrency)
            .try_collect()
            .await?;
        stream::iter(users.iter().zip(keys))
            .map(|((_, plan), key)| client.send_user(plan, key, secrets))
            .buffer_unordered(concurrency)
            .try_collect::<Vec<()>>()
            .await
    }
    .await;
    match result {
        Ok(_) => client.progress.finish_and_clear(),
        Err(_) => client.progress.abandon(),
    }
    result?;
    let c = *client.counts.lock().expect("counts lock");
    let (url, user, days) = (args.url.trim_end_matches('/'), &users[0].0, args.days);
    println!(
        "users:            {}\n\
         simulated days:   {days} (through {last_day})\n\
         requests sent:    {} ({} retries)\n\
         samples accepted: {} ({} rejected, {} duplicates)\n\
         notifications:    {} ({} duplicates)\n\
         see modes: curl -H \"Authorization: Bearer <admin token>\" {url}/users/{user}/modes",
        args.users,
        c.requests,
        c.retries,
        c.accepted,
        c.rejected,
        c.duplicates,
        c.notifications,
        c.duplicate_notifications
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use auren_core::vendors::{healthkit, oura, whoop};

    fn day0() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 3, 31).unwrap()
    }

    fn series(seed: u64, days: u32) -> (Baseline, Vec<Vec<Sample>>) {
        generate(&mut StdRng::seed_from_u64(seed), days, day0())
    }

    #[test]
    fn rates_are_whole_and_grouped() {
        assert_eq!(rate(3657.4649), "3,657/s");
        assert_eq!(rate(0.4), "0/s");
        assert_eq!(rate(1234567.5), "1,234,568/s");
        assert_eq!(rate(f64::NAN), "0/s");
    }

    #[test]
    fn same_seed_same_traffic_other_seed_other_traffic() {
        assert_eq!(
            plan_user(7, 1, "u", 30, day0()),
            plan_user(7, 1, "u", 30, day0())
        );
        assert_ne!(
            plan_user(7, 1, "u", 30, day0()),
            plan_user(7, 2, "u", 30, day0())
        );
        assert_ne!(series(1, 30), series(2, 30));
    }

    #[test]
    fn times_strictly_increase_per_user_and_stay_in_the_period() {
        for seed in 0..10 {
            let (_, days) = series(seed, 30);
            let all: Vec<&Sample> = days.iter().flatten().collect();
            assert!(all.windows(2).all(|w| w[0].at < w[1].at), "seed {seed}");
            assert_eq!(all.last().unwrap().at.date_naive(), day0());
            assert_eq!(all[0].at.date_naive(), day0() - Duration::days(29));
            assert!(days.iter().all(|d| d.len() <= MAX_SAMPLES_PER_PUSH));
        }
        assert!(
            last_full_day(Utc::now())
                .and_hms_opt(DAY_END_HOUR, 0, 0)
                .unwrap()
                .and_utc()
                < Utc::now()
        );
    }

    fn of<'a>(day: &'a [Sample], kind: &str) -> Vec<&'a Sample> {
        day.iter().filter(|s| s.kind == kind).collect()
    }

    #[test]
    fn stress_episode_on_the_last_day() {
        let (b, days) = series(3, 30);
        let last = days.last().unwrap();
        let at = |h, m, s| day0().and_hms_opt(h, m, s).unwrap().and_utc();
        let window = |s: &&Sample| s.at >= at(14, 59, 0) && s.at < at(15, 20, 0);
        let hr: Vec<_> = of(last, "heartRate").into_iter().filter(window).collect();
        assert_eq!(hr.len(), 20);
        assert!(hr.iter().all(|s| (105.0..=120.0).contains(&s.value)));
        let steps: Vec<_> = of(last, "stepCount").into_iter().filter(window).collect();
        assert_eq!(steps.len(), 20);
        assert!(steps.iter().all(|s| s.value == 0.0));
        let hrv: Vec<_> = of(last, "heartRateVariabilitySDNN")
            .into_iter()
            .filter(window)
            .collect();
        assert_eq!(hrv.len(), 1);
        assert_eq!(hrv[0].at, at(15, 10, 30));
        assert!((hrv[0].value - b.hrv_sdnn * 0.55).abs() < 0.06);
        let (_, short) = series(3, 19);
        let stress_hrv = |s: &Sample| s.at.time() == at(15, 10, 30).time();
        assert!(!short
            .iter()
            .flatten()
            .any(|s| stress_hrv(s) || s.value == 220.0));
    }

    #[test]
    fn illness_nights_and_artefact() {
        let e = Episodes::for_days(30).unwrap();
        assert_eq!(
            e,
            Episodes {
                artefact_day: 15,
                illness_first_night: 22,
                stress_day: 29
            }
        );
        for seed in 0..20 {
            let (b, days) = series(seed, 30);
            // Means over the three nights, so the day-to-day noise cannot hide the shift.
            let ill = |kind| (22..25).map(|d| of(&days[d], kind)[0].value).sum::<f64>() / 3.0;
            assert!(ill("restingHeartRate") > b.resting_hr + 5.0, "seed {seed}");
            assert!(ill("bodyTemperature") > b.body_temp + 0.6, "seed {seed}");
            assert!(
                ill("heartRateVariabilitySDNN") < b.hrv_sdnn * 0.85,
                "seed {seed}"
            );
            let spikes: Vec<(usize, &Sample)> = days
                .iter()
                .enumerate()
                .flat_map(|(d, s)| s.iter().map(move |x| (d, x)))
                .filter(|(_, s)| s.kind == "heartRate" && s.value >= 200.0)
                .collect();
            assert_eq!(spikes.len(), 1, "seed {seed}");
            let (d, spike) = spikes[0];
            assert_eq!((d, spike.value), (15, 220.0));
            let i = days[d].iter().position(|s| s == spike).unwrap();
            let (steps, normal) = (&days[d][i - 2], &days[d][i - 1]);
            assert_eq!((steps.kind, steps.value), ("stepCount", 0.0));
            assert_eq!(normal.kind, "heartRate");
            assert!(normal.value < 120.0);
            assert_eq!(spike.at - normal.at, Duration::minutes(1));
        }
        assert_eq!(
            Episodes::for_days(20).unwrap(),
            Episodes {
                artefact_day: 14,
                illness_first_night: 15,
                stress_day: 19
            }
        );
        assert_eq!(Episodes::for_days(19), None);
    }

    #[test]
    fn plan_bodies_parse_as_the_server_reads_them() {
        let plan = plan_user(7, 2, "sim-user-2", 30, day0());
        assert_eq!(plan.len(), 30 * 3);
        for p in &plan {
            match p {
                Planned::HealthKit(body, samples) => {
                    // As the server reads them the day after the last simulated day.
                    let sent = (day0() + Duration::days(30)).and_time(chrono::NaiveTime::MIN);
                    let limits = auren_core::ingest::IngestLimits::default();
                    let pushes =
                        healthkit::parse(body.as_bytes(), &limits, sent.and_utc()).unwrap();
                    assert_eq!(pushes[0].user_id, "sim-user-2");
                    assert_eq!(
                        pushes[0].parsed.samples.len(),
                        *samples,
                        "{:?}",
                        pushes[0].parsed.rejected
                    );
                }
                Planned::Whoop(body) => {
                    let delivery = whoop::parse_delivery(body.as_bytes()).unwrap();
                    assert_eq!(delivery.user_id, 2);
                }
                Planned::Oura(body) => {
                    let delivery = oura::parse_delivery(body.as_bytes()).unwrap();
                    assert_eq!(delivery.user_id, "sim-user-2");
                }
            }
        }
    }

    #[test]
    fn signatures_match_the_vendor_test_vectors() {
        let body = r#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;
        let h = whoop_headers("whoop_test_client_secret", "1748241241000", body);
        assert_eq!(h[0].1, "x+HHVf+U+8T0RnIs67xehaD4azpuZwkVqpPcVK8IQ3Y=");
        let body = r#"{"event_type":"create","data_type":"sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979","event_time":"2024-01-01T08:00:00+00:00","user_id":"oura-user-123"}"#;
        let h = oura_headers("oura_test_client_secret", "1700000000", body);
        assert_eq!(
            h[0].1,
            "BF8AE2CFE3524DD169B11B9EFA98252BFC788DFA1941D9D9F0A0BC3170B2C935"
        );
        assert_eq!(h[1], ("x-oura-timestamp", "1700000000".to_string()));
    }

    #[test]
    fn signed_plan_notifications_verify_like_the_server() {
        let now = Utc::now();
        for p in plan_user(1, 1, "u", 3, day0()) {
            match p {
                Planned::Whoop(body) => {
                    let h = whoop_headers("ws", &now.timestamp_millis().to_string(), &body);
                    let (sig, ts) = (Some(h[0].1.as_str()), Some(h[1].1.as_str()));
                    assert_eq!(whoop::verify(b"ws", sig, ts, body.as_bytes(), now), Ok(()));
                }
                Planned::Oura(body) => {
                    let h = oura_headers("os", &now.timestamp().to_string(), &body);
                    let (sig, ts) = (Some(h[0].1.as_str()), Some(h[1].1.as_str()));
                    let verified = oura::verify(b"os", sig, ts, body.as_bytes(), now);
                    assert_eq!(verified, Ok(oura::Verified::RawBody));
                }
                Planned::HealthKit(..) => {}
            }
        }
    }

    #[test]
    fn flags_win_over_the_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev-secrets.json");
        std::fs::write(&path, r#"{"oura_client_secret":"o","whoop_client_secret":"w","admin_token":"a","pseudonym_key":"p"}"#).unwrap();
        let mut args = SimulateArgs {
            users: 1,
            days: 1,
            url: "http://127.0.0.1:8000".into(),
            admin_token: Some("flag".into()),
            secrets_file: path,
            whoop_client_secret: None,
            oura_client_secret: None,
            seed: 7,
            concurrency: 1,
            user_prefix: "sim-user".into(),
            telemetry: crate::settings::defaults(),
        };
        let s = resolve_secrets(&args).unwrap();
        assert_eq!(
            (
                s.admin_token.as_str(),
                s.whoop.as_deref(),
                s.oura.as_deref()
            ),
            ("flag", Some("w"), Some("o"))
        );
        args.admin_token = None;
        assert_eq!(resolve_secrets(&args).unwrap().admin_token, "a");
        args.secrets_file = dir.path().join("missing.json");
        let err = resolve_secrets(&args).unwrap_err().to_string();
        assert!(err.contains("no admin token"), "{err}");
    }
}
