//! Service configuration, from environment variables (or the matching flags), validated at start.
//!
//! Secrets are required: a webhook receiver that silently skips verification when a secret is
//! missing (as the predecessor did) accepts forged data. `AUREN_DEV_MODE=1` is the one way around
//! that, for a laptop: it generates throwaway values, keeps them in `AUREN_DATA_DIR` so restarts
//! and the simulator agree, and says so loudly.

use anyhow::{bail, Context};
use clap::Args;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address of the webhook and API listener.
    #[arg(long, env = "AUREN_HTTP_ADDR", default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,
    /// Address of the Prometheus /metrics listener.
    #[arg(long, env = "AUREN_METRICS_ADDR", default_value = "0.0.0.0:9000")]
    pub metrics_addr: SocketAddr,
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Webhook requests processed at once; more wait up to --admission-wait-ms, then get 503.
    #[arg(long, env = "MAX_CONCURRENT_EVENTS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_events: u32,
    #[arg(long, env = "AUREN_ADMISSION_WAIT_MS", default_value_t = 250)]
    pub admission_wait_ms: u64,
    /// How long a request may wait for the log to make its events durable before answering 503.
    #[arg(long, env = "AUREN_LOG_TIMEOUT_MS", default_value_t = 5000)]
    pub log_timeout_ms: u64,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, env = "AUREN_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// The thresholds YAML.
    #[arg(long, env = "BIOMETRIC_CONFIG")]
    pub biometric_config: Option<PathBuf>,
    #[command(flatten)]
    pub secrets: SecretArgs,
    #[command(flatten)]
    pub bridge: crate::bridge::BridgeArgs,
    /// Run ingest only, without the bridge (for a separate `auren bridge` on Kafka).
    #[arg(long, env = "AUREN_NO_BRIDGE", value_parser = parse_flag, default_value = "0")]
    pub no_bridge: bool,
}

/// Which backends to use: unset URLs mean the embedded defaults under the data directory.
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Directory for the embedded log, state store and dev secrets.
    #[arg(long, env = "AUREN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Kafka bootstrap servers; unset means the embedded log.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// PostgreSQL URL; unset means SQLite under the data directory.
    #[arg(long, env = "POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Redis URL; unset means an in-process cache.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Topic webhooks are logged to.
    #[arg(long, env = "AUREN_EVENTS_TOPIC", default_value = "biometric-events")]
    pub events_topic: String,
    /// Partitions of each topic in the embedded log.
    #[arg(long, env = "AUREN_EMBEDDED_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub embedded_partitions: u32,
    /// How long an event id is remembered for deduplication in front of Kafka.
    #[arg(long, env = "AUREN_DEDUP_TTL_SECONDS", default_value_t = 7 * 24 * 3600)]
    pub dedup_ttl_seconds: u64,
}

#[derive(Clone, Args)]
pub struct SecretArgs {
    #[arg(long, env = "OURA_CLIENT_SECRET", hide_env_values = true)]
    pub oura_client_secret: Option<String>,
    #[arg(long, env = "OURA_VERIFICATION_TOKEN", hide_env_values = true)]
    pub oura_verification_token: Option<String>,
    #[arg(long, env = "WHOOP_CLIENT_SECRET", hide_env_values = true)]
    pub whoop_client_secret: Option<String>,
    #[arg(long, env = "AUREN_PSEUDONYM_KEY", hide_env_values = true)]
    pub pseudonym_key: Option<String>,
    /// Generate throwaway secrets instead of refusing to start without them. Never in production.
    #[arg(long, env = "AUREN_DEV_MODE", value_parser = parse_flag, default_value = "0")]
    pub dev_mode: bool,
    /// Token for the admin endpoints; unset disables them.
    #[arg(long, env = "AUREN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for SecretArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretArgs(<redacted>)")
    }
}

fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("'{other}' is not a boolean (use 1 or 0)")),
    }
}

/// The secrets the service cannot run without, resolved.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    pub oura_client_secret: String,
    pub oura_verification_token: String,
    pub whoop_client_secret: String,
    pub pseudonym_key: String,
    #[serde(default)]
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

pub const DEV_SECRETS_FILE: &str = "dev-secrets.json";

impl SecretArgs {
    /// Resolves the secrets, refusing to start when one is missing outside dev mode.
    pub fn resolve(&self, data_dir: &Path) -> anyhow::Result<Secrets> {
        let given = [
            ("OURA_CLIENT_SECRET", &self.oura_client_secret),
            ("OURA_VERIFICATION_TOKEN", &self.oura_verification_token),
            ("WHOOP_CLIENT_SECRET", &self.whoop_client_secret),
            ("AUREN_PSEUDONYM_KEY", &self.pseudonym_key),
        ];
        let missing: Vec<&str> = given
            .iter()
            .filter(|(_, v)| v.as_deref().is_none_or(|s| s.trim().is_empty()))
            .map(|(k, _)| *k)
            .collect();
        if !missing.is_empty() && !self.dev_mode {
            bail!(
                "refusing to start: {} not set. Webhook signatures cannot be verified and user ids \
                 cannot be pseudonymised without them. Set them, or set AUREN_DEV_MODE=1 on a \
                 development machine to generate throwaway values.",
                missing.join(", ")
            );
        }
        let dev = if missing.is_empty() {
            None
        } else {
            Some(load_or_create_dev_secrets(data_dir)?)
        };
        let pick = |v: &Option<String>, dev_value: fn(&Secrets) -> &String| -> String {
            match v.as_deref().filter(|s| !s.trim().is_empty()) {
                Some(s) => s.to_string(),
                None => {
                    dev_value(dev.as_ref().expect("dev secrets exist when one is missing")).clone()
                }
            }
        };
        let secrets = Secrets {
            oura_client_secret: pick(&self.oura_client_secret, |d| &d.oura_client_secret),
            oura_verification_token: pick(&self.oura_verification_token, |d| {
                &d.oura_verification_token
            }),
            whoop_client_secret: pick(&self.whoop_client_secret, |d| &d.whoop_client_secret),
            pseudonym_key: pick(&self.pseudonym_key, |d| &d.pseudonym_key),
            admin_token: self
                .admin_token
                .clone()
                .or_else(|| dev.as_ref().and_then(|d| d.admin_token.clone())),
        };
        if secrets.pseudonym_key.len() < auren_core::pseudonym::Pseudonymizer::MIN_KEY_BYTES {
            bail!("AUREN_PSEUDONYM_KEY must be at least 16 bytes");
        }
        if !missing.is_empty() {
            tracing::warn!(
                missing = %missing.join(","),
                file = %data_dir.join(DEV_SECRETS_FILE).display(),
                "DEV MODE: using generated throwaway secrets. Real vendor webhooks will fail \
                 verification and pseudonyms are not production keys. Never run like this in production."
            );
        }
        Ok(secrets)
    }
}

fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Dev secrets live in the data directory so a restart keeps the same pseudonyms and the
/// simulator can sign with them.
pub fn load_or_create_dev_secrets(data_dir: &Path) -> anyhow::Result<Secrets> {
    let path = data_dir.join(DEV_SECRETS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        return serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let s = Secrets {
        oura_client_secret: random_token(),
        oura_verification_token: random_token(),
        whoop_client_secret: random_token(),
        pseudonym_key: random_token(),
        admin_token: Some(random_token()),
    };
    std::fs::write(&path, serde_json::to_vec_pretty(&s)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(s)
}

impl ServiceArgs {
    pub fn admission_wait(&self) -> Duration {
        Duration::from_millis(self.admission_wait_ms)
    }
    pub fn log_timeout(&self) -> Duration {
        Duration::from_millis(self.log_timeout_ms)
    }
}
