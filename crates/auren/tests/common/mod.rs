//! Test harness: spawns the real service (in-process or as the `auren` binary) against real
//! backends on 127.0.0.1: a Tansu broker, PostgreSQL and Redis, started by `scripts/test.sh`.
//! Every test gets its own topic, database and data directory, so tests run in parallel.
#![allow(dead_code)]

use auren::config::{BackendArgs, SecretArgs, ServiceArgs};
use auren_core::vendors::{oura, whoop};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

pub async fn create_topic(bootstrap: &str, topic: &str) {
    auren::log::kafka::create_topics(bootstrap, &[topic], 3, 1)
        .await
        .expect("the Kafka-wire broker must run (scripts/test.sh starts Tansu)");
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub client: reqwest::Client,
    pub args: ServiceArgs,
    pub data_dir: tempfile::TempDir,
    pub topic: String,
    pub state: auren::http::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn service_args(o: &Options, data_dir: &Path) -> ServiceArgs {
    let topic = unique("events");
    let switches = unique("switches");
    let dlq = unique("dlq");
    let bootstrap = o.bootstrap.clone().unwrap_or_else(kafka_bootstrap);
    if o.kafka {
        for t in [&topic, &switches, &dlq] {
            if !(o.no_switches_topic && t == &switches) {
                create_topic(&bootstrap, t).await;
            }
        }
    }
    ServiceArgs {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        metrics_addr: "127.0.0.1:0".parse().unwrap(),
        backends: BackendArgs {
            data_dir: data_dir.to_path_buf(),
            kafka_bootstrap_servers: o.kafka.then_some(bootstrap),
            postgres_url: if o.postgres {
                Some(fresh_database().await)
            } else {
                None
            },
            redis_url: o.redis.then(redis_url),
            events_topic: topic,
            embedded_partitions: 3,
            dedup_ttl_seconds: 3600,
        },
        max_concurrent_events: o.max_concurrent_events.unwrap_or(50),
        admission_wait_ms: 250,
        log_timeout_ms: o.log_timeout_ms.unwrap_or(5000),
        max_body_bytes: o.max_body_bytes.unwrap_or(1024 * 1024),
        biometric_config: o.biometric_config.clone(),
        bridge: auren::bridge::BridgeArgs {
            group: unique("bridge"),
            max_batch: 500,
            max_users_in_memory: 10_000,
            redis_ttl_seconds: 3600,
            max_timeseries_entries: 100,
            checkpoints_kept: 3,
            session_timeout_ms: 6000,
            switches_topic: switches,
            dlq_topic: dlq,
        },
        no_bridge: !o.bridge,
        secrets: SecretArgs {
            oura_client_secret: Some(OURA_SECRET.into()),
            oura_verification_token: Some(OURA_TOKEN.into()),
            whoop_client_secret: Some(WHOOP_SECRET.into()),
            pseudonym_key: Some(PSEUDONYM_KEY.into()),
            dev_mode: false,
            admin_token: Some("admin-token".into()),
        },
    }
}

impl TestApp {
    pub async fn spawn(o: Options) -> TestApp {
        if std::env::var_os("RUST_LOG").is_some() {
            auren::telemetry::init_tracing();
        }
        let data_dir = tempfile::tempdir().unwrap();
        let args = service_args(&o, data_dir.path()).await;
        let service = auren::app::Service::build(&args)
            .await
            .expect("service builds");
        let state = service.state.clone();
        let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = api.local_addr().unwrap();
        let metrics_addr = metrics.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(service.run(api, metrics, async {
            let _ = rx.await;
        }));
        TestApp {
            addr,
            metrics_addr,
            client: reqwest::Client::new(),
            topic: args.backends.events_topic.clone(),
            args,
            data_dir,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }

    pub async fn issue_key(&self, user: &str) -> String {
        let store = auren::app::key_store(&self.args.backends).await.unwrap();
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
    pub fn logged_events(&self) -> Vec<serde_json::Value> {
        read_log(&self.args.backends)
    }
}

pub fn read_log(b: &BackendArgs) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    if let Some(servers) = &b.kafka_bootstrap_servers {
        auren::log::kafka::read(servers, &b.events_topic, true, false, None, |r| {
            out.push(serde_json::from_slice(&r.value)?);
            Ok(())
        })
        .unwrap();
    } else {
        let Ok(reader) = auren::log::embedded::EmbeddedReader::open(&b.data_dir) else {
            return out;
        };
        let parts = reader.partitions(&b.events_topic).unwrap().unwrap_or(0);
        for p in 0..parts as i32 {
            for r in reader.fetch(&b.events_topic, p, 0, 1_000_000).unwrap() {
                out.push(serde_json::from_slice(&r.value).unwrap());
            }
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

/// `read_topic` off the async runtime: log readers block.
pub async fn records(b: &BackendArgs, topic: &str) -> Vec<serde_json::Value> {
    let (b, topic) = (b.clone(), topic.to_string());
    tokio::task::spawn_blocking(move || read_topic(&b, &topic))
        .await
        .unwrap()
}

/// Every record of `topic`, parsed, from whichever log `b` names.
pub fn read_topic(b: &BackendArgs, topic: &str) -> Vec<serde_json::Value> {
    let mut b = b.clone();
    b.events_topic = topic.to_string();
    read_log(&b)
}

impl TestApp {
    /// Every record of one of this app's topics.
    pub async fn records(&self, topic: &str) -> Vec<serde_json::Value> {
        records(&self.args.backends, topic).await
    }

    /// The first mode switch this app published, waiting up to `secs` for it.
    pub async fn first_switch(&self, secs: u64, what: &str) -> serde_json::Value {
        let topic = &self.args.bridge.switches_topic;
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
