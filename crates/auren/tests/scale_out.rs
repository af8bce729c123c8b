//! Scale-out on Kafka: ingest alone (`auren serve --no-bridge`) and two `auren bridge` instances
//! sharing the consumer group. One bridge is killed with `kill -9` mid-stream; the other takes
//! its partitions over. Afterwards every user's state equals an uninterrupted replay and no
//! switch is published twice.

mod common;
use auren::root::Backends;
use common::recovery::*;
use common::*;
use std::process::Command;

const CONFIG: &str = "checkpoint:\n  checkpoint_interval_seconds: 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_one_killed_mid_stream_lose_and_repeat_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = service_args(
        &Options {
            kafka: true,
            postgres: true,
            redis: true,
            ..Default::default()
        },
        dir.path(),
    )
    .await;
    // The survivor takes over after the dead member's session expires. Generous: the test broker
    // (Tansu, a debug build sharing two cores with four processes) can be slow to answer
    // heartbeats, and a live member must not be taken for dead.
    args.log.kafka_session_timeout_ms = 15_000;
    let config = dir.path().join("thresholds.yaml");
    std::fs::write(&config, CONFIG).unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut ingest = spawn_auren(&args, port, &config, &["serve", "--no-bridge"]);
    let mut victim = spawn_auren(&args, free_port(), &config, &["bridge"]);
    let mut survivor = spawn_auren(&args, free_port(), &config, &["bridge"]);
    let client = reqwest::Client::new();
    eventually(30, "the ingest service", || async {
        client
            .get(format!("{url}/health"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
            .map(|_| ())
    })
    .await;
    let backends = Backends::new(args.backends());
    let store = backends.state_store().await.unwrap();
    let sim = simulate(&url, dir.path(), &unique("scale"));
    // Kill one bridge once both have made progress: offsets stored in more than one partition.
    wait_for_events(&backends, &args.log.events_topic, 800).await;
    eventually(60, "both bridges to store progress", || async {
        let stored = store
            .load_offsets(&args.bridge.group, &args.log.events_topic)
            .await
            .ok()?;
        (stored.iter().filter(|(_, o)| *o > 0).count() >= 2).then_some(())
    })
    .await;
    victim.kill().unwrap(); // SIGKILL: no final checkpoint, no leaving the group
    victim.wait().unwrap();

    tokio::task::spawn_blocking(move || sim.join().unwrap())
        .await
        .unwrap()
        .expect("the simulator finishes");
    wait_caught_up(&args, &backends, 180).await;
    assert!(
        survivor.try_wait().unwrap().is_none(),
        "the surviving bridge runs"
    );
    for child in [&mut survivor, &mut ingest] {
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        child.wait().unwrap();
    }
    backends.close().await;
    assert_equals_an_uninterrupted_run(&args, CONFIG, 5).await;
}
