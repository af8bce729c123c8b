//! One settings tree for every command, read once at start.
//!
//! Each group (`http`, `ingest`, `data`, `log`, `store`, `cache`, `bridge`, `secrets`,
//! `telemetry`) is a clap `Args` struct that is also serde, so the same value can be parsed from
//! flags and the environment, overlaid with an optional YAML file, printed by `auren config show`
//! (secrets redacted), and turned back into environment variables for a child process.
//!
//! **Precedence**, highest first: a command-line flag, its environment variable, the settings file
//! (`--config FILE` or `AUREN_CONFIG`), the built-in default. A command flattens only the groups
//! it needs; nothing outside this module reads the environment.
//!
//! Secrets are required: a webhook receiver that silently skips verification when a secret is
//! missing (as the predecessor did) accepts forged data. `AUREN_DEV_MODE=1` is the one way around
//! that, for a laptop: it generates throwaway values, keeps them in `AUREN_DATA_DIR` so restarts
//! and the simulator agree, and says so loudly.

use anyhow::{bail, Context};
use clap::{ArgMatches, Args, FromArgMatches};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default topic names.
pub mod topics {
    pub const EVENTS: &str = "biometric-events";
    pub const DLQ: &str = "biometric-events.dlq";
    pub const MODE_SWITCHES: &str = "cognitive-mode-switches";
}

/// Names of the variables read by more than one command, declared once.
pub mod env {
    pub const ADMIN_TOKEN: &str = "AUREN_ADMIN_TOKEN";
    pub const OURA_CLIENT_SECRET: &str = "OURA_CLIENT_SECRET";
    pub const WHOOP_CLIENT_SECRET: &str = "WHOOP_CLIENT_SECRET";
    pub const CONFIG_FILE: &str = "AUREN_CONFIG";
}

/// The API listener.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct HttpSettings {
    /// Address of the webhook and API listener.
    #[arg(long, env = "AUREN_HTTP_ADDR", default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,
    /// Once the first byte of a request arrives, its whole header must arrive within this.
    #[arg(long, env = "AUREN_HTTP_HEADER_READ_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// A request's whole body must arrive within this after its header; slower ones get 408.
    #[arg(long, env = "AUREN_HTTP_BODY_READ_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after this.
    #[arg(long, env = "AUREN_HTTP_IDLE_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_ms: u64,
    /// Open connections at most; past it new ones wait in the kernel's backlog. Keep it below
    /// the process's file-descriptor limit (`ulimit -n`).
    #[arg(long, env = "AUREN_HTTP_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Failed authentications (Oura verification token, user keys, admin token) allowed per
    /// client address and minute before it gets 429.
    #[arg(long, env = "AUREN_AUTH_FAILURES_PER_MINUTE", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub auth_failures_per_minute: u32,
    /// PEM certificate chain for HTTPS on the API listener (with --tls-key); unset serves plain
    /// HTTP. Both files are reloaded when they change.
    #[arg(long = "tls-cert", env = "AUREN_TLS_CERT")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long = "tls-key", env = "AUREN_TLS_KEY")]
    pub tls_key_file: Option<PathBuf>,
    /// Seconds between keep-alive comments on a live event stream, so that a quiet stream is
    /// not taken for a dead one by a proxy or client.
    #[arg(long, env = "AUREN_SSE_KEEPALIVE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sse_keepalive_seconds: u64,
    /// Events buffered per live-stream client; a client that falls this far behind is dropped
    /// (it reconnects with Last-Event-ID and misses nothing).
    #[arg(long, env = "AUREN_SSE_CLIENT_BUFFER", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub sse_client_buffer: u32,
}

impl HttpSettings {
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The listener's certificate and key files, when it serves HTTPS.
    pub fn tls_files(&self) -> anyhow::Result<Option<(&Path, &Path)>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            _ => bail!(
                "AUREN_TLS_CERT and AUREN_TLS_KEY go together: set both, or neither for plain HTTP"
            ),
        }
    }
}

/// The Prometheus listener, for the commands that run until stopped.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct MetricsSettings {
    /// Address of the Prometheus /metrics listener.
    #[arg(long, env = "AUREN_METRICS_ADDR", default_value = "0.0.0.0:9000")]
    pub metrics_addr: SocketAddr,
}

/// Admission and limits of webhook ingest.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct IngestSettings {
    /// Webhook requests processed at once; more wait up to --admission-wait-ms, then get 503.
    #[arg(long, env = "MAX_CONCURRENT_EVENTS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_events: u32,
    /// How long a webhook waits for a processing slot before it is refused with 503.
    #[arg(long, env = "AUREN_ADMISSION_WAIT_MS", default_value_t = 250)]
    pub admission_wait_ms: u64,
    /// Largest accepted request body; larger ones get 413.
    #[arg(long, env = "AUREN_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How far past the server's clock a sample may be dated before it is refused
    /// (`timestamp_in_future`): a phone clock that runs a little fast, no more.
    #[arg(long, env = "AUREN_MAX_FUTURE_SKEW_SECONDS", default_value_t = 300)]
    pub max_future_skew_seconds: u32,
    /// How far back a sample may be dated before it is refused (`timestamp_too_old`).
    #[arg(long, env = "AUREN_MAX_HISTORY_DAYS", default_value_t = 5 * 365 + 1, value_parser = clap::value_parser!(u32).range(1..=36_500))]
    pub max_history_days: u32,
    /// Samples in one push (all pushes of a HealthKit batch, all metrics of a Health Auto
    /// Export body); more gets 413.
    #[arg(long, env = "AUREN_MAX_SAMPLES_PER_PUSH", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_samples_per_push: u32,
    /// Data points in one Health Auto Export metric; more gets 413.
    #[arg(long, env = "AUREN_MAX_POINTS_PER_METRIC", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_points_per_metric: u32,
    /// How long a user key's lookup is cached: a revoked key is refused by every instance
    /// within this (at once by the one that revoked it); 0 asks the store on every request.
    #[arg(long, env = "AUREN_KEY_CACHE_TTL_SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub key_cache_ttl_seconds: u64,
}

impl IngestSettings {
    /// The core's limits with this deployment's values.
    pub fn limits(&self) -> auren_core::ingest::IngestLimits {
        auren_core::ingest::IngestLimits {
            max_future_skew: chrono::TimeDelta::seconds(self.max_future_skew_seconds.into()),
            max_age: chrono::TimeDelta::days(self.max_history_days.into()),
            max_samples_per_push: self.max_samples_per_push as usize,
            max_points_per_metric: self.max_points_per_metric as usize,
            ..Default::default()
        }
    }
    pub fn admission_wait(&self) -> Duration {
        Duration::from_millis(self.admission_wait_ms)
    }
    pub fn key_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.key_cache_ttl_seconds)
    }
}

/// Where the embedded backends and the dev secrets live.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct DataSettings {
    /// Directory for the embedded log, the SQLite state store and the dev secrets.
    #[arg(long, env = "AUREN_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// The event log: Kafka when bootstrap servers are given, else the embedded log.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct LogSettings {
    /// Kafka bootstrap servers; unset means the embedded log under the data directory.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub kafka_bootstrap_servers: Option<String>,
    /// Topic webhooks are logged to.
    #[arg(long, env = "AUREN_EVENTS_TOPIC", default_value = topics::EVENTS)]
    pub events_topic: String,
    /// Topic mode switches are published to.
    #[arg(long, env = "AUREN_SWITCHES_TOPIC", default_value = topics::MODE_SWITCHES)]
    pub switches_topic: String,
    /// Topic unreadable events are dead-lettered to.
    #[arg(long, env = "AUREN_DLQ_TOPIC", default_value = topics::DLQ)]
    pub dlq_topic: String,
    /// Partitions of each topic in the embedded log.
    #[arg(long, env = "AUREN_EMBEDDED_PARTITIONS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub embedded_partitions: u32,
    /// How long an append may wait for the log to make its records durable.
    #[arg(long, env = "AUREN_LOG_TIMEOUT_MS", default_value_t = 5000)]
    pub log_timeout_ms: u64,
    /// Kafka consumer session timeout.
    #[arg(long, env = "AUREN_KAFKA_SESSION_TIMEOUT_MS", default_value_t = 6000)]
    pub kafka_session_timeout_ms: u32,
    /// Kafka `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl.
    #[arg(long, env = "KAFKA_SECURITY_PROTOCOL", ignore_case = true, value_parser = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"])]
    pub kafka_security_protocol: Option<String>,
    /// Kafka `sasl.mechanism` for sasl_* protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "KAFKA_SASL_MECHANISM", ignore_case = true, value_parser = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub kafka_sasl_mechanism: Option<String>,
    /// Kafka SASL user name.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,
    /// Kafka SASL password.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub kafka_sasl_password: Option<String>,
    /// PEM file of the CA(s) that sign the brokers' certificates; unset uses the system's.
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by certificate.
    #[arg(long, env = "KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long, env = "KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_file: Option<PathBuf>,
    /// Password of an encrypted client key.
    #[arg(long, env = "KAFKA_SSL_KEY_PASSWORD", hide_env_values = true)]
    pub kafka_ssl_key_password: Option<String>,
    /// Any other librdkafka properties, `name=value` separated by `;` or new lines (e.g.
    /// `ssl.endpoint.identification.algorithm=none;socket.keepalive.enable=true`), for every
    /// producer, consumer and admin client. They override the settings above; what the service
    /// sets per client (acks=all, idempotence, the group) is applied after them and stands.
    #[arg(long, env = "AUREN_KAFKA_PROPERTIES", hide_env_values = true)]
    pub kafka_properties: Option<String>,
}

impl LogSettings {
    pub fn log_timeout(&self) -> Duration {
        Duration::from_millis(self.log_timeout_ms)
    }
    /// The three topics, in the order `topics create` reports them.
    pub fn topics(&self) -> [&str; 3] {
        [&self.events_topic, &self.dlq_topic, &self.switches_topic]
    }

    /// The librdkafka properties every client gets besides its own: security, then
    /// `AUREN_KAFKA_PROPERTIES` (which may override them).
    pub fn kafka_client_properties(&self) -> anyhow::Result<Vec<(String, String)>> {
        let path = |p: &PathBuf| p.to_string_lossy().into_owned();
        let mut out: Vec<(String, String)> = [
            ("security.protocol", self.kafka_security_protocol.clone()),
            ("sasl.mechanism", self.kafka_sasl_mechanism.clone()),
            ("sasl.username", self.kafka_sasl_username.clone()),
            ("sasl.password", self.kafka_sasl_password.clone()),
            ("ssl.ca.location", self.kafka_ssl_ca_file.as_ref().map(path)),
            (
                "ssl.certificate.location",
                self.kafka_ssl_cert_file.as_ref().map(path),
            ),
            (
                "ssl.key.location",
                self.kafka_ssl_key_file.as_ref().map(path),
            ),
            ("ssl.key.password", self.kafka_ssl_key_password.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_string(), v?)))
        .collect();
        out.extend(parse_properties(
            self.kafka_properties.as_deref().unwrap_or(""),
        )?);
        Ok(out)
    }
}

/// `name=value` pairs separated by `;` or new lines; blank entries are skipped.
pub fn parse_properties(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split([';', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| match e.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => bail!(
                "AUREN_KAFKA_PROPERTIES: `{}` is not `name=value`",
                e.split('=').next().unwrap_or("")
            ),
        })
        .collect()
}

/// Whether a librdkafka property holds a secret (kept out of `config show`).
fn secret_property(name: &str) -> bool {
    ["password", "secret", "pem", "jaas", "token"]
        .iter()
        .any(|s| name.contains(s))
}

/// The state store: PostgreSQL when a URL is given, else SQLite under the data directory.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct StoreSettings {
    /// PostgreSQL URL; unset means SQLite under the data directory.
    #[arg(long, env = "POSTGRES_URL", hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// PEM file of the CA(s) that sign PostgreSQL's certificate, for `sslmode=verify-ca` or
    /// `verify-full` (the URL's `sslrootcert` wins). Unset: the URL's, else the Mozilla roots.
    #[arg(long, env = "AUREN_POSTGRES_CA_FILE")]
    pub postgres_ca_file: Option<PathBuf>,
    /// PostgreSQL connections kept open even when idle.
    #[arg(long, env = "PG_POOL_MIN_SIZE", default_value_t = 0)]
    pub pg_pool_min_size: u32,
    /// PostgreSQL connections at most, per process.
    #[arg(long, env = "PG_POOL_MAX_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub pg_pool_max_size: u32,
}

/// Dedup and the state cache: Redis when a URL is given, else in-process.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct CacheSettings {
    /// Redis URL; unset means an in-process cache.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// PEM file of the CA(s) that sign Redis's certificate, for a `rediss://` URL; unset uses
    /// the system's.
    #[arg(long, env = "AUREN_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// How long an event id is remembered for deduplication in front of Kafka.
    #[arg(long, env = "AUREN_DEDUP_TTL_SECONDS", default_value_t = 7 * 24 * 3600)]
    pub dedup_ttl_seconds: u64,
    /// TTL of the cached latest state per user.
    #[arg(long, env = "REDIS_TTL_SECONDS", default_value_t = 86_400)]
    pub redis_ttl_seconds: u64,
    /// Readings kept per user in the cached time series.
    #[arg(long, env = "MAX_TIMESERIES_ENTRIES", default_value_t = 10_000)]
    pub max_timeseries_entries: usize,
}

/// The bridge: consumer group, batching, memory bound, checkpoints, thresholds.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct BridgeSettings {
    /// Consumer group shared by all bridge instances.
    #[arg(long, env = "AUREN_BRIDGE_GROUP", default_value = "auren-bridge")]
    pub group: String,
    /// Events per batch.
    #[arg(long, env = "AUREN_BRIDGE_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_batch: u32,
    /// Users whose state is kept in memory; clean ones beyond this are dropped (reloaded on use).
    #[arg(long, env = "AUREN_BRIDGE_MAX_USERS", default_value_t = 100_000)]
    pub max_users_in_memory: usize,
    /// Checkpoints kept per user; older ones are deleted as new ones are written (0 keeps all).
    #[arg(long, env = "AUREN_CHECKPOINTS_KEPT", default_value_t = 20)]
    pub checkpoints_kept: u32,
    #[command(flatten)]
    #[serde(flatten)]
    pub thresholds: ThresholdsSettings,
    #[command(flatten)]
    #[serde(flatten)]
    pub delivery: DeliverySettings,
}

/// How a LangGraph agent is told of a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LangGraphDelivery {
    /// Update the thread's state (the agent reads it on its next run).
    State,
    /// Start a run with the switch as input (the agent reacts at once).
    Run,
}

/// Delivery of mode switches to agents: a LangGraph server and outgoing webhooks. Run by the
/// bridge processes, from the outbox their commits fill.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct DeliverySettings {
    /// LangGraph server to deliver switches to (e.g. http://127.0.0.1:2024); unset: none.
    #[arg(long, env = "LANGGRAPH_URL")]
    pub langgraph_url: Option<url::Url>,
    /// Sent as `x-api-key` to the LangGraph server.
    #[arg(long, env = "LANGGRAPH_API_KEY", hide_env_values = true)]
    pub langgraph_api_key: Option<String>,
    /// The graph name or assistant UUID that runs and threads use.
    #[arg(long, env = "LANGGRAPH_ASSISTANT_ID", default_value = "auren_agent")]
    pub langgraph_assistant_id: String,
    /// `state` updates the thread's state; `run` starts a run with the switch as input.
    #[arg(long, env = "LANGGRAPH_DELIVERY", value_enum, default_value = "state")]
    pub langgraph_delivery: LangGraphDelivery,
    /// Deadline of one request to the LangGraph server (a run waits for the graph).
    #[arg(long, env = "LANGGRAPH_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub langgraph_timeout_ms: u64,
    /// Delays before each retry of a webhook, comma-separated; the first attempt is immediate (the
    /// schedule Standard Webhooks senders use). When the last retry fails the endpoint is disabled.
    #[arg(long, env = "AUREN_WEBHOOK_RETRY_SCHEDULE", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = parse_schedule)]
    pub webhook_retry_schedule: Schedule,
    /// Deadline of one webhook request.
    #[arg(long, env = "AUREN_WEBHOOK_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_timeout_ms: u64,
    /// Allow webhook URLs on loopback, private and link-local addresses (tests, local setups).
    #[arg(long, env = "AUREN_WEBHOOK_ALLOW_PRIVATE", value_parser = parse_flag, default_value = "0")]
    pub webhook_allow_private: bool,
    /// Deliveries in flight at once per sink (each user still gets one at a time, in order).
    #[arg(long, env = "AUREN_DELIVERY_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub delivery_concurrency: u32,
}

/// Retry delays, as written in the settings (`5s`, `30m`, `2h`, `250ms`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Schedule(pub Vec<Duration>);

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        parse_schedule(&s)
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.0.iter()
            .map(|d| format!("{}ms", d.as_millis()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let delays = text
        .split(',')
        .map(|part| {
            let part = part.trim();
            let split = part
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("`{part}` has no unit (ms, s, m or h)"))?;
            let (n, unit) = part.split_at(split);
            let n: u64 = n
                .parse()
                .map_err(|_| format!("`{part}` is not a number and a unit"))?;
            let ms = match unit {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(format!("`{part}`: the unit must be ms, s, m or h")),
            };
            Ok(Duration::from_millis(n.saturating_mul(ms)))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if delays.is_empty() {
        return Err("the schedule needs at least one delay".into());
    }
    Ok(Schedule(delays))
}

/// The mode engine's thresholds file: the bridge's, and `auren replay`'s.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct ThresholdsSettings {
    /// The thresholds YAML; unset means the built-in defaults.
    #[arg(long, env = "BIOMETRIC_CONFIG")]
    pub biometric_config: Option<PathBuf>,
}

/// Webhook secrets, the pseudonym key and the admin token.
#[derive(Clone, Args, Serialize, Deserialize)]
pub struct SecretSettings {
    /// Oura app client secret: the HMAC key of Oura's webhook signatures.
    #[arg(long, env = env::OURA_CLIENT_SECRET, hide_env_values = true)]
    pub oura_client_secret: Option<String>,
    /// The token Oura echoes in its subscription handshake.
    #[arg(long, env = "OURA_VERIFICATION_TOKEN", hide_env_values = true)]
    pub oura_verification_token: Option<String>,
    /// WHOOP app client secret: the HMAC key of WHOOP's webhook signatures.
    #[arg(long, env = env::WHOOP_CLIENT_SECRET, hide_env_values = true)]
    pub whoop_client_secret: Option<String>,
    /// Key of the HMAC that turns user ids into pseudonyms (at least 16 bytes).
    #[arg(long, env = "AUREN_PSEUDONYM_KEY", hide_env_values = true)]
    pub pseudonym_key: Option<String>,
    /// Generate throwaway secrets instead of refusing to start without them. Never in production.
    #[arg(long, env = "AUREN_DEV_MODE", value_parser = parse_flag, default_value = "0")]
    pub dev_mode: bool,
    /// Token for the admin endpoints; unset disables them.
    #[arg(long, env = env::ADMIN_TOKEN, hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub token_key: TokenKeySettings,
}

/// The key that seals secrets stored in the database (webhook signing secrets).
#[derive(Clone, Default, Args, Serialize, Deserialize)]
pub struct TokenKeySettings {
    /// 32 random bytes, base64 or hex (`openssl rand -base64 32`); dev mode generates one.
    #[arg(long, env = "AUREN_TOKEN_KEY", hide_env_values = true)]
    pub token_key: Option<String>,
}

impl std::fmt::Debug for TokenKeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeySettings(<redacted>)")
    }
}

impl std::fmt::Debug for SecretSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSettings(<redacted>)")
    }
}

/// The service's own log lines, for every command.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TelemetrySettings {
    /// Log filter, in tracing's EnvFilter syntax (e.g. `info,auren=debug`).
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub rust_log: String,
    /// Log line format.
    #[arg(long, env = "AUREN_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

/// Vendor data sources reached with a user's OAuth2 tokens (issue 8). A vendor whose client id
/// is unset cannot be connected. The base URLs default to the real hosts; a test or a local
/// fake (`auren dev fake-vendors`) stands in by changing them.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct VendorSettings {
    /// WHOOP OAuth2 client id (its secret is WHOOP_CLIENT_SECRET); unset: WHOOP not connectable.
    #[arg(long, env = "WHOOP_CLIENT_ID")]
    pub whoop_client_id: Option<String>,
    /// Oura OAuth2 client id (its secret is OURA_CLIENT_SECRET); unset: Oura not connectable.
    #[arg(long, env = "OURA_CLIENT_ID")]
    pub oura_client_id: Option<String>,
    /// This service's public base URL, for the OAuth2 redirect URIs
    /// (`<url>/connect/<vendor>/callback`); default: http://localhost:<port of AUREN_HTTP_ADDR>.
    #[arg(long, env = "AUREN_PUBLIC_URL")]
    pub public_url: Option<url::Url>,
    /// WHOOP host: `/oauth/oauth2/...` and `/developer/v2/...` live under it.
    #[arg(
        long,
        env = "WHOOP_API_BASE_URL",
        default_value = "https://api.prod.whoop.com"
    )]
    pub whoop_api_base_url: url::Url,
    /// Oura API host (token endpoint and `/v2/usercollection/...`).
    #[arg(
        long,
        env = "OURA_API_BASE_URL",
        default_value = "https://api.ouraring.com"
    )]
    pub oura_api_base_url: url::Url,
    /// Oura's authorize page.
    #[arg(
        long,
        env = "OURA_AUTHORIZE_URL",
        default_value = "https://cloud.ouraring.com/oauth/authorize"
    )]
    pub oura_authorize_url: url::Url,
    /// Consumer group of the fetch-after-notify worker on the events topic.
    #[arg(long, env = "AUREN_FETCH_GROUP", default_value = "auren-vendor-fetch")]
    pub fetch_group: String,
    /// A notified object whose vendor score is still pending is fetched again after this.
    #[arg(long, env = "AUREN_PENDING_SCORE_RETRY_SECONDS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub pending_score_retry_seconds: u64,
    /// Rounds (minutes to an hour apart) at a notified object the vendor keeps failing, before
    /// the notification goes to the dead-letter topic (`auren dlq replay` brings it back).
    #[arg(long, env = "AUREN_FETCH_MAX_ROUNDS", default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub fetch_max_rounds: u32,
    /// Deadline of one request to a vendor.
    #[arg(long, env = "AUREN_VENDOR_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub vendor_timeout_ms: u64,
    /// Days of history fetched when a user connects (their baselines are then personal at once).
    #[arg(long, env = "AUREN_BACKFILL_DAYS", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub backfill_days: u32,
    /// How often each connection is reconciled (recent objects fetched again, for missed
    /// notifications); each run is jittered by up to a tenth.
    #[arg(long, env = "AUREN_RECONCILE_INTERVAL_SECONDS", default_value_t = 21_600, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_interval_seconds: u64,
    /// WHOOP's per-application budget a minute, shared by every instance (WHOOP: 100).
    #[arg(long, env = "AUREN_WHOOP_REQUESTS_PER_MINUTE", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub whoop_requests_per_minute: u32,
    /// WHOOP's per-application budget a day, shared by every instance (WHOOP: 10,000).
    #[arg(long, env = "AUREN_WHOOP_REQUESTS_PER_DAY", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub whoop_requests_per_day: u32,
    /// Oura's per-application budget in five minutes, shared by every instance (Oura: 5,000).
    #[arg(long, env = "AUREN_OURA_REQUESTS_PER_5_MINUTES", default_value_t = 5_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub oura_requests_per_5_minutes: u32,
}

/// OpenTelemetry traces over OTLP/HTTP (protobuf), for the long-running commands: off unless an
/// endpoint is set. The SDK reads the other standard `OTEL_*` variables itself (see
/// `telemetry`).
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TracesSettings {
    /// OTLP/HTTP base URL of a collector (e.g. http://collector:4318); traces go to its
    /// /v1/traces. Unset: no traces, and no cost.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// The whole URL traces are sent to, used as given; wins over --otlp-endpoint.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    pub otlp_traces_endpoint: Option<String>,
    /// Exports no traces even when an endpoint is set.
    #[arg(long, env = "OTEL_SDK_DISABLED", value_parser = parse_flag, default_value = "0")]
    pub otel_sdk_disabled: bool,
}

/// Every group: what `auren serve` takes and `auren config show` prints.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct Settings {
    #[command(flatten)]
    pub http: HttpSettings,
    #[command(flatten)]
    pub metrics: MetricsSettings,
    #[command(flatten)]
    pub ingest: IngestSettings,
    #[command(flatten)]
    pub data: DataSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub cache: CacheSettings,
    #[command(flatten)]
    pub bridge: BridgeSettings,
    #[command(flatten)]
    pub secrets: SecretSettings,
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    #[command(flatten)]
    pub vendors: VendorSettings,
    #[command(flatten)]
    pub traces: TracesSettings,
}

/// The groups the composition root opens backends from.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct BackendSettings {
    #[command(flatten)]
    pub data: DataSettings,
    #[command(flatten)]
    pub log: LogSettings,
    #[command(flatten)]
    pub store: StoreSettings,
    #[command(flatten)]
    pub cache: CacheSettings,
}

impl Settings {
    /// The built-in defaults, ignoring the environment: the base tests add their overrides to.
    pub fn defaults() -> Self {
        defaults()
    }

    /// The backend groups, for the composition root.
    pub fn backends(&self) -> BackendSettings {
        BackendSettings {
            data: self.data.clone(),
            log: self.log.clone(),
            store: self.store.clone(),
            cache: self.cache.clone(),
        }
    }

    /// The settings as JSON with every secret (and any password inside a URL) redacted.
    pub fn redacted(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(secrets) = v.get_mut("secrets").and_then(Value::as_object_mut) {
            for (k, val) in secrets.iter_mut() {
                if k != "dev_mode" && !val.is_null() {
                    *val = Value::String(REDACTED.into());
                }
            }
        }
        if let Some(Value::String(k)) = v
            .get_mut("bridge")
            .and_then(|b| b.get_mut("langgraph_api_key"))
        {
            *k = REDACTED.into();
        }
        for (group, field) in [
            ("store", "postgres_url"),
            ("cache", "redis_url"),
            ("traces", "otlp_endpoint"),
            ("traces", "otlp_traces_endpoint"),
        ] {
            if let Some(Value::String(url)) = v.get_mut(group).and_then(|g| g.get_mut(field)) {
                *url = redact_url(url);
            }
        }
        for field in ["kafka_sasl_password", "kafka_ssl_key_password"] {
            if let Some(val) = v.get_mut("log").and_then(|g| g.get_mut(field)) {
                if !val.is_null() {
                    *val = Value::String(REDACTED.into());
                }
            }
        }
        if let Some(Value::String(props)) =
            v.get_mut("log").and_then(|g| g.get_mut("kafka_properties"))
        {
            *props = match parse_properties(props) {
                Ok(pairs) => pairs
                    .iter()
                    .map(|(k, val)| match secret_property(k) {
                        true => format!("{k}={REDACTED}"),
                        false => format!("{k}={val}"),
                    })
                    .collect::<Vec<_>>()
                    .join(";"),
                Err(_) => REDACTED.into(),
            };
        }
        v
    }

    /// The environment a child `auren` process needs to run with exactly these settings: every
    /// variable, with `None` for those to remove (unset options).
    pub fn to_env(&self) -> Vec<(String, Option<String>)> {
        to_env(self)
    }
}

pub const REDACTED: &str = "<redacted>";

/// Hides the password of `scheme://user:password@host/...`.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some(REDACTED));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Not a URL we can parse: it may still hold a secret.
        Err(_) => REDACTED.into(),
    }
}

/// Parses boolean flags given as 1/0, true/false, yes/no, on/off.
pub fn parse_flag(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        other => Err(format!("'{other}' is not a boolean (use 1 or 0)")),
    }
}

/// A refused value names where it came from: clap's own message names the flag only, and a
/// value read from the environment (`AUREN_HTTP_ADDR=...`) would send the reader looking for a
/// flag nobody typed.
pub fn name_the_variable(mut e: clap::Error, mut cmd: clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        e.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return e;
    }
    let Some(ContextValue::String(shown)) = e.get(ContextKind::InvalidArg).cloned() else {
        return e;
    };
    fn find<'a>(c: &'a clap::Command, shown: &str) -> Option<&'a clap::Arg> {
        c.get_arguments()
            .find(|a| a.to_string() == shown)
            .or_else(|| c.get_subcommands().find_map(|s| find(s, shown)))
    }
    cmd.build();
    let Some(arg) = find(&cmd, &shown) else {
        return e;
    };
    let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
        return e;
    };
    let var = var.to_string_lossy();
    let typed =
        std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
    let tip = if !typed && std::env::var_os(var.as_ref()).is_some() {
        format!("the value came from the environment variable {var}")
    } else {
        format!("--{long} can also be set with the environment variable {var}")
    };
    e.insert(
        ContextKind::Suggested,
        ContextValue::StyledStrs(vec![tip.into()]),
    );
    e
}

/// A command of its own around one settings type, to reach its args generically.
fn command_of<T: Args>() -> clap::Command {
    T::augment_args(clap::Command::new("auren"))
}

/// `T`'s defaults: its args parsed from nothing, with every `env` lookup switched off.
pub fn defaults<T: Args + FromArgMatches>() -> T {
    let matches = command_of::<T>()
        .mut_args(|a| a.env(None::<&str>))
        .try_get_matches_from(["auren"])
        .expect("every setting has a default or is optional");
    T::from_arg_matches(&matches).expect("defaults parse")
}

/// Every (group, field) leaf of a settings tree.
fn leaves(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(groups) = v.as_object() {
        for (g, fields) in groups {
            match fields.as_object() {
                Some(f) => out.extend(f.keys().map(|k| (g.clone(), k.clone()))),
                None => out.push((String::new(), g.clone())),
            }
        }
    }
    out
}

/// Reads the settings file: YAML with one mapping per group, e.g. `log: {events_topic: x}`.
/// A key that names no setting is refused, so a typo is not silently ignored.
pub fn read_file(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the settings file {}", path.display()))?;
    let file: Value = serde_norway::from_str(&text)
        .with_context(|| format!("the settings file {} is not valid YAML", path.display()))?;
    let file = if file.is_null() {
        Value::Object(Default::default())
    } else {
        file
    };
    let known = serde_json::to_value(Settings::defaults())?;
    let groups = file.as_object().with_context(|| {
        format!(
            "the settings file {} must be a mapping of groups",
            path.display()
        )
    })?;
    for (g, fields) in groups {
        let Some(known_group) = known.get(g).and_then(Value::as_object) else {
            bail!(
                "{}: unknown settings group `{g}` (known: {})",
                path.display(),
                known.as_object().map_or(String::new(), |o| o
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "))
            );
        };
        let fields = fields
            .as_object()
            .with_context(|| format!("{}: `{g}` must be a mapping", path.display()))?;
        for k in fields.keys() {
            if !known_group.contains_key(k) {
                bail!("{}: unknown setting `{g}.{k}`", path.display());
            }
        }
    }
    Ok(file)
}

/// Builds `T` from parsed flags and environment, then lets the settings file fill every value
/// that neither a flag nor the environment gave.
pub fn resolve<T>(matches: &ArgMatches, file: Option<&Value>) -> anyhow::Result<T>
where
    T: FromArgMatches + Serialize + DeserializeOwned,
{
    let parsed = T::from_arg_matches(matches)?;
    let Some(file) = file else {
        return Ok(parsed);
    };
    let mut tree = serde_json::to_value(&parsed)?;
    for (g, k) in leaves(&tree) {
        let Some(from_file) = file.get(&g).and_then(|f| f.get(&k)) else {
            continue;
        };
        let given = matches!(
            matches.value_source(&k),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        if !given {
            tree[&g][&k] = from_file.clone();
        }
    }
    serde_json::from_value(tree).context("a value in the settings file has the wrong type")
}

fn env_value(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The environment that reproduces `settings` in a child process (see [`Settings::to_env`]).
pub fn to_env<T: Args + Serialize>(settings: &T) -> Vec<(String, Option<String>)> {
    let tree = serde_json::to_value(settings).unwrap_or(Value::Null);
    let mut values = std::collections::HashMap::new();
    if let Some(groups) = tree.as_object() {
        for fields in groups.values() {
            if let Some(f) = fields.as_object() {
                values.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    command_of::<T>()
        .get_arguments()
        .filter_map(|a| {
            let name = a.get_env()?.to_string_lossy().into_owned();
            let v = values.get(a.get_id().as_str())?;
            Some((name, env_value(v)))
        })
        .collect()
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
    /// Seals secrets stored in the database; without it, nothing that needs one can be stored.
    #[serde(default)]
    pub token_key: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

pub const DEV_SECRETS_FILE: &str = "dev-secrets.json";

impl SecretSettings {
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
        let token_key = self
            .token_key
            .token_key
            .clone()
            .filter(|k| !k.trim().is_empty());
        let dev = if missing.is_empty() && (token_key.is_some() || !self.dev_mode) {
            None
        } else {
            Some(load_or_create_dev_secrets(data_dir)?)
        };
        let pick = |v: &Option<String>, dev_value: fn(&Secrets) -> &String| -> String {
            match (v.as_deref().filter(|s| !s.trim().is_empty()), &dev) {
                (Some(s), _) => s.to_string(),
                (None, Some(d)) => dev_value(d).clone(),
                // Unreachable: a missing secret outside dev mode was refused above.
                (None, None) => String::new(),
            }
        };
        let secrets = Secrets {
            oura_client_secret: pick(&self.oura_client_secret, |d| &d.oura_client_secret),
            oura_verification_token: pick(&self.oura_verification_token, |d| {
                &d.oura_verification_token
            }),
            whoop_client_secret: pick(&self.whoop_client_secret, |d| &d.whoop_client_secret),
            pseudonym_key: pick(&self.pseudonym_key, |d| &d.pseudonym_key),
            // An empty token is no token: an empty `X-API-Key` must never match it.
            admin_token: self
                .admin_token
                .clone()
                .filter(|t| !t.trim().is_empty())
                .or_else(|| dev.as_ref().and_then(|d| d.admin_token.clone())),
            token_key: token_key.or_else(|| dev.as_ref().and_then(|d| d.token_key.clone())),
        };
        if let Some(k) = &secrets.token_key {
            crate::crypto::TokenKey::parse(k)?;
        }
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

/// A dev secrets file written before it was created 0600 (or loosened by hand) is tightened.
fn owner_only(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} readable by its owner only", path.display()))?;
            tracing::warn!(file = %path.display(), "the dev secrets file was readable by others; it is now 0600");
        }
    }
    Ok(())
}

fn random_token() -> String {
    use base64::Engine;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Dev secrets live in the data directory so a restart keeps the same pseudonyms and the
/// simulator can sign with them. The file holds the admin token: only its owner may read it.
pub fn load_or_create_dev_secrets(data_dir: &Path) -> anyhow::Result<Secrets> {
    let path = data_dir.join(DEV_SECRETS_FILE);
    if let Ok(text) = std::fs::read_to_string(&path) {
        owner_only(&path)?;
        let mut s: Secrets =
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
        if s.token_key.is_none() {
            // Written by a version without a token key: add one, keeping the rest.
            s.token_key = Some(crate::crypto::TokenKey::generate());
            write_owner_only(&path, &serde_json::to_vec_pretty(&s)?, false)?;
        }
        return Ok(s);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let s = Secrets {
        oura_client_secret: random_token(),
        oura_verification_token: random_token(),
        whoop_client_secret: random_token(),
        pseudonym_key: random_token(),
        admin_token: Some(random_token()),
        token_key: Some(crate::crypto::TokenKey::generate()),
    };
    write_owner_only(&path, &serde_json::to_vec_pretty(&s)?, true)?;
    Ok(s)
}

fn write_owner_only(path: &Path, bytes: &[u8], new: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    match new {
        true => options.create_new(true),
        false => options.truncate(true),
    };
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    std::io::Write::write_all(&mut f, bytes).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_ignore_the_environment_and_match_the_documented_values() {
        let s = Settings::defaults();
        assert_eq!(s.http.http_addr.to_string(), "0.0.0.0:8000");
        assert_eq!(s.metrics.metrics_addr.to_string(), "0.0.0.0:9000");
        assert_eq!(s.ingest.max_concurrent_events, 50);
        assert_eq!(s.log.events_topic, "biometric-events");
        assert_eq!(s.bridge.checkpoints_kept, 20);
        assert!(s.log.kafka_bootstrap_servers.is_none());
        assert!(!s.secrets.dev_mode);
    }

    #[test]
    fn every_settings_command_is_well_formed() {
        #[derive(clap::Parser)]
        struct All {
            #[command(flatten)]
            s: Settings,
        }
        <All as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn dev_mode_generates_a_token_key_and_adds_one_to_an_older_secrets_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::defaults().secrets;
        s.dev_mode = true;
        let first = s.resolve(dir.path()).unwrap();
        let key = first.token_key.clone().expect("generated");
        crate::crypto::TokenKey::parse(&key).unwrap();
        assert_eq!(s.resolve(dir.path()).unwrap().token_key, Some(key));
        // A file written before token keys existed gets one, and stays owner-only.
        let path = dir.path().join(DEV_SECRETS_FILE);
        let mut old: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        old.as_object_mut().unwrap().remove("token_key");
        std::fs::write(&path, old.to_string()).unwrap();
        assert!(s.resolve(dir.path()).unwrap().token_key.is_some());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "dev-secrets.json is readable by others");
        }
    }

    #[test]
    fn a_malformed_token_key_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Settings::defaults().secrets;
        s.dev_mode = true;
        s.token_key.token_key = Some("too-short".into());
        assert!(s.resolve(dir.path()).is_err());
    }

    fn matches(args: &[&str]) -> ArgMatches {
        command_of::<Settings>()
            .mut_args(|a| a.env(None::<&str>))
            .try_get_matches_from(args)
            .unwrap()
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auren.yaml");
        std::fs::write(
            &path,
            "log:\n  events_topic: from-file\n  embedded_partitions: 7\nhttp:\n  http_addr: 127.0.0.1:1234\n",
        )
        .unwrap();
        let file = read_file(&path).unwrap();
        let m = matches(&["auren", "--events-topic", "from-flag"]);
        let s: Settings = resolve(&m, Some(&file)).unwrap();
        assert_eq!(s.log.events_topic, "from-flag");
        assert_eq!(s.log.embedded_partitions, 7);
        assert_eq!(s.http.http_addr.to_string(), "127.0.0.1:1234");
        assert_eq!(s.log.dlq_topic, "biometric-events.dlq");
    }

    #[test]
    fn unknown_keys_and_wrong_types_in_the_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auren.yaml");
        std::fs::write(&path, "log:\n  event_topic: typo\n").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("log.event_topic"), "{e}");
        std::fs::write(&path, "logs:\n  events_topic: x\n").unwrap();
        let e = read_file(&path).unwrap_err().to_string();
        assert!(e.contains("unknown settings group `logs`"), "{e}");
        std::fs::write(&path, "log:\n  embedded_partitions: many\n").unwrap();
        let file = read_file(&path).unwrap();
        assert!(resolve::<Settings>(&matches(&["auren"]), Some(&file)).is_err());
    }

    #[test]
    fn redaction_hides_every_secret_and_url_password() {
        let mut s = Settings::defaults();
        s.secrets.oura_client_secret = Some("oura-s3cret".into());
        s.secrets.admin_token = Some("adm1n".into());
        s.secrets.pseudonym_key = Some("pseudo-key-0123456789".into());
        s.store.postgres_url = Some("postgres://auren:pa55word@db:5432/auren".into());
        s.cache.redis_url = Some("redis://:r3dis@cache:6379/0".into());
        let text = s.redacted().to_string();
        for secret in [
            "oura-s3cret",
            "adm1n",
            "pseudo-key-0123456789",
            "pa55word",
            "r3dis",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("db:5432"), "{text}");
        assert_eq!(s.redacted()["secrets"]["whoop_client_secret"], Value::Null);
    }

    #[test]
    fn kafka_security_and_extra_properties_reach_every_client_and_hide_their_secrets() {
        let mut s = Settings::defaults();
        s.log.kafka_security_protocol = Some("sasl_ssl".into());
        s.log.kafka_sasl_mechanism = Some("SCRAM-SHA-512".into());
        s.log.kafka_sasl_password = Some("k4fka-pass".into());
        s.log.kafka_ssl_ca_file = Some("/etc/ca.pem".into());
        s.log.kafka_properties = Some(
            " ssl.endpoint.identification.algorithm = none ;\nsasl.oauthbearer.client.secret=0auth-s3cret;".into(),
        );
        let props = s.log.kafka_client_properties().unwrap();
        let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get("ssl.ca.location"), Some("/etc/ca.pem"));
        assert_eq!(get("ssl.endpoint.identification.algorithm"), Some("none"));
        assert_eq!(get("sasl.username"), None);
        let shown = s.redacted().to_string();
        for secret in ["k4fka-pass", "0auth-s3cret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(
            shown.contains("ssl.endpoint.identification.algorithm=none"),
            "{shown}"
        );
        s.log.kafka_properties = Some("a.b=1;oops".into());
        let e = s.log.kafka_client_properties().unwrap_err().to_string();
        assert!(e.contains("`oops` is not `name=value`"), "{e}");
    }

    #[test]
    fn to_env_round_trips_through_clap() {
        let mut s = Settings::defaults();
        s.log.events_topic = "topic-x".into();
        s.ingest.max_concurrent_events = 7;
        s.secrets.dev_mode = true;
        s.store.postgres_url = Some("postgres://h/db".into());
        let env = s.to_env();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(get("AUREN_EVENTS_TOPIC").as_deref(), Some("topic-x"));
        assert_eq!(get("MAX_CONCURRENT_EVENTS").as_deref(), Some("7"));
        assert_eq!(get("KAFKA_BOOTSTRAP_SERVERS"), None);
        assert_eq!(get("RUST_LOG").as_deref(), Some("info"));
        // Parsing those values back gives the same settings.
        let mut argv = vec!["auren".to_string()];
        for a in command_of::<Settings>().get_arguments() {
            let (Some(name), Some(long)) = (a.get_env(), a.get_long()) else {
                continue;
            };
            if let Some((_, Some(v))) = env.iter().find(|(n, _)| name == n.as_str()) {
                if a.get_action().takes_values() {
                    argv.push(format!("--{long}={v}"));
                } else if parse_flag(v).unwrap() {
                    argv.push(format!("--{long}"));
                }
            }
        }
        assert!(argv.len() > 20, "{argv:?}");
        let m = matches(&argv.iter().map(String::as_str).collect::<Vec<_>>());
        let back = Settings::from_arg_matches(&m).unwrap();
        assert_eq!(
            serde_json::to_value(&back).unwrap(),
            serde_json::to_value(&s).unwrap()
        );
    }

    #[cfg(unix)]
    #[test]
    fn dev_secrets_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = load_or_create_dev_secrets(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(DEV_SECRETS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_dev_secrets(dir.path()).unwrap();
        assert_eq!(s.pseudonym_key, again.pseudonym_key);
        // One left world-readable (by an older version, or by hand) is tightened when read.
        let path = dir.path().join(DEV_SECRETS_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        load_or_create_dev_secrets(dir.path()).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
