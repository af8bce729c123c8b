//! Oura and WHOOP as data sources beyond the first notification, against the in-repo fakes
//! (`vendors_fake`), on the embedded default and on Kafka + PostgreSQL + Redis: Oura's connect
//! flow, fetch after notify and deletions; the backfill that makes a new user's baselines
//! personal at once; reconciliation that finds what no notification announced; vendor failures
//! during both with nothing lost and nothing duplicated; notifications that keep failing going
//! to the dead-letter topic and back; and `auren subscriptions sync` against the fake Oura,
//! which verifies our callback as Oura does.

mod common;

use auren::vendors_fake::{Failure, FakeOura, FakeWhoop};
use common::*;
use serde_json::{json, Value};
use std::collections::HashSet;

const TOKEN_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const WHOOP_CLIENT: &str = "whoop-test-client";
const OURA_CLIENT: &str = "oura-test-client";

async fn fakes() -> (FakeWhoop, FakeOura, String) {
    let whoop = FakeWhoop::new(WHOOP_CLIENT, WHOOP_SECRET);
    let oura = FakeOura::new(OURA_CLIENT, OURA_SECRET);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(auren::vendors_fake::serve_all(
        listener,
        whoop.clone(),
        oura.clone(),
        std::future::pending(),
    ));
    (whoop, oura, url)
}

/// A service with both vendors pointed at the fakes; `reconcile` seconds between
/// reconciliations.
async fn app_with(o: Options, fake_url: &str, reconcile: u64, max_rounds: u32) -> TestApp {
    let fake_url = fake_url.to_string();
    TestApp::spawn_with(o, move |s| {
        s.vendors.whoop_client_id = Some(WHOOP_CLIENT.into());
        s.vendors.whoop_api_base_url = fake_url.parse().unwrap();
        s.vendors.oura_client_id = Some(OURA_CLIENT.into());
        s.vendors.oura_api_base_url = fake_url.parse().unwrap();
        s.vendors.oura_authorize_url = format!("{fake_url}/oauth/authorize").parse().unwrap();
        s.vendors.reconcile_interval_seconds = reconcile;
        s.vendors.pending_score_retry_seconds = 1;
        s.vendors.fetch_max_rounds = max_rounds;
        // A vendor that hangs is cut off well before the test's patience runs out.
        s.vendors.vendor_timeout_ms = 1_000;
        s.secrets.token_key.token_key = Some(TOKEN_KEY.into());
    })
    .await
}

/// The browser's part of connecting `vendor`: our redirect, the vendor's consent, our callback.
/// Returns the authorize URL's query and the callback's answer.
async fn connect(
    app: &TestApp,
    vendor: &str,
    user: &str,
    key: &str,
) -> (std::collections::HashMap<String, String>, reqwest::Response) {
    let client = no_redirects();
    let r = client
        .get(app.url(&format!("/connect/{vendor}?user_id={user}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    let authorize = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q = authorize.query_pairs().into_owned().collect();
    let consent = client.get(authorize).send().await.unwrap();
    assert_eq!(consent.status(), 302);
    let back = url::Url::parse(consent.headers()["location"].to_str().unwrap()).unwrap();
    assert!(back
        .path()
        .ends_with(&format!("/connect/{vendor}/callback")));
    let path = format!("{}?{}", back.path(), back.query().unwrap());
    (q, client.get(app.url(&path)).send().await.unwrap())
}

/// The user's state; none until the bridge has applied one of their events.
async fn state(app: &TestApp, user: &str) -> Option<Value> {
    let (status, body) = app.get_json(&format!("/users/{user}/state"), ADMIN).await;
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{body}");
    Some(body)
}

/// Our user's events in the log.
async fn events_of(app: &TestApp, user: &str) -> Vec<Value> {
    app.logged_events()
        .await
        .into_iter()
        .filter(|e| e["subject"]["id"] == user)
        .collect()
}

/// The values of `metric` in the user's events.
fn values(events: &[Value], metric: &str) -> Vec<f64> {
    events
        .iter()
        .filter(|e| e["payload"]["metric"] == metric)
        .map(|e| e["payload"]["value"].as_f64().unwrap())
        .collect()
}

/// No switch the user's history decided reaches the agent: every one is from the last day.
async fn assert_no_switch_from_the_past(app: &TestApp, user: &str) {
    let day_ago = chrono::Utc::now() - chrono::Duration::hours(31);
    for s in app.records(&app.args.log.switches_topic).await {
        if s["user_id"] == user {
            let at: chrono::DateTime<chrono::Utc> = s["at"].as_str().unwrap().parse().unwrap();
            assert!(at > day_ago, "a switch from the backfilled past: {s}");
        }
    }
}

fn assert_no_duplicates(events: &[Value]) {
    let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let unique: HashSet<&&str> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an event is in the log twice");
}

async fn backfill_done(app: &TestApp, user: &str) -> Value {
    eventually(90, "the backfill done", || async {
        let c = connections(app, user).await;
        (c.first()?["backfill"]["status"] == "done").then(|| c[0].clone())
    })
    .await
}

/// Oura end to end on the embedded default: connect (scopes, personal info), a 60-day backfill
/// with visible progress that leaves the user non-calibrating, a notified sleep fetched with
/// the vendor's RMSSD and resting heart rate, a readiness score, a deletion, 401/429/5xx
/// absorbed, and disconnecting.
#[tokio::test(flavor = "multi_thread")]
async fn oura_connect_backfill_fetch_delete_and_disconnect_on_the_embedded_default() {
    let (_, oura, fake_url) = fakes().await;
    let app = app_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        &fake_url,
        3600,
        12,
    )
    .await;
    oura.set_webhook_target(Some(app.url("/webhooks/oura")));
    oura.set_page_size(7);
    let user = unique("olivia");
    let key = app.issue_key(&user).await;
    let oura_user = oura.add_user();
    let docs = oura.seed_history(&oura_user, 60);
    assert!(docs > 300, "{docs}");

    let (q, answer) = connect(&app, "oura", &user, &key).await;
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    for s in ["personal", "daily", "heartrate", "spo2Daily"] {
        assert!(scopes.contains(&s), "{scopes:?}");
    }
    assert_eq!(q["client_id"], OURA_CLIENT);
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("Oura is connected"));
    let c = backfill_done(&app, &user).await;
    assert_eq!(c["vendor_user_id"], oura_user.as_str());
    assert_eq!(c["backfill"]["progress"], 1.0);
    assert!(c["backfill"]["events"].as_i64().unwrap() > 600, "{c}");

    // The history reaches the bridge: the user is not calibrating, and RMSSD is personal.
    let s = eventually(30, "the backfilled state", || async {
        let s = state(&app, &user).await?;
        (s["baselines"]["hrv_rmssd"]["days"].as_u64()? >= 55).then_some(s)
    })
    .await;
    assert_eq!(s["calibrating"], false, "{s}");
    assert_eq!(s["baselines"]["hrv_rmssd"]["personal"], true, "{s}");
    let baseline = s["baselines"]["hrv_rmssd"]["baseline_ms"].as_f64().unwrap();
    assert!((35.0..60.0).contains(&baseline), "{baseline}");
    let events = events_of(&app, &user).await;
    assert_no_duplicates(&events);
    assert!(
        events.iter().any(|e| e["payload"]["type"] == "backfill"),
        "the backfill marker"
    );
    assert_eq!(values(&events, "hrv_rmssd").len(), 60, "one RMSSD a night");
    assert_no_switch_from_the_past(&app, &user).await;

    // A new night, notified: fetched with Oura's RMSSD and lowest heart rate, through a 401
    // (refresh), a 429 with Retry-After and a 503.
    oura.expire_access_tokens();
    oura.fail(Failure {
        path_prefix: "/v2/usercollection/sleep/".into(),
        status: 429,
        retry_after: Some(1),
        count: 1,
        delay_ms: 0,
    });
    oura.fail(Failure {
        path_prefix: "/v2/usercollection/sleep/".into(),
        status: 503,
        retry_after: None,
        count: 1,
        delay_ms: 0,
    });
    let night = oura
        .add_document(
            &oura_user,
            "sleep",
            json!({"average_hrv": 19, "lowest_heart_rate": 71,
                "bedtime_end": chrono::Utc::now().to_rfc3339()}),
        )
        .unwrap();
    let sent = oura.notify(&oura_user, "sleep", &night, "create").await;
    assert!(
        sent.iter()
            .all(|(_, s)| s.as_ref().is_ok_and(|s| *s == 200)),
        "{sent:?}"
    );
    eventually(30, "the notified night", || async {
        let e = events_of(&app, &user).await;
        (values(&e, "hrv_rmssd").contains(&19.0)
            && values(&e, "resting_heart_rate").contains(&71.0))
        .then_some(())
    })
    .await;
    // The state shows Oura's values as they are: RMSSD and the night's lowest heart rate.
    eventually(30, "the night in the state", || async {
        let s = state(&app, &user).await?;
        (s["latest"]["hrv_rmssd"] == 19.0 && s["latest"]["resting_heart_rate"] == 71.0)
            .then_some(())
    })
    .await;
    let readiness = oura
        .add_document(
            &oura_user,
            "daily_readiness",
            json!({"score": 41, "timestamp": chrono::Utc::now().to_rfc3339()}),
        )
        .unwrap();
    oura.notify(&oura_user, "daily_readiness", &readiness, "update")
        .await;
    let s = eventually(30, "the readiness in the state", || async {
        let s = state(&app, &user).await?;
        (s["latest"]["recovery_score"] == 41.0).then_some(s)
    })
    .await;
    assert_eq!(s["calibrating"], false);
    assert!(oura.stats().refreshes >= 1, "{:?}", oura.stats());

    // A deletion becomes a deletion event, without a fetch.
    assert!(oura.delete_document("sleep", &night));
    oura.notify(&oura_user, "sleep", &night, "delete").await;
    eventually(20, "the deletion event", || async {
        events_of(&app, &user).await.into_iter().find(|e| {
            e["payload"]["type"] == "deletion" && e["payload"]["object_id"] == night.as_str()
        })
    })
    .await;
    let events = events_of(&app, &user).await;
    assert_no_duplicates(&events);
    assert_eq!(
        values(&events, "hrv_rmssd")
            .iter()
            .filter(|v| **v == 19.0)
            .count(),
        1,
        "fetched once through every failure"
    );

    // Disconnect: revoked at Oura, tokens gone.
    let r = app
        .client
        .delete(app.url(&format!("/connect/oura?user_id={user}")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(oura.stats().revocations, 1, "{:?}", oura.stats());
    assert!(connections(&app, &user).await.is_empty());
    app.stop().await;
}

/// WHOOP on Kafka + PostgreSQL + Redis: a 60-night backfill makes the user personal at once;
/// a recovery nobody notified (a lost webhook) is found by reconciliation, through a 429 and a
/// 503 from WHOOP; nothing is in the log twice.
#[tokio::test(flavor = "multi_thread")]
async fn whoop_backfill_and_reconciliation_on_kafka_postgres_and_redis() {
    let (whoop, _, fake_url) = fakes().await;
    let app = app_with(
        Options {
            bridge: true,
            kafka: true,
            postgres: true,
            redis: true,
            ..Default::default()
        },
        &fake_url,
        3,
        12,
    )
    .await;
    let user = unique("wes");
    let key = app.issue_key(&user).await;
    let whoop_user = whoop.add_user();
    let nights = whoop.seed_history(whoop_user, 60);
    assert_eq!(nights.len(), 60);
    let (q, answer) = connect(&app, "whoop", &user, &key).await;
    assert!(q["scope"].split(' ').any(|s| s == "offline"));
    assert_eq!(answer.status(), 200);
    backfill_done(&app, &user).await;
    let s = eventually(60, "the backfilled state", || async {
        let s = state(&app, &user).await?;
        (s["baselines"]["hrv_rmssd"]["days"].as_u64()? >= 55).then_some(s)
    })
    .await;
    assert_eq!(s["calibrating"], false, "{s}");
    assert_eq!(s["baselines"]["hrv_rmssd"]["personal"], true);
    assert!(
        s["baselines"]["resting_heart_rate"]["baseline_bpm"].is_number(),
        "{s}"
    );
    let events = events_of(&app, &user).await;
    assert_no_duplicates(&events);
    assert_eq!(values(&events, "recovery_score").len(), 60);
    assert_no_switch_from_the_past(&app, &user).await;

    // A recovery whose notification never came, found by the next reconciliation even though
    // WHOOP limits and fails us on the way.
    whoop.fail(Failure {
        path_prefix: "/developer/v2/recovery".into(),
        status: 429,
        retry_after: Some(1),
        count: 1,
        delay_ms: 0,
    });
    whoop.fail(Failure {
        path_prefix: "/developer/v2/activity/sleep".into(),
        status: 503,
        retry_after: None,
        count: 1,
        delay_ms: 0,
    });
    whoop.add_recovery(whoop_user, "SCORED", 23.0, 24.5, 66.0);
    // Meanwhile a notified recovery is fetched by the fetch worker's group on Kafka, through
    // a WHOOP that hangs past our timeout once.
    whoop.set_webhook_target(Some(app.url("/webhooks/whoop")));
    let notified = whoop.add_recovery(whoop_user, "SCORED", 27.0, 26.0, 65.0);
    whoop.fail(Failure {
        path_prefix: format!("/developer/v2/activity/sleep/{notified}"),
        status: 504,
        retry_after: None,
        count: 1,
        delay_ms: 3_000,
    });
    assert_eq!(
        whoop
            .notify(whoop_user, &notified, "recovery.updated")
            .await
            .unwrap(),
        200
    );
    eventually(60, "the notified recovery fetched", || async {
        values(&events_of(&app, &user).await, "recovery_score")
            .contains(&27.0)
            .then_some(())
    })
    .await;
    eventually(60, "the missed recovery reconciled", || async {
        values(&events_of(&app, &user).await, "recovery_score")
            .contains(&23.0)
            .then_some(())
    })
    .await;
    let switch = app.first_switch(30, "GUARDIAN from the low recovery").await;
    assert_eq!(switch["to_mode"], "GUARDIAN", "{switch}");
    // Several reconciliations later, still nothing twice.
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let events = events_of(&app, &user).await;
    assert_no_duplicates(&events);
    assert_eq!(values(&events, "recovery_score").len(), 62);
    let c = connections(&app, &user).await;
    assert!(
        c[0]["last_sync_at"].is_string() && c[0]["last_error"].is_null(),
        "{c:?}"
    );
    app.stop().await;
}

/// A notification WHOOP keeps failing goes to the dead-letter topic with its error, and
/// `auren dlq replay` brings it back to be fetched once WHOOP answers again.
#[tokio::test(flavor = "multi_thread")]
async fn a_notification_that_keeps_failing_is_dead_lettered_and_replayable() {
    let (whoop, _, fake_url) = fakes().await;
    let app = app_with(
        Options {
            bridge: true,
            ..Default::default()
        },
        &fake_url,
        3600,
        1,
    )
    .await;
    whoop.set_webhook_target(Some(app.url("/webhooks/whoop")));
    let user = unique("dora");
    let key = app.issue_key(&user).await;
    let whoop_user = whoop.add_user();
    let (_, answer) = connect(&app, "whoop", &user, &key).await;
    assert_eq!(answer.status(), 200);
    backfill_done(&app, &user).await;
    let sleep = whoop.add_recovery(whoop_user, "SCORED", 35.0, 30.0, 62.0);
    // Five in-place attempts, one round: every answer a 503.
    whoop.fail(Failure {
        path_prefix: format!("/developer/v2/activity/sleep/{sleep}"),
        status: 503,
        retry_after: None,
        count: 5,
        delay_ms: 0,
    });
    assert_eq!(
        whoop
            .notify(whoop_user, &sleep, "recovery.updated")
            .await
            .unwrap(),
        200
    );
    let letter = eventually(30, "the dead letter", || async {
        app.records(&app.args.log.dlq_topic)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert!(
        letter["error"]
            .as_str()
            .unwrap()
            .contains("vendor_unavailable"),
        "{letter}"
    );
    assert!(values(&events_of(&app, &user).await, "recovery_score").is_empty());
    let replayed = auren::dlq::replay(&app.backends, None).await.unwrap();
    assert_eq!(replayed.replayed, 1);
    eventually(30, "the replayed notification fetched", || async {
        (values(&events_of(&app, &user).await, "recovery_score") == vec![35.0]).then_some(())
    })
    .await;
    app.stop().await;
}

/// `auren subscriptions sync` creates one subscription per (event, data type), each verified by
/// the fake Oura calling our `/webhooks/oura` with the verification token; a second run keeps
/// them; one near its expiry is renewed.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_sync_creates_verifies_and_renews() {
    let (_, oura, fake_url) = fakes().await;
    let app = app_with(Options::default(), &fake_url, 3600, 12).await;
    let mut args = app.args.clone();
    args.vendors.public_url = Some(app.url("").parse().unwrap());
    let run = || {
        let out = auren_command(&args)
            .args(["subscriptions", "sync"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let types = auren_core::vendors::oura::data::DATA_TYPES
        .iter()
        .filter(|d| d.webhook != "heartrate")
        .count();
    let first = run();
    assert_eq!(first.matches("\tcreated").count(), types * 3, "{first}");
    let subs = oura.subscriptions();
    assert_eq!(subs.len(), types * 3);
    let callback = app.url("/webhooks/oura");
    assert!(subs.iter().all(|s| s.callback_url == callback));
    let second = run();
    assert_eq!(second.matches("\tkept").count(), types * 3, "{second}");
    let one = subs[0].id.clone();
    assert!(
        oura.set_subscription_expiry(Some(&one), chrono::Utc::now() + chrono::Duration::days(3))
    );
    let third = run();
    assert_eq!(third.matches("\trenewed").count(), 1, "{third}");
    assert_eq!(oura.subscriptions().len(), types * 3);

    // A callback that does not answer Oura's handshake: nothing is created, the command fails.
    let mut wrong = args.clone();
    wrong.vendors.public_url = Some(app.url("/elsewhere").parse().unwrap());
    let out = auren_command(&wrong)
        .args(["subscriptions", "sync"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(oura.subscriptions().len(), types * 3);
    app.stop().await;
}
