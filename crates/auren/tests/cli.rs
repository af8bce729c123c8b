//! The `auren` binary's scriptable contract: the key alone on the last stdout line, topic
//! creation on both backends, and `log read` printing JSON lines.

mod common;
use common::*;
use std::process::Command;

fn auren(args: &[&str], envs: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auren"));
    cmd.args(args)
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("POSTGRES_URL")
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[tokio::test]
async fn keys_topics_and_log_read_on_the_embedded_log() {
    let app = TestApp::spawn(Options::default()).await;
    let dir = app.data_dir.path().to_str().unwrap().to_string();
    let env = [
        ("AUREN_DATA_DIR", dir.as_str()),
        ("AUREN_EVENTS_TOPIC", app.topic.as_str()),
    ];

    let (ok, stdout, _) = auren(&["keys", "create", "--user", "cli-user"], &env);
    assert!(ok);
    let key = stdout.lines().last().unwrap();
    assert!(
        key.starts_with("auren_hk_") && !key.contains(' '),
        "{stdout:?}"
    );
    assert_eq!(stdout.lines().count(), 1, "the key alone on stdout");
    // The key works, and only for its user.
    let r = app
        .push(
            key,
            "cli-user",
            &[("heartRate", 70.0, "2025-01-27T10:30:00Z".into())],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        app.push(
            key,
            "someone",
            &[("heartRate", 70.0, "2025-01-27T10:30:00Z".into())]
        )
        .await
        .status(),
        403
    );

    let (ok, stdout, _) = auren(
        &["log", "read", "--from-beginning", "--topic", &app.topic],
        &env,
    );
    assert!(ok);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"]["payload"]["metric"], "heart_rate");
    assert!(lines[0]["key"].as_str().unwrap().starts_with("u_"));
    assert!(lines[0]["offset"].is_i64());

    // The configured topics: the events topic the push already wrote, and the two outputs.
    let (ok, stdout, _) = auren(&["topics", "create", "--partitions", "4"], &env);
    assert!(ok);
    assert_eq!(
        stdout,
        format!(
            "{}\texists\nbiometric-events.dlq\tcreated\ncognitive-mode-switches\tcreated\n",
            app.topic
        )
    );
    let (_, again, _) = auren(&["topics", "create"], &env);
    assert!(again.contains("cognitive-mode-switches\texists"), "{again}");

    for (user, why) in [
        (" ", "white space"),
        ("", "empty"),
        ("a/b", "path separator"),
        ("..", "dot segment"),
    ] {
        let (ok, _, stderr) = auren(&["keys", "create", "--user", user], &env);
        assert!(
            !ok && stderr.contains("--user") && stderr.contains(why),
            "{stderr}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn topics_create_and_log_read_on_kafka() {
    let bootstrap = kafka_bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let (ok, stdout, stderr) = auren(
        &[
            "topics",
            "create",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("AUREN_DATA_DIR", dir.path().to_str().unwrap()),
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let app = TestApp::spawn(Options {
        kafka: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        app.post_whoop(&whoop_body(&unique("trace"))).await.status(),
        200
    );
    let (ok, stdout, stderr) = auren(
        &[
            "log",
            "read",
            "--from-beginning",
            "--limit",
            "5",
            "--topic",
            &app.topic,
        ],
        &[("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str())],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["event"]["vendor"], "whoop");
    app.stop().await;
}

/// `config show`: flags over environment over the settings file over defaults, and no secret
/// printed, whichever way it was given.
#[test]
fn config_show_prints_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auren.yaml");
    std::fs::write(
        &file,
        "log:\n  events_topic: from-file\n  dlq_topic: dlq-from-file\nsecrets:\n  whoop_client_secret: file-s3cret\nstore:\n  postgres_url: postgres://auren:pg-s3cret@db:5432/auren\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = auren(
        &[
            "config",
            "show",
            "--config",
            file.to_str().unwrap(),
            "--dlq-topic",
            "dlq-from-flag",
        ],
        &[
            ("AUREN_EVENTS_TOPIC", "from-env"),
            ("OURA_CLIENT_SECRET", "env-s3cret"),
            ("AUREN_ADMIN_TOKEN", "admin-s3cret"),
        ],
    );
    assert!(ok, "{stderr}");
    for secret in ["file-s3cret", "pg-s3cret", "env-s3cret", "admin-s3cret"] {
        assert!(!stdout.contains(secret), "{secret} printed: {stdout}");
    }
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["log"]["events_topic"], "from-env");
    assert_eq!(v["log"]["dlq_topic"], "dlq-from-flag");
    assert_eq!(v["log"]["switches_topic"], "cognitive-mode-switches");
    assert_eq!(v["secrets"]["whoop_client_secret"], "<redacted>");
    assert_eq!(v["secrets"]["oura_client_secret"], "<redacted>");
    assert!(v["store"]["postgres_url"]
        .as_str()
        .unwrap()
        .starts_with("postgres://auren:"));

    std::fs::write(&file, "log:\n  event_topic: typo\n").unwrap();
    let (ok, _, stderr) = auren(&["config", "show", "--config", file.to_str().unwrap()], &[]);
    assert!(!ok && stderr.contains("log.event_topic"), "{stderr}");
}

/// The README's PostgreSQL step on a database that does not exist yet: `auren migrate` creates
/// it, and says nothing of PostgreSQL's notices.
#[tokio::test]
async fn migrate_creates_a_missing_database_quietly() {
    let admin = postgres_admin_url();
    let name = unique("auren_fresh");
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let (ok, stdout, stderr) = auren(
        &["migrate"],
        &[("POSTGRES_URL", url.as_str()), ("RUST_LOG", "info")],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("migrations applied (postgres)"), "{stdout}");
    // Again, on the now existing database: no "already exists, skipping" notice.
    let (ok, _, stderr) = auren(
        &["migrate"],
        &[("POSTGRES_URL", url.as_str()), ("RUST_LOG", "info")],
    );
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("already exists"), "{stderr}");
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("the database exists");
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'log_identity'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 1);
}

#[tokio::test]
async fn log_read_of_a_topic_never_written_is_empty_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AUREN_DATA_DIR", dir.path().to_str().unwrap())];
    let (ok, stdout, stderr) = auren(
        &[
            "log",
            "read",
            "--from-beginning",
            "--topic",
            "biometric-events.dlq",
        ],
        &env,
    );
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("nothing was ever written"), "{stderr}");
    // Without --from-beginning it waits for new records, and says so on stderr.
    let mut child = Command::new(env!("CARGO_BIN_EXE_auren"))
        .args(["log", "read"])
        .env("AUREN_DATA_DIR", dir.path())
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut first = String::new();
    let mut buf = [0u8; 256];
    use std::io::Read;
    while !first.contains('\n') {
        let n = stderr.read(&mut buf).unwrap();
        assert!(n > 0, "log read ended without saying it waits");
        first.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(first.contains("waiting for new records"), "{first}");
    assert!(first.contains("--from-beginning"), "{first}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn completions_for_each_shell_name_the_commands() {
    for shell in ["bash", "zsh", "fish"] {
        let (ok, stdout, stderr) = auren(&["completions", shell], &[]);
        assert!(ok, "{shell}: {stderr}");
        for word in ["serve", "bridge", "migrate", "adopt"] {
            assert!(stdout.contains(word), "{shell} completions lack {word}");
        }
    }
    let (ok, _, stderr) = auren(&["completions", "cmd.exe"], &[]);
    assert!(!ok && stderr.contains("invalid value"), "{stderr}");
}

/// `keys list` shows ids, never keys; `keys revoke` takes an id, stops the key, and is harmless
/// twice.
#[test]
fn keys_list_and_revoke_by_id() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("AUREN_DATA_DIR", dir.path().to_str().unwrap())];
    let (ok, key, stderr) = auren(&["keys", "create", "--user", "cli-user"], &env);
    assert!(ok, "{stderr}");
    let key = key.trim();
    auren(&["keys", "create", "--user", "someone-else"], &env);
    let id = auren::store::key_id(&auren::store::key_hash(key));
    let list = || {
        let (ok, stdout, stderr) = auren(&["keys", "list", "--user", "cli-user"], &env);
        assert!(ok, "{stderr}");
        assert!(!stdout.contains(key), "{stdout}");
        stdout
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let rows = list();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0], ["key_id", "created_at", "revoked_at"]);
    assert_eq!(
        (rows[1][0].as_str(), rows[1][2].as_str()),
        (id.as_str(), "-")
    );
    chrono::DateTime::parse_from_rfc3339(&rows[1][1]).unwrap();

    let (ok, stdout, stderr) = auren(&["keys", "revoke", &id], &env);
    assert!(
        ok && stdout.starts_with(&format!("revoked {id} at ")),
        "{stdout}{stderr}"
    );
    let rows = list();
    chrono::DateTime::parse_from_rfc3339(&rows[1][2]).unwrap();
    let (ok, stdout, _) = auren(&["keys", "revoke", &id], &env);
    assert!(ok && stdout.contains("already revoked"), "{stdout}");

    let (ok, _, stderr) = auren(&["keys", "revoke", "0000000000000000"], &env);
    assert!(!ok && stderr.contains("no key has the id"), "{stderr}");
    let (ok, _, stderr) = auren(&["keys", "revoke", key], &env);
    assert!(!ok && stderr.contains("KEY_ID must be 16"), "{stderr}");
    assert!(!stderr.contains(key), "the key is not echoed: {stderr}");
}

/// `--help`: every flag says what it is for, and `keys create`, `migrate` and `log read` list
/// only the flags that concern them (a shared group's other flags are accepted, not listed).
#[test]
fn every_flag_is_described_and_commands_list_only_their_own() {
    let mut cmd = auren::cli::command();
    cmd.build();
    fn walk(c: &clap::Command, path: &str, bare: &mut Vec<String>) {
        for a in c.get_arguments().filter(|a| !a.is_hide_set()) {
            let help = a.get_help().or(a.get_long_help()).map(|h| h.to_string());
            if help.is_none_or(|h| h.trim().len() < 5) {
                bare.push(format!("{path} {}", a.get_id()));
            }
        }
        for s in c.get_subcommands() {
            walk(s, &format!("{path} {}", s.get_name()), bare);
        }
    }
    let mut bare = Vec::new();
    walk(&cmd, "auren", &mut bare);
    assert!(bare.is_empty(), "flags without a description: {bare:?}");

    let listed = |path: &[&str]| -> Vec<String> {
        let (ok, stdout, stderr) = auren(&[path, &["--help"]].concat(), &[]);
        assert!(ok, "{stderr}");
        let mut flags: Vec<String> = stdout
            .split_whitespace()
            .filter(|w| w.starts_with("--"))
            .map(|w| w.trim_end_matches(',').to_string())
            .filter(|w| {
                w.len() > 2
                    && w.chars()
                        .skip(2)
                        .all(|c| c.is_ascii_lowercase() || c == '-')
            })
            .collect();
        flags.sort();
        flags.dedup();
        flags
    };
    let common = ["--config", "--help", "--log-filter", "--log-format"];
    // How to reach (and trust) PostgreSQL and Kafka concerns every command that connects.
    let store = [
        "--data-dir",
        "--postgres-url",
        "--postgres-ca-file",
        "--pg-pool-min-size",
        "--pg-pool-max-size",
    ];
    let kafka = [
        "--data-dir",
        "--kafka-bootstrap-servers",
        "--kafka-properties",
        "--kafka-security-protocol",
        "--kafka-sasl-mechanism",
        "--kafka-sasl-username",
        "--kafka-sasl-password",
        "--kafka-ssl-ca-file",
        "--kafka-ssl-cert-file",
        "--kafka-ssl-key-file",
        "--kafka-ssl-key-password",
    ];
    let log_read = [
        "--from-beginning",
        "--limit",
        "--follow",
        "--topic",
        "--events-topic",
    ];
    for (path, own) in [
        (&["keys", "create"][..], [&["--user"][..], &store].concat()),
        (&["migrate"][..], store.to_vec()),
        (&["log", "read"][..], [&log_read[..], &kafka].concat()),
    ] {
        let mut expected: Vec<String> = common.iter().chain(&own).map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(listed(path), expected, "auren {}", path.join(" "));
    }
    // The log's other flags still parse (a shared environment stays valid), unlisted.
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, stderr) = auren(
        &[
            "log",
            "read",
            "--from-beginning",
            "--dlq-topic",
            "x",
            "--log-timeout-ms",
            "1",
        ],
        &[("AUREN_DATA_DIR", dir.path().to_str().unwrap())],
    );
    assert!(ok, "{stderr}");
    // Every variable the README lists has a flag: the log filter and format too.
    let serve = listed(&["serve"]);
    for flag in [
        "--log-filter",
        "--log-format",
        "--otlp-endpoint",
        "--key-cache-ttl-seconds",
    ] {
        assert!(serve.contains(&flag.to_string()), "serve lacks {flag}");
    }
}

/// A bad value names the flag and, when it came from there, the environment variable.
#[test]
fn a_bad_address_names_the_variable_it_came_from() {
    let (ok, _, stderr) = auren(&["serve"], &[("AUREN_HTTP_ADDR", "localhost-8000")]);
    assert!(!ok);
    assert!(
        stderr.contains("--http-addr")
            && stderr.contains("'localhost-8000'")
            && stderr.contains("the environment variable AUREN_HTTP_ADDR"),
        "{stderr}"
    );
    let (ok, _, stderr) = auren(&["bridge", "--metrics-addr", "nowhere"], &[]);
    assert!(!ok);
    assert!(
        stderr.contains("--metrics-addr") && stderr.contains("AUREN_METRICS_ADDR"),
        "{stderr}"
    );
    let (ok, _, stderr) = auren(&["serve"], &[("AUREN_LOG_FORMAT", "xml")]);
    assert!(!ok && stderr.contains("AUREN_LOG_FORMAT"), "{stderr}");
}

fn simulate_args(url: &str, dir: &std::path::Path) -> Vec<String> {
    [
        "simulate",
        "--users",
        "1",
        "--days",
        "2",
        "--url",
        url,
        "--admin-token",
        ADMIN,
        "--whoop-client-secret",
        WHOOP_SECRET,
        "--oura-client-secret",
        OURA_SECRET,
        "--secrets-file",
        dir.join("none.json").to_str().unwrap(),
        "--user-prefix",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([unique("sim")])
    .collect()
}

/// With no service at the URL, `simulate` says so at once instead of retrying for a minute.
#[test]
fn simulate_without_a_service_fails_at_once_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}", free_port());
    let args = simulate_args(&url, dir.path());
    let started = std::time::Instant::now();
    let (ok, _, stderr) = auren(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
    assert!(!ok);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains(&format!("is `auren serve` running at {url}?")),
        "{stderr}"
    );
}

/// A rerun is answered with duplicates: of samples for samples, of notifications apart.
#[tokio::test]
async fn a_simulate_rerun_counts_notification_duplicates_apart_from_samples() {
    let app = TestApp::spawn(Options::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let args = simulate_args(&format!("http://{}", app.addr), dir.path());
    let run = move || {
        let (ok, stdout, stderr) = auren(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]);
        assert!(ok, "{stderr}");
        stdout
    };
    let field = |out: &str, name: &str| -> Vec<u64> {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {out}"));
        line.split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().unwrap())
            .collect()
    };
    let run2 = run.clone();
    let first = tokio::task::spawn_blocking(run).await.unwrap();
    let (samples, notes) = (
        field(&first, "samples accepted:"),
        field(&first, "notifications:"),
    );
    assert!(samples[0] > 0 && notes[0] > 0, "{first}");
    assert_eq!((samples[1], samples[2], notes[1]), (0, 0, 0), "{first}");
    let second = tokio::task::spawn_blocking(run2).await.unwrap();
    assert_eq!(
        field(&second, "samples accepted:"),
        [0, 0, samples[0]],
        "every sample again, as a duplicate: {second}"
    );
    assert_eq!(
        field(&second, "notifications:"),
        [notes[0], notes[0]],
        "{second}"
    );
    app.stop().await;
}
