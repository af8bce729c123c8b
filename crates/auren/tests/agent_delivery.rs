//! Delivery of switches to agents, against real receivers: a `langgraph dev` server serving
//! `examples/langgraph-agent` (scripts/langgraph.sh), and a Standard Webhooks receiver that checks
//! every signature with the `standardwebhooks` package from PyPI (tests/support).

mod common;

use common::recovery::{simulate, spawn_auren};
use common::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const TOKEN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// A `langgraph dev` server on `port`, resuming the state saved in `workdir` when given.
struct LangGraphServer {
    pid: u32,
    workdir: PathBuf,
    port: u16,
}

impl LangGraphServer {
    fn start(port: u16, workdir: Option<&Path>) -> Self {
        let script = repo().join("scripts/langgraph.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && start_langgraph {port} {} >&2 && echo \"$LANGGRAPH_PID $LANGGRAPH_WORKDIR\"",
                script.display(),
                workdir.map(|w| format!("'{}'", w.display())).unwrap_or_default()
            ))
            .stderr(Stdio::inherit())
            .output()
            .expect("bash");
        assert!(out.status.success(), "langgraph dev did not start");
        let text = String::from_utf8(out.stdout).unwrap();
        let (pid, dir) = text.trim().split_once(' ').unwrap();
        LangGraphServer {
            pid: pid.parse().unwrap(),
            workdir: PathBuf::from(dir),
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGTERM: the dev server saves its state and exits (it loses it on SIGKILL).
    fn stop(&self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        for _ in 0..150 {
            let alive = Command::new("kill")
                .args(["-0", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !alive {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status();
    }
}

impl Drop for LangGraphServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn thread_state(url: &str, pseudonym: &str) -> Value {
    let thread = auren::delivery::langgraph::thread_uuid(pseudonym);
    let r = reqwest::get(format!("{url}/threads/{thread}/state")).await;
    match r {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

fn pseudonym(user: &str) -> String {
    auren_core::pseudonym::Pseudonymizer::new(PSEUDONYM_KEY.as_bytes())
        .unwrap()
        .pseudonym(user)
}

/// A user's switch ids, oldest first, from the service's history.
async fn history(app_url: &str, user: &str) -> Vec<String> {
    let r: Value = reqwest::Client::new()
        .get(format!("{app_url}/users/{user}/modes?limit=1000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    let mut ids: Vec<String> = r["modes"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|s| s["switch_id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    ids.reverse();
    ids
}

async fn stressed(app: &TestApp, user: &str) {
    let key = app.issue_key(user).await;
    let start = chrono::Utc::now() - chrono::Duration::minutes(30);
    let r = app.push(&key, user, &stress_episode(start, 15)).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_switch_reaches_the_langgraph_thread_state_and_a_run_changes_the_agents_reply() {
    let server = LangGraphServer::start(free_port(), None);
    let url = server.url();

    // state delivery: the thread's state carries the mode and its reasons.
    let u = url.clone();
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        move |s| s.bridge.delivery.langgraph_url = Some(u.parse().unwrap()),
    )
    .await;
    let user = unique("lg_state");
    stressed(&app, &user).await;
    let values = eventually(90, "the REFLEX switch in the thread's state", || async {
        let v = thread_state(&url, &pseudonym(&user)).await["values"].clone();
        (v["mode"] == "REFLEX").then_some(v)
    })
    .await;
    assert!(!values["reasons"].as_array().unwrap().is_empty());
    assert_eq!(values["previous_mode"], "PATTERN");
    let ids = history(&app.url(""), &user).await;
    assert_eq!(values["applied_switch_ids"], json!(ids));
    assert_eq!(values["switch_id"], json!(ids.last().unwrap()));
    let metrics = app.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "auren_agent_deliveries_total{sink=\"langgraph\",outcome=\"delivered\"}"
        ) >= 1.0
    );
    app.stop().await;

    // run delivery: the example agent reacts, and its reply to a message follows the mode.
    let u = url.clone();
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        move |s| {
            s.bridge.delivery.langgraph_url = Some(u.parse().unwrap());
            s.bridge.delivery.langgraph_delivery = auren::settings::LangGraphDelivery::Run;
        },
    )
    .await;
    let calm = unique("lg_calm");
    let user = unique("lg_run");
    stressed(&app, &user).await;
    eventually(90, "the run applying the switch", || async {
        let v = thread_state(&url, &pseudonym(&user)).await["values"].clone();
        (v["mode"] == "REFLEX").then_some(())
    })
    .await;
    let ask = |who: String| {
        let url = url.clone();
        async move {
            let thread = auren::delivery::langgraph::thread_uuid(&pseudonym(&who));
            let client = reqwest::Client::new();
            // A user without switches has no thread yet; the agent's own client creates it.
            client
                .post(format!("{url}/threads"))
                .json(
                    &json!({"thread_id": thread.to_string(), "if_exists": "do_nothing",
                              "metadata": {"graph_id": "auren_agent"}}),
                )
                .send()
                .await
                .unwrap();
            let v: Value = client
                .post(format!("{url}/threads/{thread}/runs/wait"))
                .json(&json!({"assistant_id": "auren_agent",
                              "input": {"messages": [{"role": "user", "content": "How should I plan my afternoon?"}]}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let last = v["messages"].as_array().unwrap().last().unwrap().clone();
            (
                last["content"].as_str().unwrap().to_string(),
                last["response_metadata"]["auren_mode"].clone(),
            )
        }
    };
    let (stressed_reply, stressed_mode) = ask(user.clone()).await;
    let (calm_reply, calm_mode) = ask(calm).await;
    assert_eq!(stressed_mode, "REFLEX");
    assert_ne!(calm_mode, "REFLEX");
    assert_ne!(stressed_reply, calm_reply);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_switch_reaches_langgraph_once_in_order_across_a_server_restart() {
    let port = free_port();
    let mut server = LangGraphServer::start(port, None);
    let url = server.url();
    let u = url.clone();
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        move |s| s.bridge.delivery.langgraph_url = Some(u.parse().unwrap()),
    )
    .await;
    let prefix = unique("lgr");
    let sim = simulate(&app.url(""), app.data_dir.path(), &prefix);
    // Stop the server while switches are being decided and delivered, restart it a moment later.
    eventually(120, "the first switches delivered", || async {
        let m = app.metrics().await;
        (metric_value(
            &m,
            "auren_agent_deliveries_total{sink=\"langgraph\",outcome=\"delivered\"}",
        ) >= 3.0)
            .then_some(())
    })
    .await;
    server.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let workdir = server.workdir.clone();
    server = LangGraphServer::start(port, Some(&workdir));
    sim.join().unwrap().expect("the simulation ran");
    let users: Vec<String> = (1..=5).map(|i| format!("{prefix}-{i}")).collect();
    let mut total = 0;
    for user in &users {
        let want = eventually(60, "the user's history", || async {
            let h = history(&app.url(""), user).await;
            Some(h)
        })
        .await;
        total += want.len();
        eventually(
            180,
            "every switch in the thread, once, in order",
            || async {
                let v = thread_state(&url, &pseudonym(user)).await;
                let got: Vec<String> = v["values"]["applied_switch_ids"]
                    .as_array()
                    .map(|a| a.iter().map(|x| x.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                (got == want).then_some(())
            },
        )
        .await;
    }
    assert!(total >= 5, "the simulation switched modes ({total})");
    app.stop().await;
    drop(server);
}

/// The receiver: a child process that outlives nothing of the test.
struct Receiver {
    child: Child,
    log: PathBuf,
    secret_file: PathBuf,
    port: u16,
}

impl Receiver {
    fn start(dir: &Path, fail_first: u32) -> Self {
        let venv = std::env::var("AUREN_TEST_CONTRACT_VENV")
            .expect("AUREN_TEST_CONTRACT_VENV: the venv with standardwebhooks (scripts/test.sh)");
        let port = free_port();
        let (log, secret_file) = (dir.join("received.jsonl"), dir.join("secret"));
        let child = Command::new(format!("{venv}/bin/python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/webhook_receiver.py"))
            .args([
                port.to_string(),
                secret_file.display().to_string(),
                log.display().to_string(),
                fail_first.to_string(),
            ])
            .spawn()
            .unwrap();
        for _ in 0..300 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver {
            child,
            log,
            secret_file,
            port,
        }
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn register(base: &str, receiver: &Receiver, users: Option<Vec<String>>) -> Value {
    let mut body = json!({"url": format!("http://127.0.0.1:{}/hook", receiver.port),
                          "events": ["mode.switched"]});
    if let Some(u) = users {
        body["user_ids"] = json!(u);
    }
    let r = reqwest::Client::new()
        .post(format!("{base}/admin/webhooks"))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    std::fs::write(&receiver.secret_file, v["secret"].as_str().unwrap()).unwrap();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_failing_three_times_gets_the_switch_exactly_once_more_signed_as_standard_webhooks(
) {
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        |s| {
            s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
            s.bridge.delivery.webhook_allow_private = true;
            s.bridge.delivery.webhook_retry_schedule =
                auren::settings::Schedule(vec![Duration::from_millis(200); 5]);
        },
    )
    .await;
    let receiver = Receiver::start(app.data_dir.path(), 3);
    let user = unique("wh");
    let other = unique("wh_other");
    let created = register(&app.url(""), &receiver, Some(vec![user.clone()])).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    // The secret is stored sealed, not as given.
    let stored = app
        .backends
        .stores()
        .await
        .unwrap()
        .deliveries
        .endpoint(&id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored
        .secret_sealed
        .contains(created["secret"].as_str().unwrap()));

    stressed(&app, &user).await;
    stressed(&app, &other).await;
    let got = eventually(60, "the fourth attempt", || async {
        let r = receiver.received();
        (r.len() >= 4).then_some(r)
    })
    .await;
    // Nothing more arrives: delivered once, and the other user is filtered out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_after = receiver.received();
    assert_eq!(got_after.len(), got.len(), "{got_after:?}");
    let ids = history(&app.url(""), &user).await;
    assert_eq!(ids.len(), 1, "one switch for the user");
    assert_eq!(got.len(), 4, "{got:?}");
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r["verified"], true, "{r}");
        assert_eq!(r["webhook_id"], json!(ids[0]));
        assert_eq!(r["switch_id"], json!(ids[0]));
        assert_eq!(r["type"], "mode.switched");
        assert_eq!(r["answered"], if i < 3 { 500 } else { 204 });
    }
    let (status, attempts) = app
        .get_json(&format!("/admin/webhooks/{id}/attempts"), ADMIN)
        .await;
    assert_eq!(status, 200);
    let outcomes: Vec<&str> = attempts
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "failed", "delivered"]);
    let (_, list) = app.get_json("/admin/webhooks", ADMIN).await;
    assert_eq!(list[0]["id"], json!(id));
    assert!(list[0].get("secret").is_none());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_endpoint_failing_the_whole_schedule_is_disabled_and_urls_are_checked() {
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        |s| {
            s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
            s.bridge.delivery.webhook_retry_schedule =
                auren::settings::Schedule(vec![Duration::from_millis(100); 2]);
        },
    )
    .await;
    // Private destinations are refused unless allowed.
    for (url, reason) in [
        ("http://127.0.0.1:9/x", "private_address"),
        ("http://169.254.169.254/latest", "private_address"),
        ("ftp://example.com/", "invalid_url"),
    ] {
        let r = app
            .client
            .post(app.url("/admin/webhooks"))
            .bearer_auth(ADMIN)
            .json(&json!({"url": url, "events": ["mode.switched"]}))
            .send()
            .await
            .unwrap();
        let (status, p) = problem(r).await;
        assert_eq!(
            (status, p["reason"].as_str().unwrap()),
            (422, reason),
            "{url}"
        );
    }
    let r = app
        .client
        .post(app.url("/admin/webhooks"))
        .bearer_auth(ADMIN)
        .json(&json!({"url": "https://example.com/x", "events": ["mode.exploded"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.1["reason"], "unknown_event_type");
    app.stop().await;

    // Allowed, an endpoint that always fails is disabled after the schedule.
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        |s| {
            s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
            s.bridge.delivery.webhook_allow_private = true;
            s.bridge.delivery.webhook_retry_schedule =
                auren::settings::Schedule(vec![Duration::from_millis(100); 2]);
        },
    )
    .await;
    let receiver = Receiver::start(app.data_dir.path(), 1000);
    let created = register(&app.url(""), &receiver, None).await;
    let id = created["id"].as_str().unwrap().to_string();
    stressed(&app, &unique("wh_dis")).await;
    let list = eventually(60, "the endpoint disabled", || async {
        let (_, list) = app.get_json("/admin/webhooks", ADMIN).await;
        list[0]["disabled_at"].is_string().then_some(list)
    })
    .await;
    assert!(list[0]["disabled_reason"]
        .as_str()
        .unwrap()
        .contains("3 attempts"));
    assert_eq!(receiver.received().len(), 3);
    let r = app
        .client
        .delete(app.url(&format!("/admin/webhooks/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, _) = app
        .get_json(&format!("/admin/webhooks/{id}/attempts"), ADMIN)
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_deliveries_survive_kill_9_of_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = service_args(&Options::default(), dir.path()).await;
    args.secrets.token_key.token_key = Some(TOKEN_KEY.into());
    args.bridge.delivery.webhook_allow_private = true;
    args.bridge.delivery.webhook_retry_schedule =
        auren::settings::Schedule(vec![Duration::from_millis(300); 200]);
    let config = dir.path().join("thresholds.yaml");
    std::fs::write(&config, "checkpoint:\n  checkpoint_interval_seconds: 1\n").unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The receiver fails the first 20 requests: switches wait in the store when the kill comes.
    let receiver = Receiver::start(dir.path(), 20);
    let mut child = spawn_auren(&args, port, &config, &["serve"]);
    eventually(60, "the service to answer", || async {
        reqwest::get(format!("{base}/health"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    register(&base, &receiver, None).await;
    let prefix = unique("whk");
    simulate(&base, dir.path(), &prefix)
        .join()
        .unwrap()
        .expect("simulation");
    eventually(60, "some failed deliveries", || async {
        (receiver.received().len() >= 5).then_some(())
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn_auren(&args, port, &config, &["serve"]);
    eventually(60, "the service to answer again", || async {
        reqwest::get(format!("{base}/health"))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    let mut want: HashMap<String, ()> = HashMap::new();
    for i in 1..=5 {
        for id in history(&base, &format!("{prefix}-{i}")).await {
            want.insert(id, ());
        }
    }
    assert!(want.len() >= 5, "the simulation switched modes");
    eventually(120, "every switch delivered after the restart", || async {
        let delivered: HashMap<String, ()> = receiver
            .received()
            .into_iter()
            .filter(|r| r["answered"] == 204 && r["verified"] == true)
            .map(|r| (r["switch_id"].as_str().unwrap().to_string(), ()))
            .collect();
        want.keys().all(|k| delivered.contains_key(k)).then_some(())
    })
    .await;
    for r in receiver.received() {
        assert_eq!(r["verified"], true, "{r}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_sharing_a_postgresql_store_deliver_each_switch_once_in_order() {
    use auren::store::{CommitBatch, PgStore, StateStore};
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(PgStore::connect(&fresh_database().await).await.unwrap());
    let receiver = Receiver::start(dir.path(), 0);
    let key = auren::crypto::TokenKey::parse(TOKEN_KEY).unwrap();
    let secret = auren::delivery::webhooks::new_secret();
    std::fs::write(&receiver.secret_file, &secret).unwrap();
    let endpoint = auren::store::WebhookEndpoint {
        id: unique("wh"),
        url: format!("http://127.0.0.1:{}/hook", receiver.port),
        events: vec!["mode.switched".into()],
        user_ids: None,
        secret_sealed: key.seal(secret.as_bytes()),
        created_at: chrono::Utc::now(),
        disabled_at: None,
        disabled_reason: None,
    };
    auren::store::DeliveryStore::create_endpoint(store.as_ref(), &endpoint, &[])
        .await
        .unwrap();
    let mut settings = auren::settings::Settings::defaults().bridge.delivery;
    settings.webhook_allow_private = true;
    settings.delivery_concurrency = 4;
    // Two delivery loops, as two bridge processes would run them, on one store.
    let shutdown = auren::shutdown::Shutdown::new();
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let d = auren::delivery::Deliveries::new(&settings, Some(TOKEN_KEY), store.clone())
                .unwrap();
            d.spawn(&shutdown);
            d
        })
        .collect();
    // 10 users x 10 switches, committed in batches while the loops run.
    let users: Vec<String> = (0..10)
        .map(|i| format!("u_{i:02}{}", unique("p")))
        .collect();
    let mut want: HashMap<String, Vec<String>> = HashMap::new();
    for round in 0..10 {
        let switches: Vec<_> = users
            .iter()
            .map(|u| {
                let mut m: auren::messages::SwitchMessage =
                    serde_json::from_value(json!({
                        "schema": 1, "switch_id": unique("sw"), "thread_id": auren::messages::thread_id(u),
                        "user_id": "x", "user_pseudonym": u, "from_mode": "PATTERN", "to_mode": "REFLEX",
                        "at": chrono::Utc::now(), "confidence": 0.8, "reasons": [], "snapshot": {},
                        "calibrating": false, "event_id": unique("e")}))
                    .unwrap();
                m.confidence = 0.5 + round as f64 / 100.0;
                want.entry(u.clone()).or_default().push(m.switch_id.clone());
                m
            })
            .collect();
        let checkpoints = users
            .iter()
            .map(|u| auren::store::CheckpointRow {
                checkpoint_id: uuid::Uuid::now_v7().to_string(),
                parent_id: None,
                thread_id: auren::messages::thread_id(u),
                pseudonym: u.clone(),
                user_id: "x".into(),
                mode: "REFLEX".into(),
                version: round,
                state: json!({}),
                last_position: None,
            })
            .collect();
        store
            .commit(&CommitBatch {
                checkpoints,
                switches,
                ..Default::default()
            })
            .await
            .unwrap();
        for d in &loops {
            d.waker().wake();
        }
    }
    eventually(60, "every switch delivered", || async {
        (receiver.received().len() >= 100).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got = receiver.received();
    assert_eq!(got.len(), 100, "each switch exactly once");
    let mut per_user: HashMap<String, Vec<String>> = HashMap::new();
    let owner: HashMap<String, String> = want
        .iter()
        .flat_map(|(u, ids)| ids.iter().map(move |id| (id.clone(), u.clone())))
        .collect();
    for r in &got {
        assert_eq!(r["verified"], true);
        let id = r["switch_id"].as_str().unwrap().to_string();
        per_user.entry(owner[&id].clone()).or_default().push(id);
    }
    assert_eq!(per_user, want, "each user's switches in commit order");
    shutdown.trigger();
    assert!(shutdown.drain(Duration::from_secs(30)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_langgraph_server_holds_up_neither_the_bridge_nor_the_webhooks() {
    let dead = format!("http://127.0.0.1:{}", free_port());
    let app = TestApp::spawn_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        move |s| {
            s.bridge.delivery.langgraph_url = Some(dead.parse().unwrap());
            s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
            s.bridge.delivery.webhook_allow_private = true;
        },
    )
    .await;
    let receiver = Receiver::start(app.data_dir.path(), 0);
    register(&app.url(""), &receiver, None).await;
    let user = unique("lg_dead");
    stressed(&app, &user).await;
    // The switch is committed and published, and reaches the webhook, while LangGraph fails.
    let published = app.first_switch(60, "the published switch").await;
    eventually(60, "the webhook delivery", || async {
        receiver
            .received()
            .iter()
            .any(|r| r["switch_id"] == published["switch_id"] && r["answered"] == 204)
            .then_some(())
    })
    .await;
    eventually(60, "failed LangGraph attempts, retried", || async {
        let m = app.metrics().await;
        (metric_value(
            &m,
            "auren_agent_deliveries_total{sink=\"langgraph\",outcome=\"failed\"}",
        ) >= 1.0)
            .then_some(())
    })
    .await;
    // Ingest still answers at once.
    let key = app.issue_key(&user).await;
    let started = std::time::Instant::now();
    let r = app
        .push(
            &key,
            &user,
            &[("heartRate", 70.0, chrono::Utc::now().to_rfc3339())],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
    let backlog = app
        .backends
        .stores()
        .await
        .unwrap()
        .deliveries
        .backlog("langgraph")
        .await
        .unwrap();
    assert!(backlog >= 1, "the switch waits in the store for LangGraph");
    app.stop().await;
}
