//! Durability: `kill -9` the real `auren` binary while it is acknowledging webhooks; every event
//! it answered 2xx for must be in the log afterwards. Run for both log backends.

mod common;
use common::*;
use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn wait_healthy(client: &reqwest::Client, url: &str) {
    for _ in 0..100 {
        if client
            .get(url)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("service did not become healthy");
}

async fn kill_mid_stream(kafka: bool) {
    let dir = tempfile::tempdir().unwrap();
    let args = service_args(
        &Options {
            kafka,
            ..Default::default()
        },
        dir.path(),
    )
    .await;
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_auren"));
    cmd.arg("serve")
        .env("AUREN_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("AUREN_METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("AUREN_DATA_DIR", dir.path())
        .env("AUREN_EVENTS_TOPIC", &args.backends.events_topic)
        .env("OURA_CLIENT_SECRET", OURA_SECRET)
        .env("OURA_VERIFICATION_TOKEN", OURA_TOKEN)
        .env("WHOOP_CLIENT_SECRET", WHOOP_SECRET)
        .env("AUREN_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("RUST_LOG", "warn")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env_remove("POSTGRES_URL")
        .env_remove("REDIS_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(b) = &args.backends.kafka_bootstrap_servers {
        cmd.env("KAFKA_BOOTSTRAP_SERVERS", b);
    }
    let mut child = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&client, &format!("{base}/health")).await;

    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let body = whoop_body(&unique("trace"));
                let headers = whoop_headers(WHOOP_SECRET, &now_millis(), &body);
                let mut req = client.post(format!("{base}/webhooks/whoop")).body(body);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Ok(r) if r.status() == 200 => {
                        let v: serde_json::Value = r.json().await.unwrap();
                        acked
                            .lock()
                            .unwrap()
                            .insert(v["event_id"].as_str().unwrap().to_string());
                    }
                    Ok(r) => panic!("unexpected status {}", r.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().unwrap(); // SIGKILL: no shutdown hook runs.
    child.wait().unwrap();
    for w in workers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "load reached the service ({} acks)",
        acked.len()
    );
    let logged: HashSet<String> = records(&args.backends, &args.backends.events_topic)
        .await
        .into_iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = acked.difference(&logged).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost: {missing:?}",
        missing.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event_embedded() {
    kill_mid_stream(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_event_kafka() {
    kill_mid_stream(true).await;
}
