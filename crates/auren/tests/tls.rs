//! TLS against real servers on 127.0.0.1: PostgreSQL serving the test certificate (sslmode up to
//! verify-full, right and wrong CA, pool sizes), the API listener over HTTPS (certificate reload,
//! a stalled or plaintext handshake), Redis over `rediss://`, and the Kafka client's SSL and
//! SASL_SSL settings reaching a TLS handshake (`openssl s_server`; no TLS broker here).
//! `scripts/test.sh` makes the certificates (`AUREN_TEST_TLS_DIR`), switches PostgreSQL's TLS on
//! and starts the TLS Redis (`AUREN_TEST_REDIS_TLS`).

mod common;

use auren::settings::Settings;
use auren::store::{PgOptions, PgStore, StoreError};
use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn tls_dir() -> PathBuf {
    let dir = std::env::var_os("AUREN_TEST_TLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/auren/tls"));
    assert!(
        dir.join("server2.pem").exists(),
        "no test certificates in {} (scripts/test.sh makes them)",
        dir.display()
    );
    dir
}

fn file(name: &str) -> PathBuf {
    tls_dir().join(name)
}

fn with_query(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

/// Whether the pool's connection is encrypted, and with which protocol, as the server sees it.
async fn server_side_tls(store: &PgStore) -> (bool, Option<String>) {
    sqlx::query_as("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn postgres_sslmode_require_encrypts_without_verifying() {
    let url = with_query(&fresh_database().await, "sslmode=require");
    let store = PgStore::connect(&url).await.unwrap();
    assert!(server_side_tls(&store).await.0);
}

#[tokio::test]
async fn postgres_verify_full_with_the_ca_from_the_setting_or_the_url() {
    let db = fresh_database().await;
    // The CA as a setting (AUREN_POSTGRES_CA_FILE).
    let store = PgStore::connect_with(
        &with_query(&db, "sslmode=verify-full"),
        &PgOptions {
            ca_file: Some(file("ca.pem")),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (ssl, version) = server_side_tls(&store).await;
    assert!(ssl);
    assert_eq!(version.as_deref(), Some("TLSv1.3"));
    // The CA in the URL, as libpq takes it.
    let url = with_query(
        &db,
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            file("ca.pem").display()
        ),
    );
    let store = PgStore::connect(&url).await.unwrap();
    assert!(server_side_tls(&store).await.0);
}

#[tokio::test]
async fn postgres_verify_full_with_a_wrong_ca_fails_saying_why() {
    let db = fresh_database().await;
    for mode in ["verify-full", "verify-ca"] {
        let err = PgStore::connect_with(
            &with_query(&db, &format!("sslmode={mode}")),
            &PgOptions {
                ca_file: Some(file("other-ca.pem")),
                ..Default::default()
            },
        )
        .await
        .err()
        .expect("a certificate from another CA must be refused");
        assert!(matches!(err, StoreError::PostgresTls(_)), "{err:?}");
        let text = format!("{:#}", anyhow::Error::from(err));
        assert!(text.contains("TLS to PostgreSQL failed"), "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");
    }
    // Through the settings, as `auren migrate` and `serve` open it: the error names the cause.
    let mut s = Settings::defaults();
    s.store.postgres_url = Some(with_query(&db, "sslmode=verify-full"));
    s.store.postgres_ca_file = Some(file("other-ca.pem"));
    let err = auren::store::open(&s.data, &s.store)
        .await
        .err()
        .expect("refused");
    let text = format!("{err:#}");
    assert!(
        text.contains("connecting to PostgreSQL") && text.contains("UnknownIssuer"),
        "{text}"
    );
}

#[tokio::test]
async fn postgres_pool_sizes_are_applied() {
    let url = fresh_database().await;
    let db = url.rsplit_once('/').unwrap().1.to_string();
    let store = PgStore::connect_with(
        &url,
        &PgOptions {
            min_connections: 3,
            max_connections: 4,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // The minimum is kept open even when nothing is asked.
    let admin = sqlx::PgPool::connect(&postgres_admin_url()).await.unwrap();
    let open = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(&db)
            .fetch_one(&admin)
            .await
            .unwrap()
    };
    let start = Instant::now();
    while open().await < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "min size not kept"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The maximum: four are lent, the fifth waits out the acquire timeout.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(store.pool().acquire().await.unwrap());
    }
    assert_eq!(open().await, 4);
    let fifth = store.pool().acquire().await;
    assert!(matches!(fifth, Err(sqlx::Error::PoolTimedOut)), "{fifth:?}");
}

/// An HTTPS client trusting `ca`: the status line of `GET /health` and the leaf it was served.
async fn https_health(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> std::io::Result<(String, CertificateDer<'static>)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in auren::tls::read_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(auren::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    tls.read_to_end(&mut out).await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let text = String::from_utf8_lossy(&out);
    Ok((text.lines().next().unwrap_or("").to_string(), leaf))
}

struct HttpsApp {
    addr: std::net::SocketAddr,
    shutdown: auren::shutdown::Shutdown,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

async fn spawn_https(cert: &Path, key: &Path, tweak: impl FnOnce(&mut Settings)) -> HttpsApp {
    let data = tempfile::tempdir().unwrap();
    let mut s = service_args(&Options::default(), data.path()).await;
    s.http.tls_cert_file = Some(cert.to_path_buf());
    s.http.tls_key_file = Some(key.to_path_buf());
    tweak(&mut s);
    let backends = Arc::new(auren::root::Backends::new(s.backends()));
    let service = auren::app::Service::build(&s, backends, false)
        .await
        .unwrap();
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = api.local_addr().unwrap();
    let shutdown = auren::shutdown::Shutdown::new();
    let task = tokio::spawn(service.run(api, metrics, shutdown.clone()));
    HttpsApp {
        addr,
        shutdown,
        task,
        _data: data,
    }
}

impl HttpsApp {
    async fn stop(self) {
        self.shutdown.trigger();
        self.task.await.unwrap().unwrap();
    }
}

fn leaf(path: &Path) -> CertificateDer<'static> {
    auren::tls::read_certs(path).unwrap().remove(0)
}

/// Replaces `to` with `from` in one rename, as a certificate manager would.
fn swap_in(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[tokio::test]
async fn the_listener_serves_https_and_reloads_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(file("server.pem"), &cert).unwrap();
    std::fs::copy(file("server.key"), &key).unwrap();
    let app = spawn_https(&cert, &key, |_| {}).await;
    let (status, served) = https_health(app.addr, &file("ca.pem")).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(served, leaf(&file("server.pem")));
    // A client that does not trust our CA is refused by its own verifier.
    assert!(https_health(app.addr, &file("other-ca.pem")).await.is_err());

    // A half-done swap (new certificate, old key) is refused and the old pair stays in force.
    swap_in(&file("server2.pem"), &cert);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, served) = https_health(app.addr, &file("ca.pem")).await.unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(served, leaf(&file("server.pem")));
    // Then the key follows, and new connections get the new certificate.
    swap_in(&file("server2.key"), &key);
    let start = Instant::now();
    loop {
        let (status, served) = https_health(app.addr, &file("ca.pem")).await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK");
        if served == leaf(&file("server2.pem")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the new certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn a_stalled_or_plaintext_handshake_does_not_block_others() {
    let app = spawn_https(&file("server.pem"), &file("server.key"), |s| {
        s.http.header_read_timeout_ms = 600;
        s.http.max_connections = 2;
    })
    .await;
    // Plain HTTP on the TLS port: refused at once, no slot kept.
    let mut plain = TcpStream::connect(app.addr).await.unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), plain.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "a plaintext client kept its connection");
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // Two clients connect and say nothing: every slot is taken, until the handshake deadline.
    let silent: Vec<TcpStream> =
        futures::future::join_all((0..2).map(|_| TcpStream::connect(app.addr)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let (status, _) = tokio::time::timeout(
        Duration::from_secs(5),
        https_health(app.addr, &file("ca.pem")),
    )
    .await
    .expect("a stalled handshake held its slot")
    .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    // The silent ones were closed by the server.
    for mut s in silent {
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "{r:?}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_certificate_without_its_key_or_a_mismatched_pair_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let mut s = service_args(&Options::default(), data.path()).await;
    s.http.tls_cert_file = Some(file("server.pem"));
    let backends = Arc::new(auren::root::Backends::new(s.backends()));
    let err = auren::app::Service::build(&s, backends.clone(), false)
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("AUREN_TLS_KEY"), "{err:#}");
    s.http.tls_key_file = Some(file("server2.key"));
    let err = auren::app::Service::build(&s, backends, false)
        .await
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("does not go with the key"),
        "{err:#}"
    );
}

fn redis_tls_url() -> String {
    std::env::var("AUREN_TEST_REDIS_TLS").unwrap_or_else(|_| "rediss://127.0.0.1:16380/0".into())
}

#[tokio::test]
async fn the_cache_works_over_rediss_with_the_ca_and_refuses_another_ca() {
    use auren::cache::redis::{RedisDedup, RedisStateCache};
    use auren::cache::{Claim, Dedup, StateCache};
    let ca = file("ca.pem");
    let d = RedisDedup::connect(&redis_tls_url(), Some(&ca), 60, Duration::from_secs(1))
        .await
        .expect("the TLS Redis must run (scripts/test.sh starts it)");
    d.check().await.unwrap();
    let id = unique("tls-event");
    assert_eq!(
        d.claim(std::slice::from_ref(&id)).await.unwrap(),
        [Claim::Claimed]
    );
    d.confirm(std::slice::from_ref(&id)).await.unwrap();
    assert_eq!(
        d.claim(std::slice::from_ref(&id)).await.unwrap(),
        [Claim::Done]
    );
    let c = RedisStateCache::connect(&redis_tls_url(), Some(&ca), 60, 5)
        .await
        .unwrap();
    assert!(c.state(&unique("nobody")).await.unwrap().is_none());

    let err = RedisDedup::connect(
        &redis_tls_url(),
        Some(&file("other-ca.pem")),
        60,
        Duration::from_secs(1),
    )
    .await
    .err()
    .expect("a server certificate from another CA must be refused");
    let text = format!("{err:#}");
    assert!(text.contains("UnknownIssuer"), "{text}");
}

/// `openssl s_server` on a free port with the test server certificate: a TLS endpoint that
/// prints what the client sends once the handshake is done.
struct TlsProbe {
    child: Child,
    port: u16,
    out: Arc<Mutex<String>>,
}

impl TlsProbe {
    fn start() -> TlsProbe {
        Self::start_with(&[])
    }

    /// One that asks for a client certificate signed by the test CA and refuses a client without.
    fn requiring_client_certificates() -> TlsProbe {
        let ca = file("ca.pem");
        Self::start_with(&[
            "-Verify",
            "1",
            "-verify_return_error",
            "-CAfile",
            ca.to_str().unwrap(),
        ])
    }

    fn start_with(extra: &[&str]) -> TlsProbe {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-cert")
            .arg(file("server.pem"))
            .arg("-key")
            .arg(file("server.key"))
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the openssl CLI");
        let out = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let sink = out.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = Vec::new();
            while r.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&line).into_owned();
                if text.starts_with("ACCEPT") {
                    let _ = tx.send(());
                }
                sink.lock().unwrap().push_str(&text);
                line.clear();
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("openssl s_server did not start");
        TlsProbe { child, port, out }
    }

    fn output(&self) -> String {
        self.out.lock().unwrap().clone()
    }

    /// Whether `text` arrives within a few seconds (the client may still be sending).
    async fn saw(&self, text: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.output().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for TlsProbe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kafka_settings(port: u16, tweak: impl FnOnce(&mut auren::settings::LogSettings)) -> Settings {
    let mut s = Settings::defaults();
    s.log.kafka_bootstrap_servers = Some(format!("127.0.0.1:{port}"));
    s.log.log_timeout_ms = 2000;
    tweak(&mut s.log);
    s
}

/// The result of the log's start-up check against `settings`.
async fn kafka_check(settings: &Settings) -> Result<(), String> {
    let dedup: Arc<dyn auren::cache::Dedup> = Arc::new(auren::cache::memory::MemoryDedup::new(
        Duration::from_secs(60),
        Duration::from_secs(5),
        100,
    ));
    let log =
        auren::log::open(&settings.data, &settings.log, dedup).map_err(|e| format!("{e:#}"))?;
    log.check()
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))
}

#[tokio::test]
async fn the_kafka_client_speaks_tls_with_the_ca_and_the_extra_properties() {
    let probe = TlsProbe::start();
    let s = kafka_settings(probe.port, |l| {
        l.kafka_security_protocol = Some("ssl".into());
        l.kafka_ssl_ca_file = Some(file("ca.pem"));
        l.kafka_properties = Some("client.id=auren-tls-probe; socket.keepalive.enable=true".into());
    });
    // No broker behind the probe: the check fails, after the handshake, with Kafka bytes
    // (carrying the client id from AUREN_KAFKA_PROPERTIES) received in clear by the server.
    let _ = kafka_check(&s).await;
    assert!(
        probe.saw("auren-tls-probe").await,
        "s_server saw: {}",
        probe.output()
    );
}

#[tokio::test]
async fn the_kafka_client_refuses_a_broker_certificate_from_another_ca() {
    let probe = TlsProbe::start();
    let s = kafka_settings(probe.port, |l| {
        l.kafka_security_protocol = Some("SSL".into());
        l.kafka_ssl_ca_file = Some(file("other-ca.pem"));
    });
    let err = kafka_check(&s).await.unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
    assert!(!probe.output().contains("rdkafka"), "{}", probe.output());
}

#[tokio::test]
async fn sasl_ssl_with_plain_and_scram_reaches_the_handshake() {
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let probe = TlsProbe::start();
        let s = kafka_settings(probe.port, |l| {
            l.kafka_security_protocol = Some("sasl_ssl".into());
            l.kafka_sasl_mechanism = Some(mechanism.into());
            l.kafka_sasl_username = Some("auren".into());
            l.kafka_sasl_password = Some("s3cret".into());
            l.kafka_ssl_ca_file = Some(file("ca.pem"));
            l.kafka_properties = Some(format!("client.id=auren-{mechanism}"));
        });
        let _ = kafka_check(&s).await;
        assert!(
            probe.saw(&format!("auren-{mechanism}")).await,
            "{mechanism}: s_server saw: {}",
            probe.output()
        );
    }
}

#[tokio::test]
async fn a_malformed_or_unknown_kafka_property_is_refused_by_name() {
    let s = kafka_settings(1, |l| l.kafka_properties = Some("no-equals-sign".into()));
    let err = kafka_check(&s).await.unwrap_err();
    assert!(
        err.contains("`no-equals-sign` is not `name=value`"),
        "{err}"
    );
    let s = kafka_settings(1, |l| {
        l.kafka_properties = Some("ssl.no.such.thing=1".into())
    });
    let err = kafka_check(&s).await.unwrap_err();
    assert!(err.contains("ssl.no.such.thing"), "{err}");
}

#[tokio::test]
async fn the_kafka_client_presents_its_certificate_for_mutual_tls() {
    let probe = TlsProbe::requiring_client_certificates();
    let s = kafka_settings(probe.port, |l| {
        l.kafka_security_protocol = Some("ssl".into());
        l.kafka_ssl_ca_file = Some(file("ca.pem"));
        l.kafka_ssl_cert_file = Some(file("client.pem"));
        l.kafka_ssl_key_file = Some(file("client.key"));
        l.kafka_properties = Some("client.id=auren-mtls".into());
    });
    let _ = kafka_check(&s).await;
    assert!(
        probe.saw("auren-mtls").await,
        "s_server saw: {}",
        probe.output()
    );
    drop(probe);
    // Without a certificate the server ends the handshake (TLS 1.3 alert `certificate
    // required`), nothing reaches it, and the check names the alert.
    let probe = TlsProbe::requiring_client_certificates();
    let s = kafka_settings(probe.port, |l| {
        l.kafka_security_protocol = Some("ssl".into());
        l.kafka_ssl_ca_file = Some(file("ca.pem"));
        l.kafka_properties = Some("client.id=auren-no-cert".into());
    });
    let err = kafka_check(&s).await.unwrap_err();
    assert!(!probe.saw("auren-no-cert").await, "{}", probe.output());
    assert!(err.contains("certificate required"), "{err}");
}

/// The binary, configured by its environment variables alone, as an operator would.
#[tokio::test]
async fn auren_migrate_verifies_postgres_with_the_ca_variable() {
    let db = with_query(&fresh_database().await, "sslmode=verify-full");
    let run = |ca: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_auren"))
            .arg("migrate")
            .env("POSTGRES_URL", &db)
            .env("AUREN_POSTGRES_CA_FILE", file(ca))
            .env("PG_POOL_MIN_SIZE", "1")
            .env("PG_POOL_MAX_SIZE", "2")
            .env("RUST_LOG", "warn")
            .env_remove("AUREN_CONFIG")
            .output()
            .unwrap()
    };
    let ok = run("ca.pem");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let refused = run("other-ca.pem");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("TLS to PostgreSQL failed") && stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
}

/// A private Tansu that advertises `advertised` (the TLS port in front of it), plain TCP behind.
struct BrokerBehindTls {
    child: Child,
    plain_port: u16,
    _dir: tempfile::TempDir,
}

impl BrokerBehindTls {
    fn start(advertised: u16) -> BrokerBehindTls {
        let dir = tempfile::tempdir().unwrap();
        let plain_port = free_port();
        let mut child = Command::new(tansu_bin())
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://127.0.0.1:{plain_port}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://127.0.0.1:{advertised}"))
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Tansu at {}: {e}", tansu_bin().display()));
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", plain_port)).is_ok() {
                return BrokerBehindTls {
                    child,
                    plain_port,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("Tansu did not start listening");
    }
}

impl Drop for BrokerBehindTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Terminates TLS on `listener` with the test server certificate (our own listener's rustls
/// config) and forwards the plaintext to `backend`.
fn tls_proxy(listener: tokio::net::TcpListener, backend: u16) -> tokio::task::JoinHandle<()> {
    let cert = auren::tls::ReloadingCert::load(&file("server.pem"), &file("server.key")).unwrap();
    let mut config = (*cert.server_config().unwrap()).clone();
    config.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    })
}

/// The whole path over TLS with a real Kafka-wire broker: topic creation, an idempotent append
/// acknowledged by the broker, and reading it back, every connection through the TLS port.
#[tokio::test]
async fn the_event_log_works_over_tls_with_a_real_broker() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tls_port = listener.local_addr().unwrap().port();
    let broker = BrokerBehindTls::start(tls_port);
    let proxy = tls_proxy(listener, broker.plain_port);
    let s = kafka_settings(tls_port, |l| {
        l.kafka_security_protocol = Some("ssl".into());
        l.kafka_ssl_ca_file = Some(file("ca.pem"));
        l.log_timeout_ms = 10_000;
    });
    let topic = unique("tls-events");
    let backends = auren::root::Backends::new(s.backends());
    let log = backends.log().await.unwrap();
    log.check().await.expect("the broker answers over TLS");
    log.create_topics(&[&topic], 1, 1).await.unwrap();
    let appended = log
        .append(
            &topic,
            vec![auren::log::Record {
                key: "u_tls".into(),
                event_id: unique("evt"),
                value: br#"{"over":"tls"}"#.to_vec(),
            }],
        )
        .await
        .unwrap();
    assert!(
        matches!(appended[0], auren::log::Appended::Stored { .. }),
        "{appended:?}"
    );
    let records = read_records(log.as_ref(), &topic).await;
    assert_eq!(records, vec![serde_json::json!({"over": "tls"})]);
    // The same broker refuses the wrong CA at the handshake.
    let wrong = kafka_settings(tls_port, |l| {
        l.kafka_security_protocol = Some("ssl".into());
        l.kafka_ssl_ca_file = Some(file("other-ca.pem"));
    });
    let err = kafka_check(&wrong).await.unwrap_err();
    assert!(err.contains("certificate verify failed"), "{err}");
    backends.close().await;
    proxy.abort();
}
