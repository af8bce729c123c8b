//! Scale-out: two `auren bridge` processes share the consumer group on Kafka (with PostgreSQL and
//! Redis), behind an ingest-only `auren serve`. Mid-stream one bridge is killed with `kill -9`;
//! the survivor is assigned its partitions and carries on. Afterwards every user's checkpointed
//! state must equal what the pure engine computes from the log in one uninterrupted pass, and no
//! switch may be published twice (a switch the dead bridge committed but had not published is
//! published by the survivor, once).

mod common;
use auren::root::Backends;
use common::recovery::*;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CONFIG: &str = "checkpoint:\n  checkpoint_interval_seconds: 1\n";

/// A bridge child with its JSON log in a file of its own.
struct Bridge {
    name: &'static str,
    log: PathBuf,
}

impl Bridge {
    /// The partitions of this bridge's latest consumer-group assignment, if it has had one.
    fn assignment(&self) -> Option<BTreeSet<i32>> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["fields"]["message"] == "consumer group assignment")
            .map(|l| {
                let list = l["fields"]["partitions"].as_str().unwrap_or("[]");
                list.trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .collect()
            })
    }
}

/// On a failing test, what a flaky takeover needs to be explained: each log's group events and
/// errors, and its tail, on stderr; the whole logs are kept in a directory named there.
struct DumpLogsOnPanic(Vec<(&'static str, PathBuf)>);

impl Drop for DumpLogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let kept = tempfile::Builder::new()
            .prefix("auren-scale-out-logs-")
            .tempdir()
            .map(|d| d.keep());
        for (name, path) in &self.0 {
            if let Ok(kept) = &kept {
                let _ = std::fs::copy(path, kept.join(format!("{name}.log")));
            }
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {name}: consumer group events and errors ---");
            for l in lines.iter().filter(|l| {
                l.contains("consumer group") || l.contains("SESSTMOUT") || l.contains("ERROR")
            }) {
                eprintln!("{l}");
            }
            eprintln!("--- {name}: last lines ---");
            for l in &lines[lines.len().saturating_sub(20)..] {
                eprintln!("{l}");
            }
        }
        if let Ok(kept) = kept {
            eprintln!("the whole logs are in {}", kept.display());
        }
    }
}

fn log_file(path: &Path) -> Stdio {
    std::fs::File::create(path).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_share_the_group_and_the_survivor_of_a_kill_9_finishes_exactly_once() {
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
    args.telemetry.log_format = "json".into();
    // Info: the bridges log their consumer-group assignments, which the test reads.
    args.telemetry.rust_log = "warn,auren=info".into();
    let config = dir.path().join("thresholds.yaml");
    std::fs::write(&config, CONFIG).unwrap();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let ingest_log = dir.path().join("ingest.log");
    let mut children = Children(vec![spawn_auren_logging_to(
        &args,
        port,
        &config,
        &["serve", "--no-bridge"],
        log_file(&ingest_log),
    )]);
    let bridges = [
        Bridge {
            name: "bridge-a",
            log: dir.path().join("bridge-a.log"),
        },
        Bridge {
            name: "bridge-b",
            log: dir.path().join("bridge-b.log"),
        },
    ];
    let _dump = DumpLogsOnPanic(
        std::iter::once(("ingest", ingest_log))
            .chain(bridges.iter().map(|b| (b.name, b.log.clone())))
            .collect(),
    );
    for b in &bridges {
        children.0.push(spawn_auren_logging_to(
            &args,
            free_port(),
            &config,
            &["bridge"],
            log_file(&b.log),
        ));
    }
    let client = reqwest::Client::new();
    eventually(60, "the ingest process", || async {
        let r = client.get(format!("{url}/health")).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // Both bridges are members with partitions of their own, between them all three.
    let assigned = eventually(90, "both bridges assigned partitions", || async {
        let (a, b) = (bridges[0].assignment()?, bridges[1].assignment()?);
        let all: BTreeSet<i32> = a.union(&b).copied().collect();
        (!a.is_empty() && !b.is_empty() && a.is_disjoint(&b) && all.len() == 3).then_some([a, b])
    })
    .await;
    eprintln!("assignments before the kill: {assigned:?}");

    let sim = simulate(&url, dir.path(), &unique("scale"));
    let backends = Backends::new(args.backends());
    wait_for_events(&backends, &args.log.events_topic, 800).await;
    // The victim is the bridge whose partitions hold more of the log (users hash to partitions,
    // so one bridge may have none); it is killed once it has made some of that work durable.
    let end = log_end_now(&backends, &args.log.events_topic).await;
    let events_of = |parts: &BTreeSet<i32>| parts.iter().filter_map(|p| end.get(p)).sum::<i64>();
    let victim = usize::from(events_of(&assigned[1]) > events_of(&assigned[0]));
    let store = backends.state_store().await.unwrap();
    eventually(60, "the victim to store offsets", || async {
        let stored = store
            .load_offsets(&args.bridge.group, &args.log.events_topic)
            .await
            .ok()?;
        stored
            .iter()
            .any(|(p, o)| assigned[victim].contains(p) && *o > 0)
            .then_some(())
    })
    .await;
    let child = &mut children.0[1 + victim];
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = log_end_now(&backends, &args.log.events_topic).await;
    let stored_at_kill = store
        .load_offsets(&args.bridge.group, &args.log.events_topic)
        .await
        .unwrap();
    eprintln!(
        "{} killed; at the kill: log end {at_kill:?}, stored {stored_at_kill:?}",
        bridges[victim].name
    );

    tokio::task::spawn_blocking(move || sim.join().unwrap())
        .await
        .unwrap()
        .expect("the simulator finishes while one bridge is dead");
    // The survivor alone makes everything in the log durable, the victim's partitions included.
    wait_caught_up(&args, &backends, 180).await;
    let at_end = log_end_now(&backends, &args.log.events_topic).await;
    eprintln!("at the end: log end {at_end:?}");
    assert!(
        at_end.values().sum::<i64>() > at_kill.values().sum::<i64>(),
        "the kill came mid-stream: the log grew after it"
    );
    let survivor = 1 - victim;
    let survivor_holds = bridges[survivor].assignment().unwrap();
    assert_eq!(
        survivor_holds,
        BTreeSet::from([0, 1, 2]),
        "the survivor holds every partition"
    );
    Command::new("kill")
        .arg("-TERM")
        .arg(children.0[1 + survivor].id().to_string())
        .status()
        .unwrap();
    let status = children.0[1 + survivor].wait().unwrap();
    assert!(status.success(), "the survivor drains and exits: {status}");
    backends.close().await;

    assert_equals_an_uninterrupted_run(&args, CONFIG, 5).await;
}
