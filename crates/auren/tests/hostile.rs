//! Hostile clients against the real listener on the embedded default: slow and silent
//! connections, oversized declarations, floods of invalid samples, password guessing, and
//! requests for what does not exist. Raw TCP where a well-behaved HTTP client could not
//! misbehave the way an attacker does.

mod common;
use common::*;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw response: status, lower-cased headers, body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response from `s`, or None when the connection closes (or `within` passes) first.
async fn read_response(s: &mut TcpStream, within: Duration) -> Option<Raw> {
    let deadline = Instant::now() + within;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let mut lines = head.lines();
            let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
            let headers: Vec<(String, String)> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                .collect();
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
                    .await
                    .ok()?
                    .ok()?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..]).to_string();
            return Some(Raw {
                status,
                headers,
                body,
            });
        }
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// True when the server closes `s` within `within` (reads EOF or a reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// `auren serve` as a child on `args` (fresh ports), its stderr to `stderr()`, once it answers.
/// A child that exits before answering is started again on other ports (another test may have
/// taken a free port between its choice and the bind); a third exit fails with its status.
async fn spawn_serve(
    mut args: auren::settings::Settings,
    stderr: impl Fn() -> std::process::Stdio,
) -> (std::process::Child, String) {
    let client = reqwest::Client::new();
    for attempt in 1..=3 {
        let port = free_port();
        args.http.http_addr = format!("127.0.0.1:{port}").parse().unwrap();
        args.metrics.metrics_addr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut child = auren_command(&args)
            .arg("serve")
            .stdout(std::process::Stdio::null())
            .stderr(stderr())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(attempt < 3, "auren serve exited before answering: {status}");
                break;
            }
            let up = client
                .get(format!("{url}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if up {
                return (child, url);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("auren serve did not answer /health within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    unreachable!("the third exit fails above")
}

/// Headers of a signed WHOOP delivery whose body will never come complete.
fn whoop_head(app: &TestApp, content_length: usize) -> String {
    let body = whoop_body("never-sent");
    let mut head = format!(
        "POST /webhooks/whoop HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {content_length}\r\n",
        app.addr
    );
    for (k, v) in whoop_headers(WHOOP_SECRET, &now_millis(), &body) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_and_silent_clients_do_not_stop_signed_webhooks() {
    let app = TestApp::spawn(Options {
        // Few slots, so that slow clients holding them would show at once.
        max_concurrent_events: Some(8),
        settings: Some(|s| s.http.body_read_timeout_ms = 60_000),
        ..Default::default()
    })
    .await;
    // 60 attackers: 30 send a signed head and dribble the body, 30 send the head and withhold it.
    let mut attackers = Vec::new();
    for i in 0..60 {
        let mut s = TcpStream::connect(app.addr).await.unwrap();
        s.write_all(whoop_head(&app, 4000).as_bytes())
            .await
            .unwrap();
        attackers.push((i % 2 == 0, s));
    }
    let dribble = tokio::spawn(async move {
        for _ in 0..40 {
            for (dribbles, s) in attackers.iter_mut() {
                if *dribbles {
                    let _ = s.write_all(b" ").await;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        attackers
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Legitimate signed webhooks, 8 at a time, while the attackers hold their connections.
    let mut ok = 0;
    for round in 0..15 {
        let bodies: Vec<String> = (0..8)
            .map(|i| whoop_body(&format!("legit-{round}-{i}")))
            .collect();
        let batch = bodies.iter().map(|b| app.post_whoop(b));
        for r in futures::future::join_all(batch).await {
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            ok += 1;
        }
    }
    assert_eq!(ok, 120);
    let ready = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "slow clients hold no processing slot");
    assert_eq!(app.logged_events().await.len(), 120);
    drop(dribble.await.unwrap());
    app.stop().await;
}

#[tokio::test]
async fn a_declared_oversized_body_gets_413_before_it_is_sent() {
    let app = TestApp::spawn(Options::default()).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(whoop_head(&app, 13_000_000).as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut s, Duration::from_secs(5))
        .await
        .expect("an answer without the body");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(r.status, 413);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(r.body.contains("body_too_large"), "{}", r.body);
    app.stop().await;
}

#[tokio::test]
async fn idle_half_sent_and_dribbled_connections_are_closed_by_their_timers() {
    let app = TestApp::spawn(Options {
        settings: Some(|s| {
            s.http.idle_timeout_ms = 600;
            s.http.header_read_timeout_ms = 1_500;
            s.http.body_read_timeout_ms = 1_000;
        }),
        ..Default::default()
    })
    .await;
    // Silent from the start: the idle timer.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    // A keep-alive connection after one request: the idle timer again.
    let mut kept = TcpStream::connect(app.addr).await.unwrap();
    kept.write_all(format!("GET /health HTTP/1.1\r\nhost: {}\r\n\r\n", app.addr).as_bytes())
        .await
        .unwrap();
    let r = read_response(&mut kept, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Half a header: the header timer, not the (shorter) idle one, and not never.
    let mut half = TcpStream::connect(app.addr).await.unwrap();
    half.write_all(b"POST /webhooks/whoop HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(3)).await);
    assert!(closed_within(&mut kept, Duration::from_secs(3)).await);
    assert!(closed_within(&mut half, Duration::from_secs(4)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(1_000),
        "a header in progress gets the header timeout, not the idle one"
    );
    // A body dribbled past its deadline: 408 problem, and the connection closes.
    let mut slow = TcpStream::connect(app.addr).await.unwrap();
    slow.write_all(whoop_head(&app, 100).as_bytes())
        .await
        .unwrap();
    slow.write_all(b"{").await.unwrap();
    let r = read_response(&mut slow, Duration::from_secs(5))
        .await
        .expect("a 408");
    assert_eq!(r.status, 408);
    assert!(r.body.contains("body_timeout"), "{}", r.body);
    let m = app.metrics().await;
    assert!(
        metric_value(
            &m,
            "auren_http_connections_closed_total{reason=\"idle_timeout\"}"
        ) >= 2.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "auren_http_connections_closed_total{reason=\"header_timeout\"}"
        ) >= 1.0
    );
    app.stop().await;
}

#[tokio::test]
async fn a_client_that_aborts_its_body_is_not_counted_as_too_large() {
    let app = TestApp::spawn(Options::default()).await;
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(whoop_head(&app, 500).as_bytes()).await.unwrap();
    s.write_all(b"{\"partial\":").await.unwrap();
    s.shutdown().await.unwrap(); // half-close: the body ends early
    let r = read_response(&mut s, Duration::from_secs(3)).await;
    if let Some(r) = r {
        assert_eq!(r.status, 400);
        assert!(r.body.contains("body_incomplete"), "{}", r.body);
    }
    eventually(5, "the abort counted as incomplete", || async {
        (metric_value(
            &app.metrics().await,
            "auren_webhook_events_total{source=\"whoop\",outcome=\"body_incomplete\"}",
        ) >= 1.0)
            .then_some(())
    })
    .await;
    app.stop().await;
}

/// Samples that are all invalid, as many as fit the body: the answer and the work stay bounded.
#[tokio::test]
async fn half_a_million_invalid_samples_get_a_bounded_answer() {
    let app = TestApp::spawn(Options {
        max_body_bytes: Some(8 * 1024 * 1024),
        ..Default::default()
    })
    .await;
    let key = app.issue_key("flood").await;
    let auth = [("authorization", format!("Bearer {key}"))];
    // HealthKit: 500,000 empty samples in 1 MB.
    let body = format!(
        "{{\"user_id\":\"flood\",\"samples\":[{}]}}",
        vec!["{}"; 500_000].join(",")
    );
    let r = app.post("/webhooks/healthkit", &auth, body).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 413, "{}", &text[..text.len().min(300)]);
    assert!(text.len() < 4096, "answer of {} bytes", text.len());
    assert!(text.contains("too_many_samples"), "{text}");
    // Under the sample cap, every sample invalid: 422 listing 100 and counting the rest.
    let sample = r#"{"type":"heartRate","value":-1,"timestamp":"2025-01-27T10:30:00Z","unit":"UUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU"}"#;
    let body = format!(
        "{{\"user_id\":\"flood\",\"samples\":[{}]}}",
        vec![sample; 20_000].join(",")
    );
    let r = app.post("/webhooks/healthkit", &auth, body).await;
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["rejected_total"], 20_000);
    assert_eq!(v["rejected"].as_array().unwrap().len(), 100);
    assert!(
        v.to_string().len() < 64 * 1024,
        "answer of {} bytes",
        v.to_string().len()
    );
    assert!(
        !v.to_string().contains(
            "UUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUUU"
        ),
        "an unbounded unit string is never echoed"
    );
    // Health Auto Export: one metric with 500,000 points.
    let point = r#"{"date":"2025-01-27 10:30:00 +0000","qty":-5}"#;
    let body = format!(
        "{{\"data\":{{\"metrics\":[{{\"name\":\"heart_rate\",\"units\":\"count/min\",\"data\":[{}]}}]}}}}",
        vec![point; 100_000].join(",")
    );
    let r = app.post("/webhooks/health-auto-export", &auth, body).await;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 413, "{}", &text[..text.len().min(300)]);
    assert!(text.len() < 4096);
    assert!(app.logged_events().await.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn repeated_failed_authentication_gets_429_with_retry_after() {
    let app = TestApp::spawn(Options {
        settings: Some(|s| s.http.auth_failures_per_minute = 5),
        ..Default::default()
    })
    .await;
    let key = app.issue_key("victim").await;
    let push = |k: String| {
        let app = &app;
        async move {
            app.post(
                "/webhooks/healthkit",
                &[("authorization", format!("Bearer {k}"))],
                r#"{"user_id":"victim","samples":[]}"#,
            )
            .await
        }
    };
    for i in 0..5 {
        let r = push(format!("guess-{i}")).await;
        assert_eq!(r.status(), 401);
    }
    let r = push("guess-5".into()).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (_, p) = problem(r).await;
    assert_eq!(p["reason"], "too_many_failed_attempts");
    // During the lockout even the right key is refused: a guesser learns nothing.
    assert_eq!(push(key.clone()).await.status(), 429);
    // The admin endpoints and the Oura handshake share the lockout.
    let (status, _) = app.get_json("/users/victim/state", ADMIN).await;
    assert_eq!(status, 429);
    let r = app
        .client
        .get(app.url(&format!(
            "/webhooks/oura?verification_token={OURA_TOKEN}&challenge=c"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Signed vendor webhooks are not authentication guesses: they go on.
    assert_eq!(
        app.post_whoop(&whoop_body("during-lockout")).await.status(),
        200
    );
    let m = app.metrics().await;
    assert!(metric_value(&m, "auren_auth_lockouts_total") >= 1.0);
    app.stop().await;
}

#[tokio::test]
async fn every_error_is_problem_json_and_every_answer_has_security_headers() {
    let app = TestApp::spawn(Options::default()).await;
    let key = app.issue_key("u1").await;
    let get = |path: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url(path))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap()
        }
    };
    let cases: Vec<(reqwest::Response, u16, &str)> = vec![
        (get("/no/such/path").await, 404, "not_found"),
        (
            app.client
                .delete(app.url("/webhooks/whoop"))
                .send()
                .await
                .unwrap(),
            405,
            "method_not_allowed",
        ),
        (get("/users/u1/modes?limit=abc").await, 400, "invalid_query"),
        (get("/users/u1/modes?limit=0").await, 400, "invalid_query"),
        (get("/users/u1/modes?limit=-1").await, 400, "invalid_query"),
        (
            get("/users/u1/modes?limit=1001").await,
            400,
            "invalid_query",
        ),
        (get("/users/a%2Fb/state").await, 400, "invalid_user_id"),
        (get("/users/a%0Ab/modes").await, 400, "invalid_user_id"),
        (
            get("/users/%E2%80%AEevil/state").await,
            400,
            "invalid_user_id",
        ),
        (
            app.client
                .post(app.url("/admin/users/a%00b/keys"))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap(),
            400,
            "invalid_user_id",
        ),
        (
            app.client
                .get(app.url("/users/u1/state"))
                .header("x-api-key", "")
                .send()
                .await
                .unwrap(),
            401,
            "missing_token",
        ),
    ];
    for (r, status, reason) in cases {
        let url = r.url().to_string();
        assert_eq!(r.headers()["cache-control"], "no-store", "{url}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{url}");
        let (got, p) = problem(r).await;
        assert_eq!(
            (got, p["reason"].as_str().unwrap()),
            (status, reason),
            "{url}: {p}"
        );
        assert!(p["detail"].as_str().unwrap().len() <= 300, "{url}: {p}");
    }
    // A dot segment, sent raw: HTTP clients normalise it away before it leaves them.
    let mut s = TcpStream::connect(app.addr).await.unwrap();
    s.write_all(
        format!(
            "GET /users/%2E%2E/state HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {ADMIN}\r\n\r\n",
            app.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s, Duration::from_secs(3)).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("invalid_user_id"), "{}", r.body);
    // A user's own data carries them too (none yet: the problem answer).
    let r = app
        .client
        .get(app.url("/users/u1/modes"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}

#[tokio::test]
async fn a_push_for_a_forged_user_id_is_refused() {
    let app = TestApp::spawn(Options::default()).await;
    let key = app.issue_key("u1").await;
    let body = r#"{"user_id":"../u1","samples":[{"type":"heartRate","value":70,"timestamp":"2025-01-27T10:30:00Z"}]}"#;
    let r = app
        .post(
            "/webhooks/healthkit",
            &[("authorization", format!("Bearer {key}"))],
            body,
        )
        .await;
    let (status, p) = problem(r).await;
    assert_eq!(
        (status, p["reason"].as_str().unwrap()),
        (400, "malformed_body")
    );
    app.stop().await;
}

/// The service's own log on a full device: writing it fails, ingest goes on.
#[tokio::test]
async fn stderr_on_a_full_device_leaves_ingest_running() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = service_args(&Options::default(), dir.path()).await;
    // Every request and every append logs a line.
    args.telemetry.rust_log = "debug".into();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full");
    let (mut child, url) = spawn_serve(args, || full.try_clone().unwrap().into()).await;
    let client = reqwest::Client::new();
    for i in 0..50 {
        let body = whoop_body(&format!("full-{i}"));
        let r = client
            .post(format!("{url}/webhooks/whoop"))
            .headers(
                whoop_headers(WHOOP_SECRET, &now_millis(), &body)
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                    .collect(),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "webhook {i}");
    }
    assert!(child.try_wait().unwrap().is_none(), "the service is alive");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A sample from the year 9999 is refused with its own reason, and cannot freeze the user: their
/// later, real readings still move their mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_from_9999_is_refused_and_later_data_still_moves_the_mode() {
    let app = TestApp::spawn(Options {
        bridge: true,
        ..Default::default()
    })
    .await;
    let key = app.issue_key("timetraveller").await;
    let start = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut samples = vec![
        ("heartRate", 70.0, "9999-12-31T23:59:59Z".to_string()),
        ("heartRate", 70.0, "0000-01-01T00:00:00Z".to_string()),
        ("heartRate", 70.0, "1900-01-01T00:00:00Z".to_string()),
    ];
    samples.push((
        "heartRate",
        68.0,
        (start - chrono::Duration::minutes(5)).to_rfc3339(),
    ));
    let r = app.push(&key, "timetraveller", &samples).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["accepted"], 1);
    let reasons: Vec<&str> = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "timestamp_in_future",
            "timestamp_too_old",
            "timestamp_too_old"
        ]
    );
    // Real data afterwards: an acute stress episode switches the user.
    let r = app
        .push(&key, "timetraveller", &stress_episode(start, 30))
        .await;
    assert_eq!(r.status(), 200);
    let switch = app
        .first_switch(30, "a switch after the refused samples")
        .await;
    assert_eq!(switch["to_mode"], "REFLEX");
    app.stop().await;
}

/// SIGHUP without a thresholds file: nothing to reload, and the process goes on (the signal's
/// default action would end it); the reload endpoint says so with its own status.
#[tokio::test]
async fn sighup_and_reload_without_a_thresholds_file() {
    let dir = tempfile::tempdir().unwrap();
    let args = service_args(&Options::default(), dir.path()).await;
    assert!(args.bridge.thresholds.biometric_config.is_none());
    let (mut child, url) = spawn_serve(args, std::process::Stdio::null).await;
    let client = reqwest::Client::new();
    for _ in 0..2 {
        std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );
    let r = client
        .post(format!("{url}/admin/reload"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let (status, p) = problem(r).await;
    assert_eq!(
        (status, p["reason"].as_str().unwrap()),
        (409, "no_config_file")
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// One access line per request, rejected ones included, with the route's template and never
/// the raw user id; every answer carries a request id.
#[tokio::test]
async fn the_access_log_names_routes_statuses_and_reasons_but_no_user_id() {
    let dir = tempfile::tempdir().unwrap();
    let mut args = service_args(&Options::default(), dir.path()).await;
    args.telemetry.rust_log = "warn,auren::access=info".into();
    let log_path = dir.path().join("service.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let (mut child, url) = spawn_serve(args, || log_file.try_clone().unwrap().into()).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{url}/users/secret-person-4711/state"))
        .bearer_auth("wrong-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("x-request-id"));
    let r = client
        .get(format!("{url}/no/such/path"))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-chosen-id");
    let body = whoop_body("bad-signature");
    let r = client
        .post(format!("{url}/webhooks/whoop"))
        .header("x-whoop-signature", "AAAA")
        .header("x-whoop-signature-timestamp", now_millis())
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    child.kill().unwrap();
    child.wait().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains('\u{1b}'), "no colour codes in a file: {log}");
    assert!(!log.contains("secret-person-4711"), "{log}");
    let line = |needles: &[&str]| log.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(
        line(&[
            "route=/users/{user_id}/state",
            "status=401",
            "reason=invalid_api_key"
        ]),
        "{log}"
    );
    assert!(
        line(&[
            "request_id=client-chosen-id",
            "status=404",
            "reason=not_found"
        ]),
        "{log}"
    );
    assert!(
        line(&[
            "route=/webhooks/whoop",
            "status=401",
            "reason=signature_mismatch"
        ]),
        "{log}"
    );
}

/// `/ready` turns 503 while every processing slot stays taken (here: the one slot waits on a
/// log held by another writer), and back to 200 once one frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_while_every_processing_slot_stays_taken() {
    let app = TestApp::spawn(Options {
        max_concurrent_events: Some(1),
        ..Default::default()
    })
    .await;
    assert_eq!(app.post_whoop(&whoop_body("first")).await.status(), 200);
    // Another writer holds the log's file: the next append waits, holding the only slot.
    let db = rusqlite::Connection::open(app.data_dir.path().join("events.db")).unwrap();
    db.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let slow = {
        let (client, url, body) = (
            app.client.clone(),
            app.url("/webhooks/whoop"),
            whoop_body("waits-for-the-log"),
        );
        tokio::spawn(async move {
            let mut req = client.post(url).body(body.clone());
            for (k, v) in whoop_headers(WHOOP_SECRET, &now_millis(), &body) {
                req = req.header(k, v);
            }
            req.send().await.unwrap().status().as_u16()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, p) = problem(app.client.get(app.url("/ready")).send().await.unwrap()).await;
    assert_eq!((status, p["reason"].as_str().unwrap()), (503, "overloaded"));
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    assert_eq!(slow.await.unwrap(), 200);
    let r = app.client.get(app.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}
