//! Live event streams (`GET /users/{id}/events`, `GET /admin/events`) against the real service
//! on the embedded default: a switch decided by the bridge arrives live; a client that
//! reconnects with `Last-Event-ID` gets exactly the switches it missed, in order, then live ones
//! without repeats; a client that stops reading is dropped (with a final event) while another
//! keeps receiving; no stream without a key.

mod common;
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One Server-Sent Event as a client sees it.
#[derive(Debug, Clone, Default)]
struct SseEvent {
    event: String,
    id: Option<String>,
    data: String,
}

impl SseEvent {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

/// A streaming response read event by event (comments skipped, as `EventSource` does).
struct SseClient {
    resp: reqwest::Response,
    buf: String,
}

impl SseClient {
    async fn open(app: &TestApp, path: &str, token: &str, last_event_id: Option<&str>) -> Self {
        let mut req = app.client.get(app.url(path)).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseClient {
            resp,
            buf: String::new(),
        }
    }

    /// The next event, or None if none comes within `wait` (or the stream ended).
    async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut ev = SseEvent::default();
                let mut data = Vec::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        ev.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        ev.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push(v.to_string());
                    }
                }
                if ev.event.is_empty() && data.is_empty() {
                    continue; // a comment (keep-alive)
                }
                ev.data = data.join("\n");
                return Some(ev);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    /// The next event named `name`, skipping others (state updates).
    async fn next_named(&mut self, name: &str, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await?;
            if ev.event == name {
                return Some(ev);
            }
        }
    }
}

/// One night's HRV and heart rate, `days_ago` days back at 06:00 UTC: a crash (SDNN 12 ms with
/// the heart rate 25 bpm over its baseline) or a normal night (42 ms, 65 bpm).
fn night(days_ago: i64, crash: bool) -> Vec<(&'static str, f64, String)> {
    let day = (chrono::Utc::now() - chrono::Duration::days(days_ago))
        .date_naive()
        .and_hms_opt(6, 0, 0)
        .unwrap()
        .and_utc();
    let (hr, hrv) = if crash { (95.0, 12.0) } else { (65.0, 42.0) };
    vec![
        ("heartRate", hr, day.to_rfc3339()),
        (
            "heartRateVariabilitySDNN",
            hrv,
            (day + chrono::Duration::seconds(30)).to_rfc3339(),
        ),
    ]
}

async fn history_ids(app: &TestApp, user: &str) -> Vec<String> {
    let (s, modes) = app.get_json(&format!("/users/{user}/modes"), ADMIN).await;
    assert_eq!(s, 200, "{modes}");
    let mut ids: Vec<String> = modes["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["switch_id"].as_str().unwrap().to_string())
        .collect();
    ids.reverse(); // oldest first
    ids
}

async fn wait_history(app: &TestApp, user: &str, n: usize) -> Vec<String> {
    eventually(30, "switches in the history", || async {
        let ids = history_ids(app, user).await;
        (ids.len() >= n).then_some(ids)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_arrives_live_and_a_reconnect_gets_exactly_the_missed_ones() {
    let app = TestApp::spawn(Options {
        bridge: true,
        ..Default::default()
    })
    .await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let path = format!("/users/{user}/events");
    let wait = Duration::from_secs(30);

    // Live: a simulated HRV crash, decided by the bridge, reaches the open stream.
    let mut live = SseClient::open(&app, &path, &key, None).await;
    let mut admin = SseClient::open(&app, "/admin/events", ADMIN, None).await;
    assert_eq!(app.push(&key, &user, &night(10, true)).await.status(), 200);
    // The switch, and the state (from the cache) in REFLEX, in either order.
    let (mut first, mut reflex_state) = (None, None);
    while first.is_none() || reflex_state.is_none() {
        let ev = live.next(wait).await.expect("a live switch and state");
        match ev.event.as_str() {
            "mode_switch" => first = Some(ev),
            "state" if ev.json()["mode"] == "REFLEX" => reflex_state = Some(ev),
            _ => {}
        }
    }
    let (first, state) = (first.unwrap(), reflex_state.unwrap().json());
    assert_eq!(state["latest"]["hrv_sdnn"], 12.0, "{state}");
    assert_eq!(state["calibrating"], true, "{state}");
    assert!(state.get("baselines").is_some(), "{state}");
    let msg = first.json();
    assert_eq!(msg["to_mode"], "REFLEX", "{msg}");
    assert_eq!(msg["user_id"], user.as_str());
    assert_eq!(msg["reasons"][0]["rule"], "hrv_drop_ms", "{msg}");
    assert_eq!(
        first.id.as_deref(),
        msg["switch_id"].as_str(),
        "the SSE id is the switch id"
    );
    let seen_by_admin = admin.next_named("mode_switch", wait).await.unwrap();
    assert_eq!(seen_by_admin.id, first.id);

    // Disconnected, the user recovers, crashes and recovers again: three switches missed.
    drop(live);
    for (days_ago, crash) in [(9, false), (8, true), (7, false)] {
        assert_eq!(
            app.push(&key, &user, &night(days_ago, crash))
                .await
                .status(),
            200
        );
    }
    let history = wait_history(&app, &user, 4).await;
    assert_eq!(history.len(), 4);
    assert_eq!(history[0], first.id.clone().unwrap());

    // Reconnected with Last-Event-ID: exactly the missed ones, in order.
    let mut back = SseClient::open(&app, &path, &key, first.id.as_deref()).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let ev = back
            .next_named("mode_switch", wait)
            .await
            .expect("a missed switch");
        got.push(ev.id.unwrap());
    }
    assert_eq!(got, history[1..].to_vec());
    // Then live ones, without a repeat of those replayed.
    assert_eq!(app.push(&key, &user, &night(6, true)).await.status(), 200);
    let next = back.next_named("mode_switch", wait).await.unwrap();
    let history = wait_history(&app, &user, 5).await;
    assert_eq!(next.id.as_deref(), Some(history[4].as_str()));
    assert!(
        back.next_named("mode_switch", Duration::from_secs(2))
            .await
            .is_none(),
        "no duplicate"
    );

    // The admin stream saw all five, in order, once each.
    let mut admin_ids = vec![seen_by_admin.id.unwrap()];
    while admin_ids.len() < 5 {
        let ev = admin.next_named("mode_switch", wait).await.unwrap();
        admin_ids.push(ev.id.unwrap());
    }
    assert_eq!(admin_ids, history);

    // The query parameter works like the header; an unknown position says so, then goes live.
    let mut by_query = SseClient::open(
        &app,
        &format!("{path}?last_event_id={}", history[2]),
        &key,
        None,
    )
    .await;
    for want in &history[3..] {
        let ev = by_query.next_named("mode_switch", wait).await.unwrap();
        assert_eq!(ev.id.as_deref(), Some(want.as_str()));
    }
    // Another user's switch id is not a position in this user's history.
    let other = unique("user");
    let other_key = app.issue_key(&other).await;
    let mut unknown = SseClient::open(&app, &path, &key, Some("not-a-switch")).await;
    let ev = unknown.next(wait).await.unwrap();
    assert_eq!(ev.event, "position_unknown");
    assert_eq!(ev.json()["reason"], "unknown_last_event_id");
    let mut foreign = SseClient::open(
        &app,
        &format!("/users/{other}/events"),
        &other_key,
        Some(&history[0]),
    )
    .await;
    assert_eq!(foreign.next(wait).await.unwrap().event, "position_unknown");
    assert_eq!(app.push(&key, &user, &night(5, false)).await.status(), 200);
    let live_after_unknown = unknown.next_named("mode_switch", wait).await.unwrap();
    assert_eq!(live_after_unknown.json()["to_mode"], "PATTERN");

    let m = app.metrics().await;
    assert!(
        metric_value(&m, r#"auren_sse_clients{stream="user"}"#) >= 3.0,
        "{m}"
    );
    assert!(
        metric_value(&m, r#"auren_sse_clients{stream="admin"}"#) >= 1.0,
        "{m}"
    );
    drop((back, by_query, unknown, foreign, admin));
    app.stop().await;
}

/// A switch message as a bridge would publish it, padded to about 1 KB.
fn synthetic_switch(i: usize) -> auren::log::Record {
    let id = format!("synthetic{i:08}");
    let pseudonym = format!("u_{:032x}", i % 7);
    let msg = serde_json::json!({
        "schema": 1, "switch_id": id, "thread_id": format!("thr_{:032x}", i % 7),
        "user_id": format!("user-{}", i % 7), "user_pseudonym": pseudonym,
        "from_mode": "PATTERN", "to_mode": "REFLEX", "at": "2025-03-01T15:01:00Z",
        "confidence": 0.7,
        "reasons": (0..8).map(|k| serde_json::json!({"rule": "heart_rate_elevated", "metric": "heart_rate",
            "value": 100.0 + k as f64, "baseline": 70.0, "threshold": 100.0})).collect::<Vec<_>>(),
        "snapshot": {"heart_rate": 112.0}, "calibrating": false, "event_id": format!("e{i:031}"),
    });
    auren::log::Record {
        key: pseudonym,
        event_id: id,
        value: msg.to_string().into_bytes(),
    }
}

/// An admin stream on a raw socket with a small receive window, that reads nothing yet.
async fn stalled_client(app: &TestApp) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(app.addr).await.unwrap();
    let request =
        format!("GET /admin/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// Everything a socket gives until the server ends the chunked answer or closes the socket;
/// true when it was closed.
async fn read_answer(stream: &mut tokio::net::TcpStream, got: &mut Vec<u8>) -> bool {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return true;
        }
        got.extend_from_slice(&chunk[..n]);
        if got.ends_with(b"\r\n0\r\n\r\n") {
            return false;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_dropped_while_another_keeps_receiving() {
    let app = TestApp::spawn(Options {
        settings: Some(|s| s.http.sse_client_buffer = 64),
        ..Default::default()
    })
    .await;
    // Two clients stop reading: one starts again as soon as it is dropped, one never does.
    let mut late_reader = stalled_client(&app).await;
    let mut never_reads = stalled_client(&app).await;
    let mut reader = SseClient::open(&app, "/admin/events", ADMIN, None).await;
    eventually(10, "three streams open", || async {
        let m = app.metrics().await;
        (metric_value(&m, r#"auren_sse_clients{stream="admin"}"#) >= 3.0).then_some(())
    })
    .await;
    let slow_before = metric_value(
        &app.metrics().await,
        r#"auren_sse_closed_total{reason="slow_client"}"#,
    );

    // A flood of switches on the topic (as bridges would publish them), in bursts.
    let total = 4000;
    let log = app.backends.log().await.unwrap();
    let topic = app.args.log.switches_topic.clone();
    let writer = tokio::spawn(async move {
        for burst in 0..total / 50 {
            let records = (burst * 50..(burst + 1) * 50)
                .map(synthetic_switch)
                .collect();
            log.append(&topic, records).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // The late reader reads again once both stalled clients were dropped.
    let metrics_url = format!("http://{}/metrics", app.metrics_addr);
    let late = tokio::spawn(async move {
        eventually(60, "the stalled clients dropped", || async {
            let m = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
            let dropped =
                metric_value(&m, r#"auren_sse_closed_total{reason="slow_client"}"#) - slow_before;
            (dropped >= 2.0).then_some(())
        })
        .await;
        let mut got = Vec::new();
        let closed = tokio::time::timeout(
            Duration::from_secs(20),
            read_answer(&mut late_reader, &mut got),
        )
        .await
        .expect("the dropped client's answer ends");
        (closed, String::from_utf8_lossy(&got).into_owned())
    });
    // The reading client gets every one, once, each user's in order (users are spread over the
    // topic's partitions, which interleave).
    let mut last_of_user: std::collections::HashMap<usize, usize> = Default::default();
    for n in 0..total {
        let ev = reader
            .next_named("mode_switch", Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("only {n} switches arrived"));
        let i: usize = ev.id.unwrap()["synthetic".len()..].parse().unwrap();
        if let Some(prev) = last_of_user.insert(i % 7, i) {
            assert_eq!(
                i,
                prev + 7,
                "user {}'s switches in order, none twice",
                i % 7
            );
        } else {
            assert_eq!(i, i % 7, "user {}'s first switch first", i % 7);
        }
    }
    writer.await.unwrap();

    // Reading again in time, the dropped client gets what was buffered, then the final event,
    // then the end of the answer.
    let (closed, text) = late.await.unwrap();
    assert!(!closed, "the answer ended, the connection was not cut");
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..200.min(text.len())]
    );
    let tail = &text[text.len().saturating_sub(300)..];
    assert!(
        tail.contains("event: closed") && tail.contains(r#""reason":"slow_client""#),
        "{tail}"
    );
    assert!(
        text.matches("event: mode_switch").count() < total,
        "dropped before the end"
    );
    // The one that never reads has its connection closed once the grace is over.
    let mut got = Vec::new();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let closed = tokio::time::timeout(
        Duration::from_secs(20),
        read_answer(&mut never_reads, &mut got),
    )
    .await
    .expect("the stuck client's connection ends");
    assert!(closed, "its connection was closed");
    let m = app.metrics().await;
    assert!(
        metric_value(
            &m,
            r#"auren_http_connections_closed_total{reason="closed_by_handler"}"#
        ) >= 1.0,
        "{m}"
    );
    // The reader is still served.
    let log = app.backends.log().await.unwrap();
    log.append(&app.args.log.switches_topic, vec![synthetic_switch(total)])
        .await
        .unwrap();
    let ev = reader
        .next_named("mode_switch", Duration::from_secs(10))
        .await
        .expect("the reader still receives");
    assert_eq!(ev.id.unwrap(), format!("synthetic{total:08}"));
    drop(reader);
    app.stop().await;
}

#[tokio::test]
async fn streams_need_the_users_key_or_the_admin_token() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let other_key = app.issue_key(&unique("user")).await;
    let get = |path: String, token: Option<String>| {
        let mut req = app.client.get(app.url(&path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { problem(req.send().await.unwrap()).await }
    };
    let user_path = format!("/users/{user}/events");
    let (s, p) = get(user_path.clone(), None).await;
    assert_eq!((s, p["reason"].as_str()), (401, Some("missing_token")));
    let (s, p) = get(user_path.clone(), Some("auren_hk_nonsense".into())).await;
    assert_eq!((s, p["reason"].as_str()), (401, Some("invalid_api_key")));
    let (s, p) = get(user_path.clone(), Some(other_key)).await;
    assert_eq!((s, p["reason"].as_str()), (403, Some("user_mismatch")));
    let (s, p) = get("/admin/events".into(), None).await;
    assert_eq!((s, p["reason"].as_str()), (401, Some("missing_token")));
    let (s, p) = get("/admin/events".into(), Some(key.clone())).await;
    assert_eq!((s, p["reason"].as_str()), (403, Some("not_admin")));
    let (s, p) = get("/users/%20lead/events".into(), Some(key.clone())).await;
    assert_eq!((s, p["reason"].as_str()), (400, Some("invalid_user_id")));
    // With the key it opens; shutting down ends it with a final event.
    let mut ok = SseClient::open(&app, &user_path, &key, None).await;
    let mut admin = SseClient::open(&app, "/admin/events", ADMIN, None).await;
    let stop = tokio::spawn(app.stop());
    for client in [&mut ok, &mut admin] {
        let ev = client.next(Duration::from_secs(10)).await.unwrap();
        assert_eq!(ev.event, "closed");
        assert_eq!(ev.json()["reason"], "shutting_down");
        assert!(client.next(Duration::from_secs(10)).await.is_none());
    }
    tokio::time::timeout(Duration::from_secs(15), stop)
        .await
        .expect("the service stops promptly with streams open")
        .unwrap();
}

/// The log port's `follow`, on whichever log `settings` names: from a position taken with
/// `end_offsets` it yields exactly what came after, live; from nowhere, everything; an unknown
/// topic is said so.
async fn follow_contract(settings: &auren::settings::Settings) {
    use futures::StreamExt;
    let backends = auren::root::Backends::new(settings.backends());
    let log = backends.log().await.unwrap();
    let topic = unique("follow");
    let mut missing = log.follow(&topic, &[]);
    match tokio::time::timeout(Duration::from_secs(30), missing.next()).await {
        Ok(Some(Err(auren::log::LogError::UnknownTopic(t)))) => assert_eq!(t, topic),
        other => panic!("an unknown topic is said so: {other:?}"),
    }
    log.create_topics(&[&topic], 3, 1).await.unwrap();
    let rec = |i: usize| auren::log::Record {
        key: format!("u_{}", i % 5),
        event_id: format!("r{i}"),
        value: format!("{i}").into_bytes(),
    };
    log.append(&topic, (0..6).map(rec).collect()).await.unwrap();
    let position = log.end_offsets(&topic).await.unwrap();
    let mut after = log.follow(&topic, &position);
    let mut everything = log.follow(&topic, &[]);
    log.append(&topic, (6..10).map(rec).collect())
        .await
        .unwrap();
    async fn values(s: &mut auren::log::RecordStream, n: usize) -> Vec<usize> {
        let mut out = Vec::new();
        while out.len() < n {
            let r = tokio::time::timeout(Duration::from_secs(30), s.next())
                .await
                .expect("records arrive")
                .expect("the stream goes on")
                .expect("no error");
            out.push(String::from_utf8(r.value).unwrap().parse().unwrap());
        }
        out.sort();
        out
    }
    assert_eq!(values(&mut after, 4).await, (6..10).collect::<Vec<_>>());
    assert_eq!(
        values(&mut everything, 10).await,
        (0..10).collect::<Vec<_>>()
    );
    // Nothing more, and records appended later come live.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), after.next())
            .await
            .is_err(),
        "nothing beyond what was appended"
    );
    log.append(&topic, vec![rec(10)]).await.unwrap();
    assert_eq!(values(&mut after, 1).await, vec![10]);
}

#[tokio::test]
async fn the_embedded_log_follows_from_a_position() {
    let dir = tempfile::tempdir().unwrap();
    follow_contract(&service_args(&Options::default(), dir.path()).await).await;
}

#[tokio::test]
async fn kafka_follows_from_a_position() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        kafka: true,
        ..Default::default()
    };
    follow_contract(&service_args(&o, dir.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kafka_every_ingest_process_streams_the_switches_of_a_separate_bridge() {
    let dir = tempfile::tempdir().unwrap();
    let o = Options {
        kafka: true,
        postgres: true,
        redis: true,
        ..Default::default()
    };
    let args = service_args(&o, dir.path()).await;
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../config/biometric_thresholds.yaml");
    let (port_a, port_b) = (free_port(), free_port());
    let mut children = common::recovery::Children(Vec::new());
    // Two ingest-only processes and one bridge, sharing Kafka, PostgreSQL and Redis.
    for (port, command) in [
        (port_a, &["serve", "--no-bridge"][..]),
        (port_b, &["serve", "--no-bridge"][..]),
        (free_port(), &["bridge"][..]),
    ] {
        children
            .0
            .push(common::recovery::spawn_auren(&args, port, &config, command));
    }
    let client = reqwest::Client::new();
    for port in [port_a, port_b] {
        eventually(60, "an ingest process listening", || async {
            let r = client
                .get(format!("http://127.0.0.1:{port}/health"))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }
    let user = unique("user");
    let key: serde_json::Value = client
        .post(format!("http://127.0.0.1:{port_a}/admin/users/{user}/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let open = |port: u16, path: String, token: String| {
        let client = client.clone();
        async move {
            let resp = client
                .get(format!("http://127.0.0.1:{port}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            SseClient {
                resp,
                buf: String::new(),
            }
        }
    };
    let mut on_a = open(port_a, format!("/users/{user}/events"), key.clone()).await;
    let mut on_b = open(port_b, "/admin/events".into(), ADMIN.into()).await;

    // The crash is pushed to one ingest process; the bridge decides; both stream it.
    let body = serde_json::json!({"user_id": user, "samples": night(10, true).iter()
        .map(|(t, v, ts)| serde_json::json!({"type": t, "value": v, "timestamp": ts, "source": "Apple Watch"}))
        .collect::<Vec<_>>()});
    let r = client
        .post(format!("http://127.0.0.1:{port_a}/webhooks/healthkit"))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let wait = Duration::from_secs(60);
    let (mut switch, mut reflex_state) = (None, None);
    while switch.is_none() || reflex_state.is_none() {
        let ev = on_a.next(wait).await.expect("a switch and a state on A");
        match ev.event.as_str() {
            "mode_switch" => switch = Some(ev),
            // The bridge's state, read from Redis by the ingest process.
            "state" if ev.json()["mode"] == "REFLEX" => reflex_state = Some(ev),
            _ => {}
        }
    }
    let switch = switch.unwrap();
    assert_eq!(switch.json()["to_mode"], "REFLEX");
    assert_eq!(switch.json()["user_id"], user.as_str());
    let on_b = on_b
        .next_named("mode_switch", wait)
        .await
        .expect("the switch on B");
    assert_eq!(on_b.id, switch.id);
    drop(children);
}
