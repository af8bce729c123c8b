//! `auren simulate --vendors FAKE_URL`: drives simulated Oura and WHOOP users through the service's
//! vendor connections, against `auren dev fake-vendors` (the service's `WHOOP_API_BASE_URL`,
//! `OURA_API_BASE_URL` and `OURA_AUTHORIZE_URL` point at it).
//!
//! Per user and per vendor the service can connect: a user on the fake with `--days` of history,
//! connected through the service's redirect flow (`GET /connect/{vendor}` with the admin token,
//! the fake's automatic consent, the service's callback), then the service's backfill awaited.
//! Then each user has a bad night: a low WHOOP recovery and a low Oura readiness and sleep, added
//! on the fakes, which send the service their signed notifications; the service fetches them and
//! the users' modes follow. Nothing here signs: the fakes sign as the vendors do.

use super::{SimulateArgs, VendorModeArgs};
use anyhow::{anyhow, bail, Context};
use chrono::Utc;
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The vendors in the order users are connected to them.
const VENDORS: [&str; 2] = ["whoop", "oura"];

struct Sim {
    http: reqwest::Client,
    api: Url,
    fake: Url,
    admin: String,
}

fn join(base: &Url, path_and_query: &str) -> anyhow::Result<Url> {
    base.join(path_and_query)
        .with_context(|| format!("{base} + {path_and_query}"))
}

impl Sim {
    /// A control request to the fakes; its JSON answer (null when empty).
    async fn control(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(join(&self.fake, path)?)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path} on the fakes"))?;
        let status = r.status();
        let bytes = r.bytes().await?;
        if !status.is_success() {
            bail!(
                "POST {path} on the fakes answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn api_get(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let r = self
            .http
            .get(join(&self.api, path)?)
            .bearer_auth(&self.admin)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = r.status();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Our `/connect/{vendor}` answer for `user`: the authorize URL, or None when the service
    /// has this vendor unconfigured.
    async fn start_connect(&self, vendor: &str, user: &str) -> anyhow::Result<Option<Url>> {
        let mut url = join(&self.api, &format!("connect/{vendor}"))?;
        url.query_pairs_mut().append_pair("user_id", user);
        let r = self.http.get(url).bearer_auth(&self.admin).send().await?;
        let status = r.status();
        if status == StatusCode::FOUND {
            let location = r
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| anyhow!("GET /connect/{vendor}: a 302 without Location"))?;
            return Ok(Some(Url::parse(location)?));
        }
        let p: Value = r.json().await.unwrap_or(Value::Null);
        if status == StatusCode::NOT_FOUND && p["reason"] == "vendor_not_configured" {
            return Ok(None);
        }
        bail!(
            "GET /connect/{vendor} answered {status}: {}: {}",
            p["reason"].as_str().unwrap_or("-"),
            p["detail"].as_str().unwrap_or("-")
        )
    }

    /// The browser's part of connecting: the fake's consent page redirects back to the service's
    /// callback, which exchanges the code.
    async fn finish_connect(&self, vendor: &str, authorize: Url) -> anyhow::Result<()> {
        let consent = self.http.get(authorize).send().await?;
        if consent.status() != StatusCode::FOUND {
            bail!(
                "the fake {vendor} authorize page answered {} (does --vendors point where the \
                 service's {} does?)",
                consent.status(),
                if vendor == "whoop" {
                    "WHOOP_API_BASE_URL"
                } else {
                    "OURA_AUTHORIZE_URL"
                }
            );
        }
        let back = consent
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("the fake's consent: a 302 without Location"))?
            .to_string();
        let r = self.http.get(&back).send().await?;
        if !r.status().is_success() {
            let status = r.status();
            bail!(
                "the callback {back} answered {status}: {}",
                r.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The user's connections (vendor -> backfill status and readings).
    async fn backfills(&self, user: &str) -> anyhow::Result<BTreeMap<String, (String, i64)>> {
        let (status, body) = self.api_get(&format!("users/{user}/connections")).await?;
        if !status.is_success() {
            bail!("GET /users/{user}/connections answered {status}: {body}");
        }
        Ok(body["connections"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["vendor"].as_str().unwrap_or("-").to_string(),
                    (
                        c["backfill"]["status"].as_str().unwrap_or("-").to_string(),
                        c["backfill"]["events"].as_i64().unwrap_or(0),
                    ),
                )
            })
            .collect())
    }

    /// A bad night for `vendor_user` on `vendor`, notified by the fake. The notifications sent
    /// and how many the service answered with a 2xx.
    async fn bad_night(&self, vendor: &str, vendor_user: &Value) -> anyhow::Result<(u64, u64)> {
        let now = Utc::now().to_rfc3339();
        if vendor == "whoop" {
            let r = self
                .control(
                    "_fake/whoop/recoveries",
                    json!({"user_id": vendor_user, "recovery_score": 30,
                        "hrv_rmssd_milli": 31.8, "resting_heart_rate": 64}),
                )
                .await?;
            let a = self
                .control(
                    "_fake/whoop/notify",
                    json!({"user_id": vendor_user, "id": r["sleep_id"],
                        "type": "recovery.updated"}),
                )
                .await?;
            let ok = a["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s));
            return Ok((1, ok as u64));
        }
        let (mut sent, mut ok) = (0, 0);
        for (data_type, fields) in [
            (
                "sleep",
                json!({"average_hrv": 19, "lowest_heart_rate": 71, "bedtime_end": now}),
            ),
            ("daily_readiness", json!({"score": 30, "timestamp": now})),
        ] {
            let d = self
                .control(
                    "_fake/oura/documents",
                    json!({"user_id": vendor_user, "data_type": data_type, "fields": fields}),
                )
                .await?;
            let a = self
                .control(
                    "_fake/oura/notify",
                    json!({"user_id": vendor_user, "data_type": data_type,
                        "object_id": d["id"], "event_type": "create"}),
                )
                .await?;
            for delivery in a["deliveries"].as_array().into_iter().flatten() {
                sent += 1;
                ok += delivery["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s)) as u64;
            }
        }
        Ok((sent, ok))
    }
}

/// Fails at once, naming the URL, when the fakes do not answer there.
async fn check_fakes(http: &reqwest::Client, fake: &Url) -> anyhow::Result<()> {
    let shown = fake.as_str().trim_end_matches('/');
    let url = join(fake, "_fake/whoop/stats")?;
    match http.get(url).timeout(Duration::from_secs(5)).send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => bail!(
            "{shown}/_fake/whoop/stats answered {}: is `auren dev fake-vendors` running at {shown}?",
            r.status()
        ),
        Err(e) => bail!(
            "no answer from {shown}/_fake/whoop/stats ({}): is `auren dev fake-vendors` running at {shown}?",
            crate::telemetry::chain(&e)
        ),
    }
}

pub(super) async fn run(
    args: &SimulateArgs,
    mode: &VendorModeArgs,
    api: Url,
    admin: String,
) -> anyhow::Result<()> {
    let fakes = mode.vendors.as_deref().unwrap_or_default();
    let mut fake = Url::parse(fakes).with_context(|| format!("--vendors {fakes}"))?;
    if !fake.path().ends_with('/') {
        let p = format!("{}/", fake.path());
        fake.set_path(&p);
    }
    let mut api = api;
    if !api.path().ends_with('/') {
        let p = format!("{}/", api.path());
        api.set_path(&p);
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?;
    check_fakes(&http, &fake).await?;
    let sim = Sim {
        http,
        api,
        fake,
        admin,
    };
    let users: Vec<String> = (1..=args.users)
        .map(|n| format!("{}-{n}", args.user_prefix))
        .collect();

    // Which vendors the service connects; the fakes send their notifications to it.
    let mut vendors = Vec::new();
    for v in VENDORS {
        match sim.start_connect(v, &users[0]).await? {
            Some(_) => vendors.push(v),
            None => eprintln!(
                "note: the service has no {v} client id set (WHOOP_CLIENT_ID / OURA_CLIENT_ID), \
                 skipping {v}"
            ),
        }
    }
    if vendors.is_empty() {
        bail!(
            "the service connects neither WHOOP nor Oura: start it with WHOOP_CLIENT_ID=auren-dev \
             WHOOP_API_BASE_URL={fakes} (and OURA_CLIENT_ID=auren-dev OURA_API_BASE_URL={fakes} \
             OURA_AUTHORIZE_URL={fakes}/oauth/authorize)"
        );
    }
    for v in &vendors {
        let target = join(&sim.api, &format!("webhooks/{v}"))?;
        sim.control(&format!("_fake/{v}/webhook"), json!({"url": target}))
            .await?;
    }

    // Connect, one at a time: a fake's consent goes to the user it added last.
    let started = Instant::now();
    let mut accounts: Vec<(String, &str, Value)> = Vec::new();
    for user in &users {
        for v in &vendors {
            let vendor_user =
                sim.control(&format!("_fake/{v}/users"), json!({})).await?["user_id"].clone();
            sim.control(
                &format!("_fake/{v}/history"),
                json!({"user_id": vendor_user, "days": args.days}),
            )
            .await?;
            let authorize = sim
                .start_connect(v, user)
                .await?
                .ok_or_else(|| anyhow!("{v} stopped being connectable"))?;
            sim.finish_connect(v, authorize).await?;
            accounts.push((user.clone(), *v, vendor_user));
        }
    }
    let connected_in = started.elapsed();
    eprintln!(
        "connected {} accounts of {} users in {:.1} s; waiting for their backfills",
        accounts.len(),
        users.len(),
        connected_in.as_secs_f64()
    );

    let wait = Duration::from_secs(mode.vendor_wait_seconds);
    let started = Instant::now();
    let mut last_note = Instant::now();
    let backfilled = loop {
        let mut done = 0;
        let mut readings = 0;
        for user in &users {
            for (_, (status, events)) in sim.backfills(user).await? {
                done += (status == "done") as usize;
                readings += events;
            }
        }
        if done == accounts.len() {
            break readings;
        }
        if started.elapsed() > wait {
            bail!(
                "{done} of {} backfills done after {} s (see GET /users/{}/connections)",
                accounts.len(),
                wait.as_secs(),
                users[0]
            );
        }
        if last_note.elapsed() > Duration::from_secs(5) {
            eprintln!(
                "backfill: {done}/{} done, {readings} readings so far",
                accounts.len()
            );
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let backfill_in = started.elapsed();

    // A bad night for everyone, notified by the fakes.
    let (mut sent, mut answered) = (0, 0);
    for (_, v, vendor_user) in &accounts {
        let (s, ok) = sim.bad_night(v, vendor_user).await?;
        sent += s;
        answered += ok;
    }
    // The modes the fetched nights lead to, once every user has left PATTERN or the wait is over.
    let started = Instant::now();
    let modes = loop {
        let mut modes: BTreeMap<String, u32> = BTreeMap::new();
        for user in &users {
            let (status, s) = sim.api_get(&format!("users/{user}/state")).await?;
            let mode = match status.is_success() {
                true => s["mode"].as_str().unwrap_or("-").to_string(),
                false => "no state".to_string(),
            };
            *modes.entry(mode).or_default() += 1;
        }
        let settled = modes.keys().all(|m| m != "PATTERN" && m != "no state");
        if settled || started.elapsed() > Duration::from_secs(60).min(wait) {
            break modes;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let per_vendor: Vec<String> = vendors
        .iter()
        .map(|v| format!("{} {v}", accounts.iter().filter(|a| a.1 == *v).count()))
        .collect();
    let modes: Vec<String> = modes.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let url = args.url.trim_end_matches('/');
    println!(
        "users:            {}\n\
         connected:        {} (through /connect/{{vendor}}, consent automatic, in {:.1} s)\n\
         history on fakes: {} days per account; backfilled {backfilled} readings in {:.1} s\n\
         notifications:    {sent} sent by the fakes ({answered} answered 2xx): a low recovery each\n\
         modes now:        {}\n\
         see connections:  curl -H \"Authorization: Bearer <admin token>\" {url}/users/{}/connections\n\
         see modes:        curl -H \"Authorization: Bearer <admin token>\" {url}/users/{}/modes",
        users.len(),
        per_vendor.join(", "),
        connected_in.as_secs_f64(),
        args.days,
        backfill_in.as_secs_f64(),
        modes.join(", "),
        users[0],
        users[0],
    );
    Ok(())
}
