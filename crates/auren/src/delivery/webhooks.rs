//! Outgoing webhooks, signed as the Standard Webhooks specification says
//! (<https://www.standardwebhooks.com/>): `webhook-id` (the switch id, the same on every retry,
//! for the receiver's deduplication), `webhook-timestamp` (Unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, made by the `standardwebhooks` crate), and a
//! body `{type, timestamp, data}`.
//!
//! Retries follow `AUREN_WEBHOOK_RETRY_SCHEDULE`: the first attempt at once, then one retry after
//! each delay of the schedule. When the last one fails too, the endpoint has failed for the whole
//! schedule (about 33 hours by default) and is disabled: it takes no new switches and its queue is
//! dropped, which the attempts list and the endpoint's `disabled_reason` show.
//!
//! Endpoints are the admin's, but their URLs still must not reach inside the deployment: unless
//! `AUREN_WEBHOOK_ALLOW_PRIVATE` is set, loopback, private, link-local (cloud metadata) and other
//! non-public addresses are refused when the endpoint is registered and again at every connection
//! (the resolver below), so a name that later resolves inward is refused too; redirects are not
//! followed.

use super::{describe, Outcome, Sink};
use crate::crypto::TokenKey;
use crate::settings::{DeliverySettings, Schedule};
use crate::store::{DeliveryStore, PendingDelivery, WebhookAttempt, WebhookEndpoint};
use async_trait::async_trait;
use chrono::Utc;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The event types an endpoint can ask for.
pub const EVENT_TYPES: [&str; 1] = ["mode.switched"];

/// The body of a delivery.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: chrono::DateTime<Utc>,
    pub data: &'a crate::messages::SwitchMessage,
}

/// A fresh signing secret, as Standard Webhooks libraries take it.
pub fn new_secret() -> String {
    use base64::Engine;
    let bytes: [u8; 24] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// Addresses a webhook may reach without `AUREN_WEBHOOK_ALLOW_PRIVATE`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                // Shared address space (carrier-grade NAT) and benchmarking.
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UrlError {
    #[error("not a URL")]
    Invalid,
    #[error("only http and https URLs can receive webhooks")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL carries credentials; use the signing secret to authenticate deliveries")]
    Credentials,
    #[error("the host does not resolve")]
    Unresolvable,
    #[error("the host is a loopback, private or otherwise non-public address (set AUREN_WEBHOOK_ALLOW_PRIVATE=1 to allow)")]
    Private,
}

/// The URL's host when it is an address: the resolver is not asked for it, so it is checked here.
fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// Checks an endpoint URL at registration: its form, and where its host points now.
pub async fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, UrlError> {
    let url = url::Url::parse(raw).map_err(|_| UrlError::Invalid)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let host = url.host().ok_or(UrlError::NoHost)?;
    if allow_private {
        return Ok(url);
    }
    let ips: Vec<IpAddr> = match (literal_ip(&url), host) {
        (Some(ip), _) => vec![ip],
        (None, host) => tokio::net::lookup_host((host.to_string(), 0))
            .await
            .map_err(|_| UrlError::Unresolvable)?
            .map(|a| a.ip())
            .collect(),
    };
    if ips.is_empty() {
        return Err(UrlError::Unresolvable);
    }
    if !ips.into_iter().all(is_public) {
        return Err(UrlError::Private);
    }
    Ok(url)
}

/// Resolves names for deliveries, keeping only public addresses: checked at every connection,
/// not only at registration.
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(UrlError::Private) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub struct Webhooks {
    http: reqwest::Client,
    store: Arc<dyn DeliveryStore>,
    key: TokenKey,
    schedule: Schedule,
    allow_private: bool,
    timeout: Duration,
    /// Endpoints by id, briefly: a deleted or disabled endpoint stops within this time.
    endpoints: moka::sync::Cache<String, Option<Arc<WebhookEndpoint>>>,
}

impl Webhooks {
    pub fn new(
        s: &DeliverySettings,
        key: TokenKey,
        store: Arc<dyn DeliveryStore>,
    ) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(s.webhook_timeout_ms);
        let mut http = reqwest::Client::builder()
            // rustls: TLS 1.3 preferred, 1.2 the floor.
            .min_tls_version(reqwest::tls::Version::TLS_1_2)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("auren-bridge/", env!("CARGO_PKG_VERSION")));
        if !s.webhook_allow_private {
            http = http.dns_resolver(Arc::new(PublicOnly));
        }
        Ok(Self {
            http: http.build()?,
            store,
            key,
            schedule: s.webhook_retry_schedule.clone(),
            allow_private: s.webhook_allow_private,
            timeout,
            endpoints: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
        })
    }

    async fn endpoint(&self, id: &str) -> Result<Option<Arc<WebhookEndpoint>>, String> {
        if let Some(e) = self.endpoints.get(id) {
            return Ok(e);
        }
        let e = self
            .store
            .endpoint(id)
            .await
            .map_err(|e| format!("store: {e}"))?
            .map(Arc::new);
        self.endpoints.insert(id.to_string(), e.clone());
        Ok(e)
    }

    /// One POST; the status when the endpoint answered, and the error when it was no 2xx.
    async fn post(
        &self,
        e: &WebhookEndpoint,
        d: &PendingDelivery,
    ) -> (Option<i32>, Result<(), String>) {
        let url = match url::Url::parse(&e.url) {
            Ok(u) => u,
            Err(_) => return (None, Err("the endpoint's URL is not valid".into())),
        };
        if !self.allow_private && literal_ip(&url).is_some_and(|ip| !is_public(ip)) {
            return (None, Err(UrlError::Private.to_string()));
        }
        let secret = match self.key.open(&e.secret_sealed) {
            Ok(s) => String::from_utf8_lossy(&s).into_owned(),
            Err(err) => return (None, Err(format!("the signing secret: {err}"))),
        };
        let body = match serde_json::to_vec(&Envelope {
            kind: EVENT_TYPES[0],
            timestamp: d.queued_at,
            data: &d.message,
        }) {
            Ok(b) => b,
            Err(err) => return (None, Err(format!("encoding: {err}"))),
        };
        let now = Utc::now().timestamp();
        let msg_id = &d.message.switch_id;
        let signature = match standardwebhooks::Webhook::new(&secret)
            .and_then(|w| w.sign(msg_id, now, &body))
        {
            Ok(s) => s,
            Err(err) => return (None, Err(format!("signing: {err}"))),
        };
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(standardwebhooks::HEADER_WEBHOOK_ID, msg_id)
            .header(standardwebhooks::HEADER_WEBHOOK_TIMESTAMP, now.to_string())
            .header(standardwebhooks::HEADER_WEBHOOK_SIGNATURE, signature)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => (Some(i32::from(r.status().as_u16())), Ok(())),
            Ok(r) => (
                Some(i32::from(r.status().as_u16())),
                Err(format!("HTTP {}", r.status().as_u16())),
            ),
            Err(err) => (None, Err(describe(&err))),
        }
    }
}

#[async_trait]
impl Sink for Webhooks {
    fn kind(&self) -> &'static str {
        crate::store::WEBHOOK_SINK
    }

    fn max_duration(&self) -> Duration {
        self.timeout + Duration::from_secs(10)
    }

    async fn deliver(&self, d: &PendingDelivery) -> Outcome {
        let endpoint = match self.endpoint(&d.target).await {
            Ok(Some(e)) if e.disabled_at.is_none() => e,
            Ok(_) => {
                return Outcome::GiveUp {
                    error: "the endpoint was deleted or disabled".into(),
                }
            }
            Err(error) => {
                return Outcome::Retry {
                    error,
                    after: Duration::from_secs(1),
                }
            }
        };
        let started = Instant::now();
        let attempted_at = Utc::now();
        let (status, result) = self.post(&endpoint, d).await;
        let attempt = d.attempts + 1;
        let retry_after = self.schedule.0.get(d.attempts as usize).copied();
        let (outcome, label) = match (&result, retry_after) {
            (Ok(()), _) => (Outcome::Delivered, "delivered"),
            (Err(error), Some(after)) => (
                Outcome::Retry {
                    error: error.clone(),
                    after,
                },
                "failed",
            ),
            (Err(error), None) => (
                Outcome::GiveUp {
                    error: error.clone(),
                },
                "gave_up",
            ),
        };
        let record = WebhookAttempt {
            message_id: d.message.switch_id.clone(),
            attempt,
            attempted_at,
            status,
            outcome: label.into(),
            error: result.err(),
            duration_ms: started.elapsed().as_millis() as i64,
        };
        if let Err(e) = self.store.record_attempt(&endpoint.id, &record).await {
            tracing::warn!(error = %e, "could not record a webhook attempt");
        }
        if matches!(outcome, Outcome::GiveUp { .. }) {
            let reason = format!(
                "{attempt} attempts over the whole retry schedule failed (last: {})",
                record.error.as_deref().unwrap_or("unknown")
            );
            tracing::warn!(endpoint = %endpoint.id, %reason, "disabling a webhook endpoint");
            metrics::counter!("auren_webhook_endpoints_disabled_total").increment(1);
            if let Err(e) = self.store.disable_endpoint(&endpoint.id, &reason).await {
                tracing::warn!(error = %e, "could not disable a webhook endpoint");
            }
            self.endpoints.invalidate(&endpoint.id);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inward_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked_for_form_and_destination() {
        assert_eq!(
            check_url("ftp://example.com/x", true).await,
            Err(UrlError::Scheme)
        );
        assert_eq!(check_url("not a url", true).await, Err(UrlError::Invalid));
        assert_eq!(
            check_url("http://user:pw@example.com/", true).await,
            Err(UrlError::Credentials)
        );
        assert_eq!(
            check_url("http://127.0.0.1:9/x", false).await,
            Err(UrlError::Private)
        );
        assert_eq!(
            check_url("http://[::1]:9/x", false).await,
            Err(UrlError::Private)
        );
        assert_eq!(
            check_url("http://localhost:9/x", false).await,
            Err(UrlError::Private)
        );
        assert_eq!(
            check_url("http://169.254.169.254/latest/meta-data", false).await,
            Err(UrlError::Private)
        );
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
    }

    #[test]
    fn secrets_are_what_standard_webhooks_libraries_take() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert!(standardwebhooks::Webhook::new(&s).is_ok());
        assert_ne!(s, new_secret());
    }
}
