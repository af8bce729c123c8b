//! A Redis outage degrades: ingest keeps acknowledging, the bridge keeps deciding and publishing,
//! and the failures are counted. Runs on a private redis-server so the shared one is untouched.

mod common;
use common::*;
use std::process::{Command, Stdio};

#[tokio::test]
async fn redis_going_away_never_stops_ingest_or_the_bridge() {
    let port = free_port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (scripts/test.sh installs it)");
    let url = format!("redis://127.0.0.1:{port}/0");
    eventually(10, "the private Redis", || {
        let url = url.clone();
        async move {
            let c = redis::Client::open(url).ok()?;
            c.get_multiplexed_async_connection().await.ok().map(|_| ())
        }
    })
    .await;
    std::env::set_var("AUREN_TEST_REDIS", &url);
    let app = TestApp::spawn(Options {
        bridge: true,
        kafka: true,
        redis: true,
        ..Default::default()
    })
    .await;
    assert_eq!(app.args.cache.redis_url.as_deref(), Some(url.as_str()));

    redis.kill().unwrap();
    redis.wait().unwrap();

    let user = unique("user");
    let key = app.issue_key(&user).await;
    let t0: chrono::DateTime<chrono::Utc> = "2025-03-01T15:00:00Z".parse().unwrap();
    assert_eq!(
        app.push(&key, &user, &stress_episode(t0, 3)).await.status(),
        200,
        "ingest goes on without its dedup cache"
    );
    let switch = app
        .first_switch(30, "the switch, published without Redis")
        .await;
    assert_eq!(switch["to_mode"], "REFLEX");
    // State is still served, from the checkpoint instead of the cache.
    let (s, state) = app.get_json(&format!("/users/{user}/state"), ADMIN).await;
    assert_eq!(s, 200, "{state}");
    assert_eq!(state["mode"], "REFLEX");
    assert_eq!(state["source"], "checkpoint");
    // The failed cache writes are counted once the client gives up on the dead server, which
    // can be after the switch was published.
    eventually(30, "the cache failures counted", || async {
        let m = app.metrics().await;
        (metric_value(&m, r#"auren_cache_errors_total{op="state_put"}"#) >= 1.0
            && metric_value(&m, r#"auren_cache_errors_total{op="dedup_claim"}"#) >= 1.0)
            .then_some(())
    })
    .await;
    app.stop().await;
}
