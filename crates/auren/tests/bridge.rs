//! The bridge end to end: webhooks in, checkpoints and history in the store, state in the cache,
//! switch events out; on the embedded default and on Tansu + PostgreSQL + Redis.

mod common;
use common::*;

fn t(s: &str) -> chrono::DateTime<chrono::Utc> {
    s.parse().unwrap()
}

async fn stress_then_switch(app: &TestApp) -> (String, String, serde_json::Value) {
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let r = app
        .push(&key, &user, &stress_episode(t("2025-03-01T15:00:00Z"), 3))
        .await;
    assert_eq!(r.status(), 200);
    let msg = app.first_switch(30, "a REFLEX switch event").await;
    (user, key, msg)
}

/// Waits until `topic` holds at least `n` records.
async fn records_at_least(app: &TestApp, topic: &str, n: usize) -> Vec<serde_json::Value> {
    eventually(30, "records", || async {
        let d = app.records(topic).await;
        (d.len() >= n).then_some(d)
    })
    .await
}

fn check_switch_message(msg: &serde_json::Value, user: &str) {
    assert_eq!(msg["schema"], 1);
    assert_eq!(msg["from_mode"], "PATTERN");
    assert_eq!(msg["to_mode"], "REFLEX");
    assert_eq!(msg["user_id"], user);
    assert!(msg["user_pseudonym"].as_str().unwrap().starts_with("u_"));
    assert!(msg["thread_id"].as_str().unwrap().starts_with("thr_"));
    let c = msg["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&c));
    assert_eq!(msg["reasons"][0]["rule"], "heart_rate_elevated");
    assert_eq!(msg["reasons"][0]["threshold"], 100.0);
    assert_eq!(msg["snapshot"]["heart_rate"], 112.0);
    assert_eq!(msg["calibrating"], true);
    assert_eq!(
        msg["at"], "2025-03-01T15:01:00Z",
        "event time, not wall clock"
    );
}

#[tokio::test]
async fn embedded_default_webhooks_to_switch_state_and_history() {
    let app = TestApp::spawn(Options {
        bridge: true,
        ..Default::default()
    })
    .await;
    let (user, key, msg) = stress_then_switch(&app).await;
    check_switch_message(&msg, &user);

    // State: by admin token and by the user's own key; not by another user's key.
    let path = format!("/users/{user}/state");
    let (s, state) = app.get_json(&path, ADMIN).await;
    assert_eq!(s, 200, "{state}");
    assert_eq!(state["mode"], "REFLEX");
    assert_eq!(state["calibrating"], true);
    assert_eq!(state["baselines"]["hrv_sdnn"]["baseline_ms"], 40.0);
    assert_eq!(state["baselines"]["heart_rate"]["baseline_bpm"], 70.0);
    assert_eq!(state["latest"]["heart_rate"], 112.0);
    // No resting HR of their own yet, and no default stands in for it: null, not 0 over 0 days.
    let resting = &state["baselines"]["resting_heart_rate"];
    assert!(resting["baseline_bpm"].is_null(), "{resting}");
    assert_eq!(
        (resting["days"].as_u64(), resting["required_days"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(app.get_json(&path, &key).await.0, 200);
    let other = unique("user");
    let other_key = app.issue_key(&other).await;
    assert_eq!(app.get_json(&path, &other_key).await.0, 403);
    assert_eq!(app.get_json(&path, "nonsense").await.0, 401);
    assert_eq!(
        app.get_json(&format!("/users/{other}/state"), ADMIN)
            .await
            .0,
        404
    );
    // Never seen by the bridge: no history either, the same way.
    let (s, p) = app.get_json(&format!("/users/{other}/modes"), ADMIN).await;
    assert_eq!(
        (s, p["reason"].as_str()),
        (404, Some("unknown_user")),
        "{p}"
    );
    // Once the bridge knows them, an empty history.
    let calm = [("heartRate", 70.0, "2025-03-01T15:00:00Z".to_string())];
    assert_eq!(app.push(&other_key, &other, &calm).await.status(), 200);
    eventually(30, "the other user's state", || async {
        (app.get_json(&format!("/users/{other}/state"), ADMIN)
            .await
            .0
            == 200)
            .then_some(())
    })
    .await;
    let (s, m) = app.get_json(&format!("/users/{other}/modes"), ADMIN).await;
    assert_eq!(
        (s, m["modes"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{m}"
    );

    let (s, modes) = app.get_json(&format!("/users/{user}/modes"), &key).await;
    assert_eq!(s, 200);
    assert_eq!(modes["modes"].as_array().unwrap().len(), 1);
    assert_eq!(modes["modes"][0]["switch_id"], msg["switch_id"]);

    // Checkpoint and offsets are in SQLite under the data directory.
    let db = rusqlite::Connection::open(app.data_dir.path().join("state.db")).unwrap();
    let n: i64 = db
        .query_row("SELECT COUNT(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert!(n >= 1);
    let published: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM mode_history WHERE published_at IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(published, 1);
    let m = app.metrics().await;
    assert!(
        metric_value(
            &m,
            r#"auren_mode_switches_total{from_mode="PATTERN",to_mode="REFLEX"}"#
        ) >= 1.0,
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            r#"auren_kafka_messages_processed_total{outcome="applied"}"#
        ) >= 3.0,
        "{m}"
    );
    assert!(m.contains("auren_checkpoint_save_seconds_count"));
    app.stop().await;
}

#[tokio::test]
async fn kafka_postgres_redis_webhooks_to_switch_state_and_cache() {
    let app = TestApp::spawn(Options {
        bridge: true,
        kafka: true,
        postgres: true,
        redis: true,
        ..Default::default()
    })
    .await;
    let (user, _key, msg) = stress_then_switch(&app).await;
    check_switch_message(&msg, &user);
    let pseudonym = msg["user_pseudonym"].as_str().unwrap().to_string();

    // PostgreSQL: thread, checkpoint, history (published), offsets.
    use sqlx::Connection;
    let mut pg = sqlx::PgConnection::connect(app.args.store.postgres_url.as_deref().unwrap())
        .await
        .unwrap();
    let (mode, latest): (String, Option<String>) =
        sqlx::query_as("SELECT mode, latest_checkpoint_id FROM threads WHERE user_pseudonym = $1")
            .bind(&pseudonym)
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!(mode, "REFLEX");
    let (version, state): (i64, serde_json::Value) =
        sqlx::query_as("SELECT version, state FROM checkpoints WHERE checkpoint_id = $1")
            .bind(latest.unwrap())
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!(version, 3);
    assert_eq!(state["mode"], "REFLEX");
    let (published,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM mode_history WHERE published_at IS NOT NULL")
            .fetch_one(&mut pg)
            .await
            .unwrap();
    assert_eq!(published, 1);
    let (offsets,): (i64,) = sqlx::query_as(
        "SELECT COALESCE(SUM(next_offset), 0)::BIGINT FROM consumer_offsets WHERE topic = $1",
    )
    .bind(&app.topic)
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert_eq!(offsets, 3);

    // Redis: latest state with the TTL, a capped series.
    let key = app.issue_key(&user).await;
    let many: Vec<_> = (0..150)
        .map(|i| {
            (
                "heartRate",
                60.0 + (i % 5) as f64,
                (t("2025-03-02T08:00:00Z") + chrono::Duration::minutes(i)).to_rfc3339(),
            )
        })
        .collect();
    assert_eq!(app.push(&key, &user, &many).await.status(), 200);
    let client = redis::Client::open(redis_url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let series_key = format!("auren:series:{pseudonym}");
    eventually(30, "150 more readings cached", || {
        let mut con = con.clone();
        let k = series_key.clone();
        async move {
            let last: Vec<String> = redis::cmd("ZRANGE")
                .arg(&k)
                .arg(-1)
                .arg(-1)
                .query_async(&mut con)
                .await
                .ok()?;
            last.first()
                .filter(|p| p.contains("2025-03-02T10:29:00Z"))
                .map(|_| ())
        }
    })
    .await;
    // Six significant changes in separate batches: six checkpoints written, three kept.
    for (i, hr) in [60.0, 80.0, 60.0, 80.0, 60.0, 80.0].into_iter().enumerate() {
        let at =
            (t("2025-03-03T08:00:00Z") + chrono::Duration::minutes(i as i64 * 30)).to_rfc3339();
        assert_eq!(
            app.push(&key, &user, &[("heartRate", hr, at)])
                .await
                .status(),
            200
        );
        let path = format!("/users/{user}/state");
        eventually(30, "the reading applied", || async {
            let (_, s) = app.get_json(&path, ADMIN).await;
            (s["latest"]["heart_rate"] == hr && s["events"].as_u64() >= Some(154 + i as u64))
                .then_some(())
        })
        .await;
    }
    let (kept,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM checkpoints c JOIN threads t USING (thread_id) WHERE t.user_pseudonym = $1",
    )
    .bind(&pseudonym)
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert_eq!(
        kept, 3,
        "older checkpoints pruned to AUREN_CHECKPOINTS_KEPT"
    );
    let len: i64 = redis::cmd("ZCARD")
        .arg(&series_key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(len, 100, "series capped at MAX_TIMESERIES_ENTRIES");
    let ttl: i64 = redis::cmd("TTL")
        .arg(format!("auren:state:{pseudonym}"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 3600, "{ttl}");
    let raw_id_keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("*{user}*"))
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(raw_id_keys.is_empty(), "no raw user id in Redis keys");
    let (s, state) = app.get_json(&format!("/users/{user}/state"), ADMIN).await;
    assert_eq!(s, 200);
    assert_eq!(state["source"], "cache");
    assert_eq!(state["recent_readings"].as_array().unwrap().len(), 20);
    app.stop().await;
}

#[tokio::test]
async fn unreadable_events_go_to_the_dlq_without_blocking_and_replay_once() {
    let app = TestApp::spawn(Options {
        bridge: true,
        kafka: true,
        postgres: true,
        ..Default::default()
    })
    .await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    let pseudonym = auren_core::pseudonym::Pseudonymizer::new(PSEUDONYM_KEY.as_bytes())
        .unwrap()
        .pseudonym(&user);
    // A foreign producer writes garbage into the user's partition, then valid events follow.
    app.state
        .inner
        .log
        .append(
            &app.topic,
            vec![auren::log::Record {
                key: pseudonym.clone(),
                event_id: unique("junk"),
                value: b"{not an event".to_vec(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        app.push(&key, &user, &stress_episode(t("2025-03-01T15:00:00Z"), 3))
            .await
            .status(),
        200
    );
    let (dlq_topic, switches_topic) = (
        app.args.log.dlq_topic.clone(),
        app.args.log.switches_topic.clone(),
    );
    eventually(30, "the switch after the bad record", || async {
        (app.records(&switches_topic).await.len() == 1).then_some(())
    })
    .await;
    let dlq = app.records(&dlq_topic).await;
    assert_eq!(dlq.len(), 1);
    assert!(
        dlq[0]["error"]
            .as_str()
            .unwrap()
            .contains("not a biometric event"),
        "{}",
        dlq[0]
    );
    assert_eq!(dlq[0]["original"], "{not an event");
    assert_eq!(dlq[0]["source"]["topic"], app.topic.as_str());

    // Replay sends it back through the bridge; it fails again and is dead-lettered again, as a new
    // entry. Each replay takes only entries no replay took before.
    let replayed = |n| auren::dlq::Replayed {
        replayed: n,
        unreadable: 0,
    };
    assert_eq!(
        auren::dlq::replay(&app.backends, None).await.unwrap(),
        replayed(1)
    );
    records_at_least(&app, &dlq_topic, 2).await;
    assert_eq!(
        auren::dlq::replay(&app.backends, None).await.unwrap(),
        replayed(1),
        "only the new entry"
    );
    let again = records_at_least(&app, &dlq_topic, 3).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let settled = app.records(&dlq_topic).await;
    assert_eq!(settled.len(), 3, "no entry was replayed twice");
    let sources: std::collections::HashSet<_> = again
        .iter()
        .map(|d| d["source"]["offset"].as_i64().unwrap())
        .collect();
    assert_eq!(
        sources.len(),
        3,
        "each dead letter comes from a different record"
    );
    assert!(again.iter().all(|d| d["original"] == "{not an event"));
    let m = app.metrics().await;
    assert!(
        m.contains(r#"auren_kafka_messages_processed_total{outcome="dlq"}"#),
        "{m}"
    );
    app.stop().await;
}

/// A record that is not UTF-8 is dead-lettered as base64 and replays to the same bytes; an entry
/// in the DLQ that is not a dead letter at all is passed over, not a reason to stop the replay.
#[tokio::test]
async fn binary_dead_letters_replay_and_unreadable_entries_do_not_abort_a_replay() {
    let app = TestApp::spawn(Options {
        bridge: true,
        ..Default::default()
    })
    .await;
    let log = app.backends.log().await.unwrap();
    let binary: Vec<u8> = vec![0xff, 0xfe, 0x00, b'{', 0x80];
    log.append(
        &app.topic,
        vec![auren::log::Record {
            key: "u_binary".into(),
            event_id: unique("bin"),
            value: binary.clone(),
        }],
    )
    .await
    .unwrap();
    let dlq_topic = app.args.log.dlq_topic.clone();
    let first = records_at_least(&app, &dlq_topic, 1).await;
    let b64 = first[0]["original"]["base64"].as_str().unwrap().to_string();
    assert_eq!(
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &b64).unwrap(),
        binary
    );
    // Something that is not a dead letter lands in the DLQ (a foreign producer, an old format).
    log.append(
        &dlq_topic,
        vec![auren::log::Record {
            key: "u_other".into(),
            event_id: unique("junk"),
            value: b"not a dead letter".to_vec(),
        }],
    )
    .await
    .unwrap();
    let r = auren::dlq::replay(&app.backends, None).await.unwrap();
    assert_eq!(
        r,
        auren::dlq::Replayed {
            replayed: 1,
            unreadable: 1
        }
    );
    // The binary record went back through the bridge byte for byte, and was dead-lettered again.
    let again = records_at_least(&app, &dlq_topic, 3).await;
    let replayed: Vec<_> = again
        .iter()
        .filter(|d| d["original"]["base64"] == b64.as_str())
        .collect();
    assert_eq!(replayed.len(), 2, "{again:?}");
    // Nothing is taken twice: the second replay has only the new dead letter.
    let r = auren::dlq::replay(&app.backends, None).await.unwrap();
    assert_eq!(
        r,
        auren::dlq::Replayed {
            replayed: 1,
            unreadable: 0
        }
    );
    app.stop().await;
}

#[tokio::test]
async fn thresholds_reload_applies_valid_files_and_keeps_the_old_on_invalid_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("thresholds.yaml");
    std::fs::write(&file, "thresholds:\n  heart_rate_elevated: 100\n").unwrap();
    let app = TestApp::spawn(Options {
        bridge: true,
        biometric_config: Some(file.clone()),
        ..Default::default()
    })
    .await;
    let reload = || {
        app.client
            .post(app.url("/admin/reload"))
            .bearer_auth(ADMIN)
            .send()
    };
    assert_eq!(
        app.client
            .post(app.url("/admin/reload"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    std::fs::write(&file, "thresholds:\n  heart_rate_elevated: 'fast'\n").unwrap();
    let (s, p) = problem(reload().await.unwrap()).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (422, "invalid_config"));
    std::fs::write(&file, "thresholds:\n  stress_level_critical: 0.5\n").unwrap();
    let (s, p) = problem(reload().await.unwrap()).await;
    assert_eq!(s, 422);
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains("stress_level_critical"));
    assert_eq!(
        app.state
            .inner
            .config
            .current()
            .thresholds
            .heart_rate_elevated,
        100.0,
        "old config kept"
    );

    std::fs::write(&file, "thresholds:\n  heart_rate_elevated: 120\n").unwrap();
    let r = reload().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["config"]["thresholds"]["heart_rate_elevated"],
        120.0
    );
    // 112 bpm no longer enters REFLEX.
    let user = unique("user");
    let key = app.issue_key(&user).await;
    assert_eq!(
        app.push(&key, &user, &stress_episode(t("2025-03-01T15:00:00Z"), 5))
            .await
            .status(),
        200
    );
    let path = format!("/users/{user}/state");
    let state = eventually(30, "the user's state", || async {
        let (s, v) = app.get_json(&path, ADMIN).await;
        (s == 200).then_some(v)
    })
    .await;
    assert_eq!(state["mode"], "PATTERN");

    // A change to the file alone is picked up.
    std::fs::write(&file, "thresholds:\n  heart_rate_elevated: 110\n").unwrap();
    eventually(10, "the file change applied", || async {
        (app.state
            .inner
            .config
            .current()
            .thresholds
            .heart_rate_elevated
            == 110.0)
            .then_some(())
    })
    .await;
    let m = app.metrics().await;
    // The file watcher may also have seen (and rejected) the invalid files: at least our two.
    let rejected = metric_value(&m, r#"auren_config_reloads_total{outcome="rejected"}"#);
    assert!(rejected >= 2.0, "{m}");
    assert!(m.contains(r#"auren_config_reloads_total{outcome="applied"}"#));
    app.stop().await;
}

#[tokio::test]
async fn switches_that_could_not_be_published_leave_the_outbox_without_a_restart() {
    let app = TestApp::spawn(Options {
        bridge: true,
        kafka: true,
        no_switches_topic: true,
        ..Default::default()
    })
    .await;
    let user = unique("user");
    let key = app.issue_key(&user).await;
    assert_eq!(
        app.push(&key, &user, &stress_episode(t("2025-03-01T15:00:00Z"), 3))
            .await
            .status(),
        200
    );
    // The switch is decided and committed (history answers) while its topic does not exist.
    let path = format!("/users/{user}/modes");
    eventually(30, "the switch in the history", || async {
        let (_, m) = app.get_json(&path, ADMIN).await;
        (m["modes"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;
    let db = rusqlite::Connection::open(app.data_dir.path().join("state.db")).unwrap();
    let unpublished = || -> i64 {
        db.query_row(
            "SELECT COUNT(*) FROM mode_history WHERE published_at IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap()
    };
    // Publishing failed: the switch waits in the outbox.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(unpublished(), 1, "publishing to a missing topic must fail");
    create_topic(&app.args, &app.args.log.switches_topic).await;
    let msg = app
        .first_switch(60, "the switch published from the outbox")
        .await;
    assert_eq!(msg["to_mode"], "REFLEX");
    eventually(30, "the outbox marked published", || async {
        (unpublished() == 0).then_some(())
    })
    .await;
    app.stop().await;
}
