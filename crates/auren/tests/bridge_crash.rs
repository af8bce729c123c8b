//! Crash recovery: `kill -9` the service (ingest and bridge) mid-stream and restart it while the
//! simulator keeps sending. Afterwards every user's checkpointed state must equal what the pure
//! engine computes from the log in one uninterrupted pass, and no switch may be published twice.

mod common;
use auren::root::Backends;
use common::recovery::*;
use common::*;
use std::process::Command;

const CONFIG: &str = "checkpoint:\n  checkpoint_interval_seconds: 1\n";

async fn crash_and_recover(kafka: bool) {
    let dir = tempfile::tempdir().unwrap();
    let args = service_args(
        &Options {
            kafka,
            postgres: kafka,
            redis: kafka,
            bridge: true,
            ..Default::default()
        },
        dir.path(),
    )
    .await;
    let config = dir.path().join("thresholds.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = spawn_auren(&args, port, &config, &["serve"]);
    let client = reqwest::Client::new();
    eventually(30, "the service", || async {
        client
            .get(format!("{url}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;

    let sim = simulate(&url, dir.path(), &unique("crash"));
    // Kill once the bridge has state in flight: some events are logged and some checkpoints made.
    let backends = Backends::new(args.backends());
    wait_for_events(&backends, &args.log.events_topic, 800).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut child = spawn_auren(&args, port, &config, &["serve"]);
    tokio::task::spawn_blocking(move || sim.join().unwrap())
        .await
        .unwrap()
        .expect("the simulator finishes across the crash");

    // Wait until the bridge has made everything in the log durable, then stop it gracefully.
    wait_caught_up(&args, &backends, 90).await;
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();

    assert_equals_an_uninterrupted_run(&args, CONFIG, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_recovers_exactly_once_embedded() {
    crash_and_recover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_recovers_exactly_once_kafka_postgres_redis() {
    crash_and_recover(true).await;
}
