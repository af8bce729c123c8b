//! The embedded log's identity: a log file deleted while the service runs stops
//! acknowledgements and readiness; a replaced or rolled-back one is refused at start with the
//! command that fixes it, and `auren log adopt` is that command.

mod common;
use auren::root::Backends;
use common::*;
use std::path::Path;
use std::sync::Arc;

async fn build(args: &auren::settings::Settings) -> anyhow::Result<auren::app::Service> {
    auren::app::Service::build(args, Arc::new(Backends::new(args.backends())), true).await
}

/// Runs the service on `args`, sends `n` signed webhooks, and stops it once the
/// bridge stored its offsets.
async fn run_and_send(args: &auren::settings::Settings, tag: &str, n: usize) {
    let service = build(args).await.expect("starts");
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", api.local_addr().unwrap());
    let shutdown = auren::shutdown::Shutdown::new();
    let task = tokio::spawn(service.run(api, metrics, shutdown.clone()));
    let client = reqwest::Client::new();
    for i in 0..n {
        let body = whoop_body(&format!("{tag}-{i}"));
        let r = client
            .post(format!("{url}/webhooks/whoop"))
            .headers(
                whoop_headers(WHOOP_SECRET, &now_millis(), &body)
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let backends = Backends::new(args.backends());
    let store = backends.state_store().await.unwrap();
    let (group, topic) = (args.bridge.group.clone(), args.log.events_topic.clone());
    eventually(30, "the bridge to store its offsets", || async {
        let stored: i64 = store
            .load_offsets(&group, &topic)
            .await
            .ok()?
            .iter()
            .map(|(_, o)| o)
            .sum();
        (stored >= n as i64).then_some(())
    })
    .await;
    backends.close().await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

/// Checkpoints every second, so offsets are stored while the test waits.
fn with_fast_checkpoints(mut args: auren::settings::Settings) -> auren::settings::Settings {
    let config = args.data.data_dir.join("thresholds.yaml");
    std::fs::write(&config, "checkpoint:\n  checkpoint_interval_seconds: 1\n").unwrap();
    args.bridge.thresholds.biometric_config = Some(config);
    args
}

fn log_files(dir: &Path) -> Vec<std::path::PathBuf> {
    ["events.db", "events.db-wal", "events.db-shm"]
        .iter()
        .map(|f| dir.join(f))
        .collect()
}

#[tokio::test]
async fn a_log_deleted_while_running_stops_acknowledgements_and_readiness() {
    let app = TestApp::spawn(Options {
        bridge: true,
        ..Default::default()
    })
    .await;
    assert_eq!(app.post_whoop(&whoop_body("before")).await.status(), 200);
    std::fs::remove_file(app.data_dir.path().join("events.db")).unwrap();
    for i in 0..3 {
        let (status, p) = problem(app.post_whoop(&whoop_body(&format!("after-{i}"))).await).await;
        assert_eq!(
            (status, p["reason"].as_str().unwrap()),
            (503, "log_unavailable")
        );
    }
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    let (status, p) = problem(r).await;
    assert_eq!(status, 503);
    assert!(p["detail"].as_str().unwrap().contains("deleted"), "{p}");
    let m = app.metrics().await;
    assert!(metric_value(&m, "auren_log_replaced_total") >= 1.0);
    app.stop().await;
}

#[tokio::test]
async fn a_replaced_log_refuses_start_until_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        bridge: true,
        ..Default::default()
    };
    let args = with_fast_checkpoints(service_args(&o, dir.path()).await);
    run_and_send(&args, "first", 4).await;
    // Another log in its place: a fresh one from elsewhere, with one event of its own.
    let other = tempfile::tempdir().unwrap();
    let mut other_args = args.clone();
    other_args.data.data_dir = other.path().to_path_buf();
    {
        let b = Backends::new(other_args.backends());
        let log = b.log().await.unwrap();
        log.append(
            &args.log.events_topic,
            vec![auren::log::Record {
                key: "u_x".into(),
                event_id: "x".into(),
                value: b"{}".to_vec(),
            }],
        )
        .await
        .unwrap();
        b.close().await;
    }
    for f in log_files(dir.path()) {
        let _ = std::fs::remove_file(&f);
    }
    std::fs::copy(other.path().join("events.db"), dir.path().join("events.db")).unwrap();
    let err = match build(&args).await {
        Ok(_) => panic!("a replaced log must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("belong to event log"), "{err}");
    assert!(err.contains("auren log adopt"), "{err}");
    // The fix named in the message.
    let out = auren_command(&args)
        .args(["log", "adopt"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let service = build(&args).await.expect("starts after adopting");
    drop(service);
}

#[tokio::test]
async fn a_log_rolled_back_behind_the_stored_offsets_refuses_start() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        bridge: true,
        ..Default::default()
    };
    let args = with_fast_checkpoints(service_args(&o, dir.path()).await);
    run_and_send(&args, "early", 1).await;
    let backup = tempfile::tempdir().unwrap();
    for f in log_files(dir.path()) {
        if f.exists() {
            std::fs::copy(&f, backup.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    run_and_send(&args, "late", 6).await;
    // Restore the old copy: the same log, acknowledged events missing.
    for f in log_files(dir.path()) {
        let _ = std::fs::remove_file(&f);
    }
    for f in log_files(backup.path()) {
        if f.exists() {
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
    }
    let err = match build(&args).await {
        Ok(_) => panic!("offsets beyond the log's end must be refused"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("beyond the end"), "{err}");
    assert!(err.contains("auren log adopt"), "{err}");
}

#[tokio::test]
async fn a_second_service_on_the_same_log_names_the_holder_and_the_way_out() {
    let app = TestApp::spawn(Options::default()).await;
    assert_eq!(app.post_whoop(&whoop_body("held")).await.status(), 200);
    let err = match build(&app.args).await {
        Ok(_) => panic!("one process owns an embedded log"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(&format!("held by auren process {}", std::process::id())),
        "{err}"
    );
    assert!(err.contains("AUREN_DATA_DIR"), "{err}");
    app.stop().await;
}
