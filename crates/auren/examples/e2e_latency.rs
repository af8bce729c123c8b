//! End-to-end latency: from sending the webhook that completes a REFLEX episode to seeing the
//! switch on `cognitive-mode-switches`, for many users, against a running `auren serve`.
//!
//! Each user gets two HealthKit pushes of a resting heart rate over 100 bpm a minute apart (event
//! time); the second one switches the user to REFLEX. The clock starts just before the second
//! request is sent and stops when a watcher reading the switches topic (the embedded log file, or
//! a Kafka consumer) first sees that user's switch. Users are driven by `--concurrency` tasks.
//!
//! Run: `cargo run --release -p auren --example e2e_latency -- --url http://127.0.0.1:8000
//!       --admin-token T --users 1000 (--data-dir ./data | --kafka 127.0.0.1:9092)`

use auren::log::StartAt;
use auren::root::Backends;
use auren::settings::BackendSettings;
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    admin: String,
    users: usize,
    concurrency: usize,
    data_dir: Option<String>,
    kafka: Option<String>,
    topic: String,
}

fn args() -> Args {
    let mut a = Args {
        url: "http://127.0.0.1:8000".into(),
        admin: String::new(),
        users: 1000,
        concurrency: 16,
        data_dir: None,
        kafka: None,
        topic: "cognitive-mode-switches".into(),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for w in v.chunks(2) {
        let val = w.get(1).cloned().unwrap_or_default();
        match w[0].as_str() {
            "--url" => a.url = val,
            "--admin-token" => a.admin = val,
            "--users" => a.users = val.parse().expect("--users N"),
            "--concurrency" => a.concurrency = val.parse().expect("--concurrency N"),
            "--data-dir" => a.data_dir = Some(val),
            "--kafka" => a.kafka = Some(val),
            "--topic" => a.topic = val,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        a.data_dir.is_some() != a.kafka.is_some(),
        "give --data-dir or --kafka"
    );
    a
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Watches the switches topic from its current end, through the log port, and notes when each
/// user's switch appears.
fn watch(a: &Args, seen: Seen) -> tokio::task::JoinHandle<()> {
    let mut settings: BackendSettings = auren::settings::defaults();
    if let Some(dir) = &a.data_dir {
        settings.data.data_dir = dir.into();
    }
    settings.log.kafka_bootstrap_servers = a.kafka.clone();
    let topic = a.topic.clone();
    tokio::spawn(async move {
        let backends = Backends::new(settings);
        let log = backends.log().await.expect("the log opens");
        let mut records = log.read(&topic, StartAt::End, true);
        while let Some(r) = records.next().await {
            let m: serde_json::Value =
                serde_json::from_slice(&r.expect("the log reads").value).expect("a switch message");
            if m["to_mode"] == "REFLEX" {
                let user = m["user_id"].as_str().unwrap().to_string();
                seen.lock()
                    .unwrap()
                    .entry(user)
                    .or_insert_with(Instant::now);
            }
        }
    })
}

#[tokio::main]
async fn main() {
    let a = args();
    let client = reqwest::Client::new();
    let run = format!("lat{}", std::process::id());
    // Keys first, so issuing them is not part of what is measured.
    let mut keys = Vec::new();
    for i in 0..a.users {
        let user = format!("{run}-{i}");
        let r: serde_json::Value = client
            .post(format!("{}/admin/users/{user}/keys", a.url))
            .bearer_auth(&a.admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push((
            user,
            r["key"].as_str().expect("admin token accepted").to_string(),
        ));
    }
    let seen: Seen = Arc::new(Mutex::new(HashMap::new()));
    let watcher = watch(&a, seen.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let queue = Arc::new(Mutex::new(keys));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, queue, sent, url) =
            (client.clone(), queue.clone(), sent.clone(), a.url.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some((user, key)) = queue.lock().unwrap().pop() else { return };
                for (i, ts) in ["2025-06-01T15:00:00Z", "2025-06-01T15:01:00Z"].iter().enumerate() {
                    let body = serde_json::json!({"user_id": user, "samples": [{"type": "heartRate", "value": 112, "timestamp": ts, "source": "Apple Watch"}]});
                    if i == 1 {
                        sent.lock().unwrap().insert(user.clone(), Instant::now());
                    }
                    let r = client.post(format!("{url}/webhooks/healthkit")).bearer_auth(&key).json(&body).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().len() < a.users && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();
    let (sent, seen) = (sent.lock().unwrap(), seen.lock().unwrap());
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|(u, t0)| {
            seen.get(u)
                .map(|t1| t1.saturating_duration_since(*t0).as_secs_f64() * 1000.0)
        })
        .collect();
    lat.sort_by(|x, y| x.partial_cmp(y).unwrap());
    let pct = |q: f64| lat[((lat.len() as f64 * q).ceil() as usize).clamp(1, lat.len()) - 1];
    println!(
        "RESULT users={} switches_seen={} webhooks_per_s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        a.users,
        lat.len(),
        (2 * a.users) as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
}
