//! Test harness: spawns the real service (in-process or as the `auren` binary) against real
//! backends on 127.0.0.1: a Tansu broker, PostgreSQL and Redis, started by `scripts/test.sh`.
//! Every test gets its own topic, database and data directory, so tests run in parallel.
#![allow(dead_code)]

pub mod recovery;

use auren::log::{LogError, StartAt};
use auren::root::Backends;
use auren::settings::Settings;
use auren::shutdown::Shutdown;
use auren_core::vendors::{oura, whoop};
use futures::StreamExt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const OURA_SECRET: &str = "oura_test_client_secret";
pub const OURA_TOKEN: &str = "oura-verification-token";
pub const WHOOP_SECRET: &str = "whoop_test_client_secret";
pub const PSEUDONYM_KEY: &str = "test-pseudonym-key-0123456789";

pub fn kafka_bootstrap() -> String {
    std::env::var("AUREN_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}
pub fn postgres_admin_url() -> String {
    std::env::var("AUREN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}
pub fn redis_url() -> String {
    std::env::var("AUREN_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

pub fn unique(prefix: &str) -> String {
    let n: u64 = rand::random();
    format!("{prefix}_{n:016x}")
}

#[derive(Clone, Default)]
pub struct Options {
    pub kafka: bool,
    pub postgres: bool,
    pub redis: bool,
    pub max_body_bytes: Option<usize>,
    pub max_concurrent_events: Option<u32>,
    pub log_timeout_ms: Option<u64>,
    /// Use this bootstrap instead of the shared broker.
    pub bootstrap: Option<String>,
    /// Run the bridge in the service, as `auren serve` does.
    pub bridge: bool,
    /// Thresholds file.
    pub biometric_config: Option<PathBuf>,
    /// Leave the switches topic uncreated (Kafka), so publishing fails until a test creates it.
    pub no_switches_topic: bool,
    /// Any other setting, changed last.
    pub settings: Option<fn(&mut Settings)>,
}

/// Creates a fresh database and returns its URL.
pub async fn fresh_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL must run on 127.0.0.1:5432 (scripts/test.sh starts it)");
    let name = unique("auren_test");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    format!("{base}/{name}")
}

/// Creates `topic` through the log port, on whichever log `settings` names.
pub async fn create_topic(settings: &Settings, topic: &str) {
    Backends::new(settings.backends())
        .log()
        .await
        .unwrap()
        .create_topics(&[topic], 3, 1)
        .await
        .expect("the Kafka-wire broker must run (scripts/test.sh starts Tansu)");
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub client: reqwest::Client,
    /// The settings the app runs with: the defaults plus this test's overrides.
    pub args: Settings,
    /// The app's own composition root: the tests read and write through the same ports.
    pub backends: Arc<Backends>,
    pub data_dir: tempfile::TempDir,
    pub topic: String,
    pub state: auren::http::AppState,
    shutdown: Shutdown,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// The defaults plus this test's overrides: private topics, group and database, loopback
/// listeners, fixed secrets.
pub async fn service_args(o: &Options, data_dir: &Path) -> Settings {
    let mut s = Settings::defaults();
    s.http.http_addr = "127.0.0.1:0".parse().unwrap();
    s.metrics.metrics_addr = "127.0.0.1:0".parse().unwrap();
    s.data.data_dir = data_dir.to_path_buf();
    s.log.events_topic = unique("events");
    s.log.switches_topic = unique("switches");
    s.log.dlq_topic = unique("dlq");
    if o.kafka {
        s.log.kafka_bootstrap_servers = Some(o.bootstrap.clone().unwrap_or_else(kafka_bootstrap));
        for t in [&s.log.events_topic, &s.log.switches_topic, &s.log.dlq_topic] {
            if !(o.no_switches_topic && t == &s.log.switches_topic) {
                create_topic(&s, t).await;
            }
        }
    }
    if o.postgres {
        s.store.postgres_url = Some(fresh_database().await);
    }
    s.cache.redis_url = o.redis.then(redis_url);
    s.cache.dedup_ttl_seconds = 3600;
    s.cache.redis_ttl_seconds = 3600;
    s.cache.max_timeseries_entries = 100;
    s.ingest.max_concurrent_events = o.max_concurrent_events.unwrap_or(50);
    s.log.log_timeout_ms = o.log_timeout_ms.unwrap_or(5000);
    s.ingest.max_body_bytes = o.max_body_bytes.unwrap_or(1024 * 1024);
    s.bridge.thresholds.biometric_config = o.biometric_config.clone();
    s.bridge.group = unique("bridge");
    s.bridge.max_users_in_memory = 10_000;
    s.bridge.checkpoints_kept = 3;
    s.secrets.oura_client_secret = Some(OURA_SECRET.into());
    s.secrets.oura_verification_token = Some(OURA_TOKEN.into());
    s.secrets.whoop_client_secret = Some(WHOOP_SECRET.into());
    s.secrets.pseudonym_key = Some(PSEUDONYM_KEY.into());
    s.secrets.admin_token = Some(ADMIN.into());
    s.telemetry.rust_log = std::env::var("AUREN_TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into());
    if let Some(f) = o.settings {
        f(&mut s);
    }
    s
}

/// An `auren` child process whose environment is exactly `settings` (nothing inherited from the
/// test's own environment for any setting).
pub fn auren_command(settings: &Settings) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auren"));
    for (k, v) in settings.to_env() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env_remove("AUREN_CONFIG");
    cmd
}

impl TestApp {
    pub async fn spawn(o: Options) -> TestApp {
        Self::spawn_with(o, |_| {}).await
    }

    /// As [`TestApp::spawn`], with `change` applied to the settings last (it may capture).
    pub async fn spawn_with(o: Options, change: impl FnOnce(&mut Settings)) -> TestApp {
        let data_dir = tempfile::tempdir().unwrap();
        let mut args = service_args(&o, data_dir.path()).await;
        change(&mut args);
        if std::env::var_os("RUST_LOG").is_some() {
            let mut t = args.telemetry.clone();
            t.rust_log = std::env::var("RUST_LOG").unwrap();
            auren::telemetry::init_tracing(&t);
        }
        let backends = Arc::new(Backends::new(args.backends()));
        let service = auren::app::Service::build(&args, backends.clone(), o.bridge)
            .await
            .expect("service builds");
        let state = service.state.clone();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = api.local_addr().unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let shutdown = Shutdown::new();
        let task = tokio::spawn(service.run(api, metrics, shutdown.clone()));
        TestApp {
            addr,
            metrics_addr,
            client: reqwest::Client::new(),
            topic: args.log.events_topic.clone(),
            args,
            backends,
            data_dir,
            state,
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        self.shutdown.trigger();
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn issue_key(&self, user: &str) -> String {
        let store = self.backends.keys().await.unwrap();
        auren::store::issue_key(store.as_ref(), user)
            .await
            .unwrap()
            .0
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url(path))
            .body(body)
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req.send().await.unwrap()
    }

    pub async fn post_oura(&self, body: &str) -> reqwest::Response {
        self.post(
            "/webhooks/oura",
            &oura_headers(OURA_SECRET, &now_secs(), body),
            body.to_string(),
        )
        .await
    }

    pub async fn post_whoop(&self, body: &str) -> reqwest::Response {
        self.post(
            "/webhooks/whoop",
            &whoop_headers(WHOOP_SECRET, &now_millis(), body),
            body.to_string(),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.metrics_addr))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// All events in this app's topic, read back by a real consumer of the configured log.
    pub async fn logged_events(&self) -> Vec<serde_json::Value> {
        self.records(&self.topic).await
    }
}

/// Every record of `topic` through the log port, parsed; a topic never written is empty.
pub async fn read_records(log: &dyn auren::log::EventLog, topic: &str) -> Vec<serde_json::Value> {
    let mut stream = log.read(topic, StartAt::Beginning, false);
    let mut out = Vec::new();
    while let Some(r) = stream.next().await {
        match r {
            // A record that is not JSON (a test's foreign producer) shows as its text.
            Ok(r) => out.push(serde_json::from_slice(&r.value).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&r.value).into_owned())
            })),
            Err(LogError::UnknownTopic(_)) => break,
            Err(e) => panic!("reading {topic}: {e}"),
        }
    }
    out
}
pub fn now_secs() -> String {
    chrono::Utc::now().timestamp().to_string()
}
pub fn now_millis() -> String {
    chrono::Utc::now().timestamp_millis().to_string()
}

pub fn oura_headers(secret: &str, ts: &str, body: &str) -> Vec<(&'static str, String)> {
    oura::signed_headers(secret.as_bytes(), ts, body.as_bytes()).to_vec()
}

pub fn whoop_headers(secret: &str, ts: &str, body: &str) -> Vec<(&'static str, String)> {
    whoop::signed_headers(secret.as_bytes(), ts, body.as_bytes()).to_vec()
}

pub fn oura_body(user: &str) -> String {
    format!(
        r#"{{"event_type":"create","data_type":"sleep","object_id":"{}","event_time":"2024-01-01T08:00:00+00:00","user_id":"{user}"}}"#,
        unique("obj")
    )
}

pub fn whoop_body(trace: &str) -> String {
    format!(
        r#"{{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"{trace}"}}"#
    )
}

pub async fn problem(resp: reqwest::Response) -> (u16, serde_json::Value) {
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "status {status}");
    (status, resp.json().await.unwrap())
}

/// A private Tansu broker, for tests that stop and restart it. Killed on drop.
pub struct Broker {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

pub fn tansu_bin() -> PathBuf {
    std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/auren/tansu-0.6.0-debug/bin/tansu")
        })
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        b.restart();
        b
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = Command::new(tansu_bin())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start Tansu at {}: {e} (scripts/test.sh builds it)",
                    tansu_bin().display()
                )
            });
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Tansu did not start listening");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

pub const ADMIN: &str = "admin-token";

/// Polls `check` until it returns Some, or panics after `secs`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every record of `topic`, parsed, from whichever log `settings` names.
pub async fn records(settings: &Settings, topic: &str) -> Vec<serde_json::Value> {
    let backends = Backends::new(settings.backends());
    read_records(backends.log().await.unwrap().as_ref(), topic).await
}

impl TestApp {
    /// Every record of one of this app's topics.
    pub async fn records(&self, topic: &str) -> Vec<serde_json::Value> {
        read_records(self.backends.log().await.unwrap().as_ref(), topic).await
    }

    /// The first mode switch this app published, waiting up to `secs` for it.
    pub async fn first_switch(&self, secs: u64, what: &str) -> serde_json::Value {
        let topic = &self.args.log.switches_topic;
        eventually(secs, what, || async {
            self.records(topic).await.into_iter().next()
        })
        .await
    }

    pub async fn get_json(&self, path: &str, token: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (
            r.status().as_u16(),
            r.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// HealthKit push of (type, value, RFC 3339 time) samples for `user`.
    pub async fn push(
        &self,
        key: &str,
        user: &str,
        samples: &[(&str, f64, String)],
    ) -> reqwest::Response {
        let samples: Vec<_> = samples
            .iter()
            .map(|(t, v, ts)| serde_json::json!({"type": t, "value": v, "timestamp": ts, "source": "Apple Watch"}))
            .collect();
        let body = serde_json::json!({"user_id": user, "samples": samples}).to_string();
        self.post(
            "/webhooks/healthkit",
            &[("authorization", format!("Bearer {key}"))],
            body,
        )
        .await
    }
}

/// A minute-by-minute heart rate at rest above 100 bpm: acute stress.
pub fn stress_episode(
    start: chrono::DateTime<chrono::Utc>,
    minutes: i64,
) -> Vec<(&'static str, f64, String)> {
    (0..minutes)
        .map(|i| {
            (
                "heartRate",
                112.0,
                (start + chrono::Duration::minutes(i)).to_rfc3339(),
            )
        })
        .collect()
}

/// The value of one series (`name{labels}`) in Prometheus text, 0 when absent. Metrics are
/// process-global, so tests that share a binary assert lower bounds on shared series.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A client that shows redirects instead of following them (the OAuth2 flows).
pub fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A user's vendor connections, as the admin sees them.
pub async fn connections(app: &TestApp, user: &str) -> Vec<serde_json::Value> {
    let (status, body) = app
        .get_json(&format!("/users/{user}/connections"), ADMIN)
        .await;
    assert_eq!(status, 200, "{body}");
    body["connections"].as_array().unwrap().clone()
}
