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

    let (ok, stdout, _) = auren(&["topics", "create", "--partitions", "4"], &env);
    assert!(ok);
    assert!(
        stdout.contains("biometric-events\tcreated")
            && stdout.contains("cognitive-mode-switches\tcreated"),
        "{stdout}"
    );
    let (_, again, _) = auren(&["topics", "create"], &env);
    assert!(again.contains("biometric-events\texists"));

    let (ok, _, stderr) = auren(&["keys", "create", "--user", " "], &env);
    assert!(
        !ok && stderr.contains("--user must not be empty"),
        "{stderr}"
    );
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
