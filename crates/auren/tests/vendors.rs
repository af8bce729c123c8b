//! WHOOP as a data source, end to end against the in-repo fake WHOOP API (`vendors_fake`): a
//! user connects (OAuth2 with a sealed, single-use `state`), a `recovery.updated` notification
//! is fetched (sleep -> cycle -> recovery) into normalised readings, and a recovery of 30 puts
//! the user in GUARDIAN with the vendor's score as the reason. Token refresh on 401 (with
//! rotation), 429 and 5xx from the vendor, a refused refresh (revoked) and disconnecting.

mod common;

use auren::vendors_fake::{Failure, FakeWhoop};
use common::*;
use serde_json::json;

const TOKEN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const CLIENT_ID: &str = "whoop-test-client";

async fn fake_whoop() -> (FakeWhoop, String) {
    let fake = FakeWhoop::new(CLIENT_ID, WHOOP_SECRET);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(auren::vendors_fake::serve(
        listener,
        fake.clone(),
        std::future::pending(),
    ));
    (fake, url)
}

async fn app_with(o: Options, fake_url: &str) -> TestApp {
    let fake_url = fake_url.to_string();
    TestApp::spawn_with(o, move |s| {
        s.vendors.whoop_client_id = Some(CLIENT_ID.into());
        s.vendors.whoop_api_base_url = fake_url.parse().unwrap();
        s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
        s.vendors.pending_score_retry_seconds = 1;
    })
    .await
}

fn location(r: &reqwest::Response) -> String {
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Runs the browser's part: our redirect, the vendor's consent, back to our callback. Returns
/// the callback's path and query (to replay it) and its answer.
async fn connect(app: &TestApp, user: &str, key: &str) -> (String, reqwest::Response) {
    let client = no_redirects();
    let r = client
        .get(app.url(&format!("/connect/whoop?user_id={user}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let authorize = url::Url::parse(&location(&r)).unwrap();
    let q: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert!(q["scope"].split(' ').any(|s| s == "offline"), "{q:?}");
    assert!(q["scope"].split(' ').any(|s| s == "read:recovery"));
    assert_eq!(q["client_id"], CLIENT_ID);
    assert!(
        !q["state"].contains(user),
        "the state does not show the user"
    );
    let consent = client.get(authorize).send().await.unwrap();
    assert_eq!(consent.status(), 302);
    let back = url::Url::parse(&location(&consent)).unwrap();
    assert!(back.path().ends_with("/connect/whoop/callback"));
    let path = format!("{}?{}", back.path(), back.query().unwrap());
    let answer = client.get(app.url(&path)).send().await.unwrap();
    (path, answer)
}

fn whoop_notification(user: i64, sleep_id: &str) -> String {
    json!({"user_id": user, "id": sleep_id, "type": "recovery.updated",
        "trace_id": uuid::Uuid::new_v4().to_string()})
    .to_string()
}

/// The readings of `metric` in the log for our user `user`.
async fn readings(app: &TestApp, user: &str, metric: &str) -> Vec<f64> {
    app.logged_events()
        .await
        .iter()
        .filter(|e| e["subject"]["id"] == user && e["payload"]["metric"] == metric)
        .map(|e| e["payload"]["value"].as_f64().unwrap())
        .collect()
}

/// Everything the store holds about vendor connections, as text: the SQLite files whole, or
/// every row of PostgreSQL's table.
async fn stored_text(app: &TestApp) -> String {
    match &app.args.store.postgres_url {
        Some(url) => {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            let rows: Vec<(String,)> =
                sqlx::query_as("SELECT row_to_json(v)::text FROM vendor_connections v")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            assert!(!rows.is_empty());
            rows.into_iter().map(|r| r.0).collect::<Vec<_>>().join("\n")
        }
        None => {
            let mut db = Vec::new();
            for name in ["state.db", "state.db-wal"] {
                if let Ok(bytes) = std::fs::read(app.data_dir.path().join(name)) {
                    db.extend(bytes);
                }
            }
            let db = String::from_utf8_lossy(&db).into_owned();
            assert!(db.contains("vendor_connections"));
            db
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn whoop_connect_fetch_after_notify_and_guardian_on_the_embedded_default() {
    whoop_flow(Options {
        bridge: true,
        ..Default::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn whoop_connect_fetch_after_notify_and_guardian_on_postgres_and_redis() {
    whoop_flow(Options {
        bridge: true,
        postgres: true,
        redis: true,
        ..Default::default()
    })
    .await;
}

async fn whoop_flow(o: Options) {
    let (fake, fake_url) = fake_whoop().await;
    let app = app_with(o, &fake_url).await;
    let alice = unique("alice");
    let alice_key = app.issue_key(&alice).await;
    let bob_key = app.issue_key(&unique("bob")).await;

    // Another user's key cannot start alice's connection; Oura is not configured here.
    let r = no_redirects()
        .get(app.url(&format!("/connect/whoop?user_id={alice}")))
        .bearer_auth(&bob_key)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.0, 403);
    let r = no_redirects()
        .get(app.url(&format!("/connect/oura?user_id={alice}")))
        .bearer_auth(&alice_key)
        .send()
        .await
        .unwrap();
    let (status, body) = problem(r).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (404, Some("vendor_not_configured"))
    );

    // Connect.
    let whoop_user = fake.add_user();
    let (callback, answer) = connect(&app, &alice, &alice_key).await;
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("WHOOP is connected"));
    assert_eq!(fake.stats().code_exchanges, 1);
    let c = connections(&app, &alice).await;
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0]["status"], "connected");
    assert_eq!(c[0]["vendor_user_id"], whoop_user.to_string());
    assert!(
        !c[0].to_string().contains("v1."),
        "no sealed token is shown"
    );

    // A replayed state is refused, and so are forged ones.
    let (status, body) =
        problem(no_redirects().get(app.url(&callback)).send().await.unwrap()).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (400, Some("invalid_state")),
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().contains("already used"));
    let other_key = auren::crypto::TokenKey::parse(&auren::crypto::TokenKey::generate()).unwrap();
    let forged_state = other_key.seal(
        json!({"v": "whoop", "u": alice, "n": "n1", "e": chrono::Utc::now().timestamp() + 600})
            .to_string()
            .as_bytes(),
    );
    for state in [forged_state.as_str(), "v1.AAAA", "anything"] {
        let r = no_redirects()
            .get(app.url("/connect/whoop/callback"))
            .query(&[("code", "c"), ("state", state)])
            .send()
            .await
            .unwrap();
        let (status, body) = problem(r).await;
        assert_eq!(
            (status, body["reason"].as_str()),
            (400, Some("invalid_state")),
            "{state}"
        );
    }
    assert_eq!(
        fake.stats().code_exchanges,
        1,
        "no refused state reached the vendor"
    );

    // No token is readable in the store without the key: none of them is in the database files.
    let stored = stored_text(&app).await;
    assert!(stored.contains("v1."), "the sealed tokens are there");
    for t in fake.issued_tokens() {
        assert!(!stored.contains(&t), "a vendor token is stored in clear");
    }

    // A notification: the recovery is fetched, normalised, and drives GUARDIAN.
    let sleep = fake.add_recovery(whoop_user, "SCORED", 30.0, 31.8, 64.0);
    let body = whoop_notification(whoop_user, &sleep);
    assert_eq!(app.post_whoop(&body).await.status(), 200);
    eventually(20, "the fetched recovery in the log", || async {
        (readings(&app, &alice, "recovery_score").await == vec![30.0]).then_some(())
    })
    .await;
    assert_eq!(readings(&app, &alice, "hrv_rmssd").await, vec![31.8]);
    assert_eq!(
        readings(&app, &alice, "resting_heart_rate").await,
        vec![64.0]
    );
    let switch = app.first_switch(20, "a switch to GUARDIAN").await;
    assert_eq!(switch["to_mode"], "GUARDIAN", "{switch}");
    assert_eq!(switch["user_id"], alice.as_str());
    assert!(
        switch["reasons"].to_string().contains("recovery_score_low"),
        "{switch}"
    );
    let c = connections(&app, &alice).await;
    assert!(c[0]["last_sync_at"].is_string(), "{c:?}");

    // A redelivery (new trace id) refetches the same version: nothing new in the log.
    assert_eq!(
        app.post_whoop(&whoop_notification(whoop_user, &sleep))
            .await
            .status(),
        200
    );
    // A pending score emits nothing; then the vendor's 401 (refresh, rotation), 429 with
    // Retry-After and a 503 are all absorbed.
    let pending = fake.add_recovery(whoop_user, "PENDING_SCORE", 0.0, 0.0, 0.0);
    app.post_whoop(&whoop_notification(whoop_user, &pending))
        .await;
    fake.expire_access_tokens();
    fake.fail(Failure {
        path_prefix: "/developer/v2/activity/sleep".into(),
        status: 429,
        retry_after: Some(1),
        count: 1,
        delay_ms: 0,
    });
    fake.fail(Failure {
        path_prefix: "/developer/v2/cycle".into(),
        status: 503,
        retry_after: None,
        count: 2,
        delay_ms: 0,
    });
    let second = fake.add_recovery(whoop_user, "SCORED", 55.0, 45.0, 60.0);
    app.post_whoop(&whoop_notification(whoop_user, &second))
        .await;
    eventually(30, "the second recovery", || async {
        (readings(&app, &alice, "recovery_score").await == vec![30.0, 55.0]).then_some(())
    })
    .await;
    let stats = fake.stats();
    assert_eq!(stats.refreshes, 1, "{stats:?}");
    // The pending recovery was kept: once WHOOP scores it, it is fetched without a new webhook.
    fake.score_recovery(&pending, 42.0, 40.0, 61.0);
    eventually(20, "the recovery that was pending", || async {
        (readings(&app, &alice, "recovery_score").await == vec![30.0, 55.0, 42.0]).then_some(())
    })
    .await;
    // WHOOP keeps failing longer than the in-place retries: the notification is kept and
    // fetched on a later round.
    fake.fail(Failure {
        path_prefix: "/developer/v2/activity/sleep".into(),
        status: 503,
        retry_after: None,
        count: 6,
        delay_ms: 0,
    });
    let flaky = fake.add_recovery(whoop_user, "SCORED", 48.0, 41.0, 60.0);
    app.post_whoop(&whoop_notification(whoop_user, &flaky))
        .await;
    eventually(40, "the recovery behind a failing vendor", || async {
        (readings(&app, &alice, "recovery_score").await == vec![30.0, 55.0, 42.0, 48.0])
            .then_some(())
    })
    .await;

    // The user revokes us at WHOOP: the refresh is refused once, the connection shows revoked.
    fake.revoke_refresh_tokens();
    fake.expire_access_tokens();
    let third = fake.add_recovery(whoop_user, "SCORED", 80.0, 60.0, 55.0);
    app.post_whoop(&whoop_notification(whoop_user, &third))
        .await;
    eventually(20, "the connection marked revoked", || async {
        let c = connections(&app, &alice).await;
        (c[0]["status"] == "revoked").then_some(())
    })
    .await;
    let fourth = fake.add_recovery(whoop_user, "SCORED", 81.0, 60.0, 55.0);
    app.post_whoop(&whoop_notification(whoop_user, &fourth))
        .await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        fake.stats().refreshes_refused,
        1,
        "a revoked connection is not retried"
    );
    assert_eq!(
        readings(&app, &alice, "recovery_score").await,
        vec![30.0, 55.0, 42.0, 48.0]
    );

    // A notification for a WHOOP account nobody has connected yet is kept, and fetched once
    // its user connects.
    let erin = unique("erin");
    let erin_key = app.issue_key(&erin).await;
    let erin_whoop = fake.add_user();
    let early = fake.add_recovery(erin_whoop, "SCORED", 70.0, 50.0, 58.0);
    assert_eq!(
        app.post_whoop(&whoop_notification(erin_whoop, &early))
            .await
            .status(),
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(readings(&app, &erin, "recovery_score").await.is_empty());
    let (_, answer) = connect(&app, &erin, &erin_key).await;
    assert_eq!(answer.status(), 200);
    eventually(
        20,
        "the early notification fetched after connecting",
        || async { (readings(&app, &erin, "recovery_score").await == vec![70.0]).then_some(()) },
    )
    .await;

    // Disconnect: revoked at the vendor (for a live connection) and the tokens deleted.
    let carol = unique("carol");
    let carol_key = app.issue_key(&carol).await;
    fake.add_user();
    let (_, answer) = connect(&app, &carol, &carol_key).await;
    assert_eq!(answer.status(), 200);
    let r = app
        .client
        .delete(app.url(&format!("/connect/whoop?user_id={carol}")))
        .bearer_auth(&carol_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(fake.stats().revocations, 1);
    assert!(connections(&app, &carol).await.is_empty());
    let r = app
        .client
        .delete(app.url(&format!("/connect/whoop?user_id={carol}")))
        .bearer_auth(&carol_key)
        .send()
        .await
        .unwrap();
    assert_eq!(problem(r).await.1["reason"], "not_connected");
    app.stop().await;
}

/// Two instances on one PostgreSQL database refresh the same WHOOP user at once: exactly one
/// refresh reaches WHOOP (its refresh token rotates: a second would be refused and revoke the
/// user), both get the new token, and the user stays connected.
#[tokio::test(flavor = "multi_thread")]
async fn two_instances_refreshing_one_user_spend_the_refresh_token_once() {
    let (fake, fake_url) = fake_whoop().await;
    let one = app_with(
        Options {
            postgres: true,
            ..Default::default()
        },
        &fake_url,
    )
    .await;
    let db = one.args.store.postgres_url.clone();
    let fake_url2 = fake_url.clone();
    let two = TestApp::spawn_with(Options::default(), move |s| {
        s.store.postgres_url = db;
        s.vendors.whoop_client_id = Some(CLIENT_ID.into());
        s.vendors.whoop_api_base_url = fake_url2.parse().unwrap();
        s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
    })
    .await;
    let user = unique("dana");
    let key = one.issue_key(&user).await;
    fake.add_user();
    // Issued with one second to live: already due for a refresh when it arrives.
    fake.set_access_ttl(1);
    let (_, answer) = connect(&one, &user, &key).await;
    assert_eq!(answer.status(), 200);
    fake.set_access_ttl(3600);
    fake.set_token_delay(500);
    let vendor = auren_core::model::Vendor::Whoop;
    let (a, b) = tokio::join!(
        one.state
            .inner
            .connections
            .access_token(vendor, &user, None),
        two.state
            .inner
            .connections
            .access_token(vendor, &user, None),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both use the one new token");
    let stats = fake.stats();
    assert_eq!(
        (stats.refreshes, stats.refreshes_refused),
        (1, 0),
        "{stats:?}"
    );
    assert_eq!(connections(&one, &user).await[0]["status"], "connected");
    two.stop().await;
    one.stop().await;
}
