//! `auren subscriptions sync`: the app's Oura webhook subscriptions, one per (event type, data
//! type) we read, all calling `AUREN_PUBLIC_URL/webhooks/oura`.
//!
//! Oura's subscription API takes the app's credentials (`x-client-id`, `x-client-secret`), not
//! a user's token. Creating one makes Oura call the callback with the verification token and a
//! challenge, so the service must be reachable at the public URL when this runs. Subscriptions
//! expire (Oura does not say when; peers see about 90 days): one expiring within
//! [`RENEW_WITHIN_DAYS`] is renewed. Running it daily from cron keeps them alive; running it
//! twice changes nothing.

use crate::settings::{Secrets, VendorSettings};
use anyhow::{bail, Context};
use auren_core::vendors::oura::data as oura;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Renew a subscription whose expiry is closer than this.
pub const RENEW_WITHIN_DAYS: i64 = 14;
/// Every event type Oura sends.
const EVENT_TYPES: [&str; 3] = ["create", "update", "delete"];

#[derive(Debug, Clone, Deserialize)]
struct Subscription {
    id: String,
    callback_url: String,
    event_type: String,
    data_type: String,
    #[serde(default)]
    expiration_time: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Create<'a> {
    callback_url: &'a str,
    verification_token: &'a str,
    event_type: &'a str,
    data_type: &'a str,
}

/// What became of one (event type, data type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub event_type: String,
    pub data_type: String,
    /// `created`, `renewed`, `kept`, or `failed: <why>`.
    pub outcome: String,
}

/// The data types Oura can notify about; heart rate is polled (it is no webhook data type).
fn webhook_types() -> impl Iterator<Item = &'static oura::DataType> {
    oura::DATA_TYPES.iter().filter(|d| d.webhook != "heartrate")
}

pub async fn sync(vendors: &VendorSettings, secrets: &Secrets) -> anyhow::Result<Vec<Line>> {
    let client_id = vendors
        .oura_client_id
        .as_deref()
        .filter(|c| !c.is_empty())
        .context("OURA_CLIENT_ID is not set: there is no Oura app to subscribe")?;
    let Some(public) = &vendors.public_url else {
        bail!("AUREN_PUBLIC_URL is not set: Oura needs the service's public address to call");
    };
    let callback = format!("{}/webhooks/oura", public.as_str().trim_end_matches('/'));
    let base = format!(
        "{}/v2/webhook/subscription",
        vendors.oura_api_base_url.as_str().trim_end_matches('/')
    );
    let http = reqwest::Client::builder()
        .min_tls_version(reqwest::tls::Version::TLS_1_2)
        // Creating waits for Oura's call to our callback (which must answer within 10 s).
        .timeout(Duration::from_millis(vendors.vendor_timeout_ms).max(Duration::from_secs(15)))
        .build()?;
    let app = |r: reqwest::RequestBuilder| {
        r.header("x-client-id", client_id)
            .header("x-client-secret", &secrets.oura_client_secret)
    };
    let resp = app(http.get(&base))
        .send()
        .await
        .context("listing Oura subscriptions")?;
    if !resp.status().is_success() {
        bail!(
            "Oura refused to list the subscriptions (HTTP {}): check OURA_CLIENT_ID and OURA_CLIENT_SECRET",
            resp.status().as_u16()
        );
    }
    let existing: Vec<Subscription> = resp
        .json()
        .await
        .context("reading Oura's subscription list")?;
    let soon = Utc::now() + chrono::Duration::days(RENEW_WITHIN_DAYS);
    let mut lines = Vec::new();
    for dt in webhook_types() {
        for ev in EVENT_TYPES {
            let found = existing.iter().find(|s| {
                s.callback_url == callback && s.event_type == ev && s.data_type == dt.webhook
            });
            let outcome = match found {
                Some(s) if s.expiration_time.is_none_or(|t| t > soon) => "kept".to_string(),
                Some(s) => {
                    let r = app(http.put(format!("{base}/renew/{}", s.id))).send().await;
                    outcome(r, "renewed")
                }
                None => {
                    let body = Create {
                        callback_url: &callback,
                        verification_token: &secrets.oura_verification_token,
                        event_type: ev,
                        data_type: dt.webhook,
                    };
                    let r = app(http.post(&base)).json(&body).send().await;
                    outcome(r, "created")
                }
            };
            lines.push(Line {
                event_type: ev.into(),
                data_type: dt.webhook.into(),
                outcome,
            });
        }
    }
    Ok(lines)
}

fn outcome(r: reqwest::Result<reqwest::Response>, done: &str) -> String {
    match r {
        Ok(r) if r.status().is_success() => done.into(),
        Ok(r) => format!("failed: HTTP {}", r.status().as_u16()),
        Err(e) => format!("failed: {}", crate::delivery::describe(&e)),
    }
}
