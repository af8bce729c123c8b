//! Crash recovery: `kill -9` the service (ingest and bridge) mid-stream and restart it while the
//! simulator keeps sending. Afterwards every user's checkpointed state must equal what the pure
//! engine computes from the log in one uninterrupted pass, and no switch may be published twice.

mod common;
use auren::root::Backends;
use auren_core::engine::{config::EngineConfig, UserState};
use auren_core::model::BiometricEvent;
use common::*;
use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};

const CONFIG: &str = "checkpoint:\n  checkpoint_interval_seconds: 1\n";

fn spawn(args: &auren::settings::Settings, port: u16, config: &std::path::Path) -> Child {
    let mut args = args.clone();
    args.http.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
    args.metrics.metrics_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    args.bridge.thresholds.biometric_config = Some(config.to_path_buf());
    auren_command(&args)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("AUREN_TEST_CHILD_STDERR") {
            // For diagnosis: append the service's log to this file.
            Some(f) => std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .unwrap()
                .into(),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap()
}

/// The end of each non-empty partition of the events topic, through the log port.
async fn log_end(backends: &Backends, topic: &str) -> HashMap<i32, i64> {
    match backends.log().await.unwrap().end_offsets(topic).await {
        Ok(ends) => ends.into_iter().filter(|(_, o)| *o > 0).collect(),
        Err(auren::log::LogError::UnknownTopic(_)) => HashMap::new(),
        Err(e) => panic!("reading the log's end: {e}"),
    }
}

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
    let mut child = spawn(&args, port, &config);
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

    let prefix = unique("crash");
    let sim_args = auren::simulate::SimulateArgs {
        users: 5,
        days: 24,
        url: url.clone(),
        admin_token: Some(ADMIN.into()),
        secrets_file: dir.path().join("none.json"),
        whoop_client_secret: Some(WHOOP_SECRET.into()),
        oura_client_secret: Some(OURA_SECRET.into()),
        seed: 11,
        concurrency: 5,
        user_prefix: prefix.clone(),
        telemetry: auren::settings::defaults(),
    };
    // The simulator runs as the CLI runs it: on a runtime of its own.
    let sim = std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(auren::simulate::run(sim_args))
    });
    // Kill once the bridge has state in flight: some events are logged and some checkpoints made.
    let backends = Backends::new(args.backends());
    let events_topic = args.log.events_topic.clone();
    eventually(60, "events in the log", || async {
        (log_end(&backends, &events_topic)
            .await
            .values()
            .sum::<i64>()
            > 800)
            .then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let mut child = spawn(&args, port, &config);
    tokio::task::spawn_blocking(move || sim.join().unwrap())
        .await
        .unwrap()
        .expect("the simulator finishes across the crash");

    // Wait until the bridge has made everything in the log durable, then stop it gracefully.
    let store = backends.state_store().await.unwrap();
    let group = args.bridge.group.clone();
    eventually(90, "the bridge to catch up", || async {
        let stored: HashMap<i32, i64> = store
            .load_offsets(&group, &events_topic)
            .await
            .ok()?
            .into_iter()
            .collect();
        let end = log_end(&backends, &events_topic).await;
        (end.iter().all(|(p, e)| stored.get(p) == Some(e))).then_some(())
    })
    .await;
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap();

    // The uninterrupted run: the log through the pure engine, per user in log order.
    let cfg = EngineConfig::from_yaml(CONFIG).unwrap();
    let events: Vec<BiometricEvent> = records(&args, &events_topic)
        .await
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let mut reference: HashMap<String, UserState> = HashMap::new();
    let mut expected_switches = HashSet::new();
    for e in &events {
        let s = reference.entry(e.subject.pseudonym.clone()).or_default();
        if let Some(sw) = s.apply(&cfg, &e.subject.pseudonym, e).switch {
            expected_switches.insert(sw.switch_id);
        }
    }
    let users: Vec<_> = reference.iter().filter(|(_, s)| s.events > 0).collect();
    assert_eq!(users.len(), 5, "five simulated users with readings");
    for (pseudonym, want) in users {
        let stored = store
            .load_user(pseudonym)
            .await
            .unwrap()
            .expect("checkpointed");
        let mut got = stored.state.clone();
        let mut want = serde_json::to_value(want).unwrap();
        got.as_object_mut().unwrap().remove("saved");
        want.as_object_mut().unwrap().remove("saved");
        assert_eq!(
            got, want,
            "state of {pseudonym} differs from an uninterrupted run"
        );
    }
    assert!(
        expected_switches.len() >= 10,
        "the simulation switches modes ({})",
        expected_switches.len()
    );
    let published: Vec<String> = records(&args, &args.log.switches_topic)
        .await
        .iter()
        .map(|m| m["switch_id"].as_str().unwrap().to_string())
        .collect();
    let unique_published: HashSet<String> = published.iter().cloned().collect();
    assert_eq!(
        published.len(),
        unique_published.len(),
        "a switch was published twice"
    );
    assert_eq!(unique_published, expected_switches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_recovers_exactly_once_embedded() {
    crash_and_recover(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_recovers_exactly_once_kafka_postgres_redis() {
    crash_and_recover(true).await;
}
