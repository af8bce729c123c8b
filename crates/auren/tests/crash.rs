//! Durability: `kill -9` the real `auren` binary while it is acknowledging webhooks; every event
//! it answered 2xx for must be in the log afterwards. Run for both log backends.

mod common;
use common::*;
use std::collections::HashSet;
use std::process::Stdio;
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
    let mut args = args;
    args.http.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
    args.metrics.metrics_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = auren_command(&args)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
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
    let logged: HashSet<String> = records(&args, &args.log.events_topic)
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
