//! What the crash and scale-out tests share: a simulator run on its own runtime, the log's
//! end, waiting for the bridges to catch up, and the verdict: every user's checkpointed state
//! equals what the pure engine computes from the log in one uninterrupted pass, and every
//! switch is published exactly once.

use super::*;
use auren_core::engine::{config::EngineConfig, UserState};
use auren_core::model::BiometricEvent;
use std::collections::{HashMap, HashSet};

/// `auren <command>` as a child process on `args`, its API on `port`, thresholds from `config`.
/// Its log goes to the file named by `AUREN_TEST_CHILD_STDERR`, for diagnosis.
pub fn spawn_auren(args: &Settings, port: u16, config: &Path, command: &[&str]) -> Child {
    let stderr = match std::env::var_os("AUREN_TEST_CHILD_STDERR") {
        Some(f) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .unwrap()
            .into(),
        None => Stdio::null(),
    };
    spawn_auren_logging_to(args, port, config, command, stderr)
}

/// As [`spawn_auren`], its log (stderr) going to `stderr`.
pub fn spawn_auren_logging_to(
    args: &Settings,
    port: u16,
    config: &Path,
    command: &[&str],
    stderr: Stdio,
) -> Child {
    let mut args = args.clone();
    args.http.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
    args.metrics.metrics_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    args.bridge.thresholds.biometric_config = Some(config.to_path_buf());
    auren_command(&args)
        .args(command)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Child processes, killed when dropped (a failed test leaves none running).
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `auren simulate` (5 users, 24 days) against `url` on a runtime of its own, as the CLI
/// runs it.
pub fn simulate(
    url: &str,
    dir: &Path,
    prefix: &str,
) -> std::thread::JoinHandle<anyhow::Result<()>> {
    let sim_args = auren::simulate::SimulateArgs {
        users: 5,
        days: 24,
        url: url.to_string(),
        admin_token: Some(ADMIN.into()),
        secrets_file: dir.join("none.json"),
        whoop_client_secret: Some(WHOOP_SECRET.into()),
        oura_client_secret: Some(OURA_SECRET.into()),
        seed: 11,
        concurrency: 5,
        user_prefix: prefix.to_string(),
        telemetry: auren::settings::defaults(),
    };
    std::thread::spawn(move || {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(auren::simulate::run(sim_args))
    })
}

/// The end of each non-empty partition of `topic`, through the log port; None when the broker
/// does not answer now (a loaded broker may time out; the callers poll).
pub async fn log_end(backends: &Backends, topic: &str) -> Option<HashMap<i32, i64>> {
    match backends.log().await.unwrap().end_offsets(topic).await {
        Ok(ends) => Some(ends.into_iter().filter(|(_, o)| *o > 0).collect()),
        Err(auren::log::LogError::UnknownTopic(_)) => Some(HashMap::new()),
        Err(e) => {
            eprintln!("reading the log's end: {e:?}");
            None
        }
    }
}

/// [`log_end`], asked again until the broker answers.
pub async fn log_end_now(backends: &Backends, topic: &str) -> HashMap<i32, i64> {
    eventually(30, "the log's end", || log_end(backends, topic)).await
}

/// Waits until the log holds more than `n` events.
pub async fn wait_for_events(backends: &Backends, topic: &str, n: i64) {
    eventually(60, "events in the log", || async {
        (log_end(backends, topic).await?.values().sum::<i64>() > n).then_some(())
    })
    .await;
}

/// Waits until the bridges made everything in the log durable.
pub async fn wait_caught_up(args: &Settings, backends: &Backends, secs: u64) {
    let store = backends.state_store().await.unwrap();
    let (group, topic) = (&args.bridge.group, &args.log.events_topic);
    eventually(secs, "the bridges to catch up", || async {
        let stored: HashMap<i32, i64> = store
            .load_offsets(group, topic)
            .await
            .ok()?
            .into_iter()
            .collect();
        let end = log_end(backends, topic).await?;
        (!end.is_empty() && end.iter().all(|(p, e)| stored.get(p) == Some(e))).then_some(())
    })
    .await;
}

/// The verdict: state per user as in one uninterrupted pass, each switch published once.
pub async fn assert_equals_an_uninterrupted_run(args: &Settings, config_yaml: &str, users: usize) {
    let backends = Backends::new(args.backends());
    let store = backends.state_store().await.unwrap();
    let cfg = EngineConfig::from_yaml(config_yaml).unwrap();
    let events: Vec<BiometricEvent> = records(args, &args.log.events_topic)
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
    let with_readings: Vec<_> = reference.iter().filter(|(_, s)| s.events > 0).collect();
    assert_eq!(with_readings.len(), users, "simulated users with readings");
    for (pseudonym, want) in with_readings {
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
    let published: Vec<String> = records(args, &args.log.switches_topic)
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
    backends.close().await;
}
