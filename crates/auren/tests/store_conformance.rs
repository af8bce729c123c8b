//! One contract per port, run against every implementation: `KeyStore` and `StateStore` on
//! PostgreSQL and SQLite, `Dedup` and `StateCache` on Redis and in-process. An adapter that
//! passes here can stand in for any other; the schemas of the two stores are compared too.

mod common;

use auren::cache::memory::{MemoryDedup, MemoryStateCache};
use auren::cache::redis::{RedisDedup, RedisStateCache};
use auren::cache::{CachedUser, Claim, Dedup, StateCache};
use auren::messages::{
    thread_id, Baselines, HeartRateBaseline, HrvBaseline, RestingHeartRateBaseline, SeriesPoint,
    StateView, SwitchMessage,
};
use auren::store::{
    CheckpointRow, CommitBatch, DeliveryStore, KeyStore, PgStore, SqliteStore, StateStore,
    StoreError, WebhookAttempt, WebhookEndpoint,
};
use auren_core::engine::{Mode, Snapshot};
use auren_core::model::{EventId, Metric};
use chrono::{DateTime, TimeZone, Utc};
use common::{fresh_database, redis_url, unique};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

fn at(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn switch(pseudonym: &str, id: &str, to: Mode, minute: i64) -> SwitchMessage {
    SwitchMessage {
        schema: 1,
        switch_id: id.to_string(),
        thread_id: thread_id(pseudonym),
        user_id: format!("user-of-{pseudonym}"),
        user_pseudonym: pseudonym.to_string(),
        from_mode: Mode::Pattern,
        to_mode: to,
        at: at(minute),
        confidence: 0.75,
        reasons: Vec::new(),
        snapshot: Snapshot::default(),
        calibrating: false,
        event_id: EventId::derive(&[id]),
    }
}

fn checkpoint(pseudonym: &str, version: i64, position: (i32, i64)) -> CheckpointRow {
    CheckpointRow {
        checkpoint_id: uuid::Uuid::now_v7().to_string(),
        parent_id: None,
        thread_id: thread_id(pseudonym),
        pseudonym: pseudonym.to_string(),
        user_id: format!("user-of-{pseudonym}"),
        mode: "PATTERN".into(),
        version,
        state: serde_json::json!({"version": version}),
        last_position: Some(position),
    }
}

async fn key_store_contract(keys: &dyn KeyStore) {
    keys.check().await.unwrap();
    let (hash, user) = (unique("hash"), unique("user"));
    keys.insert(&hash, &user).await.unwrap();
    assert_eq!(keys.user_for(&hash).await.unwrap(), Some(user.clone()));
    assert_eq!(keys.user_for(&unique("other")).await.unwrap(), None);
    // A hash is one key: issuing the same one twice is refused, and the first stands.
    assert!(keys.insert(&hash, "someone-else").await.is_err());
    assert_eq!(keys.user_for(&hash).await.unwrap(), Some(user));
    key_revocation_contract(keys).await;
}

/// Listing shows ids, never the key or its whole hash; revoking stops the key at once in the
/// store, twice is harmless, and an id two keys share revokes neither.
async fn key_revocation_contract(keys: &dyn KeyStore) {
    use auren::store::{key_hash, key_id, new_key, Revocation, KEY_ID_LEN};
    let user = unique("user");
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    let (first, second) = (key_hash(&new_key().0), key_hash(&new_key().0));
    keys.insert(&first, &user).await.unwrap();
    keys.insert(&second, &user).await.unwrap();
    keys.insert(&key_hash(&new_key().0), &unique("other"))
        .await
        .unwrap();
    let listed = keys.list(&user).await.unwrap();
    assert_eq!(listed.len(), 2);
    let mut ids: Vec<&str> = listed.iter().map(|k| k.key_id.as_str()).collect();
    ids.sort();
    let mut expected = [key_id(&first), key_id(&second)];
    expected.sort();
    assert_eq!(ids, expected);
    for k in &listed {
        assert_eq!(k.key_id.len(), KEY_ID_LEN);
        assert!(k.created_at > before && k.created_at <= chrono::Utc::now());
        assert_eq!(k.revoked_at, None);
        let shown = serde_json::to_string(k).unwrap();
        assert!(
            !shown.contains(&k.key_hash) && !shown.contains(&user),
            "{shown}"
        );
    }
    assert!(keys.list(&unique("nobody")).await.unwrap().is_empty());

    let Revocation::Revoked(revoked) = keys.revoke(&key_id(&first)).await.unwrap() else {
        panic!("the first key is revoked");
    };
    assert_eq!(
        (revoked.key_hash.as_str(), revoked.user_id.as_str()),
        (first.as_str(), user.as_str())
    );
    let at = revoked.revoked_at.expect("a revocation time");
    assert!(at >= revoked.created_at);
    assert_eq!(keys.user_for(&first).await.unwrap(), None);
    assert_eq!(keys.user_for(&second).await.unwrap(), Some(user.clone()));
    match keys.revoke(&key_id(&first)).await.unwrap() {
        Revocation::AlreadyRevoked(k) => assert_eq!(k.revoked_at, Some(at)),
        other => panic!("revoking twice: {other:?}"),
    }
    let listed = keys.list(&user).await.unwrap();
    let of = |h: &str| listed.iter().find(|k| k.key_hash == h).unwrap().revoked_at;
    assert_eq!((of(&first), of(&second)), (Some(at), None));
    assert_eq!(
        keys.revoke(&"0".repeat(KEY_ID_LEN)).await.unwrap(),
        Revocation::NotFound
    );

    // Two hashes with one prefix (made up: real ones differ in 64 bits).
    let prefix = "abcdef0123456789";
    let twins = [
        format!("{prefix}{}", "0".repeat(48)),
        format!("{prefix}{}", "1".repeat(48)),
    ];
    for t in &twins {
        keys.insert(t, &user).await.unwrap();
    }
    assert_eq!(keys.revoke(prefix).await.unwrap(), Revocation::Ambiguous);
    for t in &twins {
        assert_eq!(keys.user_for(t).await.unwrap(), Some(user.clone()));
    }
}

async fn state_store_contract(store: &dyn StateStore) {
    store.check().await.unwrap();
    let (group, topic) = (unique("group"), unique("topic"));
    assert!(store.load_offsets(&group, &topic).await.unwrap().is_empty());
    let (a, b) = (unique("u"), unique("u"));
    assert!(store.load_user(&a).await.unwrap().is_none());

    let first = CommitBatch {
        keep_checkpoints: 2,
        group: group.clone(),
        topic: topic.clone(),
        offsets: vec![(0, 5), (2, 9)],
        checkpoints: vec![checkpoint(&a, 1, (0, 4)), checkpoint(&b, 1, (2, 8))],
        switches: vec![switch(&a, &unique("sw"), Mode::Reflex, 1)],
        sinks: Vec::new(),
    };
    store.commit(&first).await.unwrap();
    assert_eq!(
        store.load_offsets(&group, &topic).await.unwrap(),
        vec![(0, 5), (2, 9)]
    );
    let loaded = store.load_user(&a).await.unwrap().unwrap();
    assert_eq!(loaded.thread_id, thread_id(&a));
    assert_eq!(loaded.user_id, format!("user-of-{a}"));
    assert_eq!(loaded.version, 1);
    assert_eq!(loaded.last_position, Some((0, 4)));
    assert_eq!(loaded.state, serde_json::json!({"version": 1}));

    // Later checkpoints win; offsets move; an existing switch id is kept once.
    let mut later = Vec::new();
    for v in 2..=4 {
        let c = checkpoint(&a, v, (0, 10 + v));
        later.push(c.checkpoint_id.clone());
        store
            .commit(&CommitBatch {
                keep_checkpoints: 2,
                group: group.clone(),
                topic: topic.clone(),
                offsets: vec![(0, 20 + v)],
                checkpoints: vec![c],
                switches: first.switches.clone(),
                sinks: Vec::new(),
            })
            .await
            .unwrap();
    }
    let loaded = store.load_user(&a).await.unwrap().unwrap();
    assert_eq!(loaded.version, 4);
    assert_eq!(loaded.checkpoint_id, later[2]);
    assert_eq!(loaded.last_position, Some((0, 14)));
    assert_eq!(
        store.load_offsets(&group, &topic).await.unwrap(),
        vec![(0, 24), (2, 9)]
    );
    assert_eq!(store.history(&a, 10).await.unwrap(), first.switches);

    // The outbox: committed switches with their partition key, oldest first, until published.
    let second = switch(&a, &unique("sw"), Mode::Pattern, 30);
    store
        .commit(&CommitBatch {
            group: group.clone(),
            topic: topic.clone(),
            checkpoints: vec![checkpoint(&a, 5, (0, 20))],
            switches: vec![second.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    let pending: Vec<_> = store
        .unpublished(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|o| o.key == a)
        .collect();
    assert_eq!(pending.len(), 2);
    assert_eq!(pending[0].message, first.switches[0]);
    assert_eq!(pending[1].message, second);
    let ids: Vec<String> = pending
        .iter()
        .map(|p| p.message.switch_id.clone())
        .collect();
    store.mark_published(&ids[..1]).await.unwrap();
    let left: Vec<String> = store
        .unpublished(1000)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.message.switch_id)
        .collect();
    assert!(!left.contains(&ids[0]) && left.contains(&ids[1]));
    store.mark_published(&ids).await.unwrap();
    let left = store.unpublished(1000).await.unwrap();
    assert!(left.iter().all(|o| !ids.contains(&o.message.switch_id)));

    // History: newest first, limited, per user.
    assert_eq!(
        store.history(&a, 10).await.unwrap(),
        vec![second.clone(), first.switches[0].clone()]
    );
    assert_eq!(store.history(&a, 1).await.unwrap(), vec![second]);
    assert!(store.history(&b, 10).await.unwrap().is_empty());

    // Switches after a position (a reconnecting event stream): in the order they were committed,
    // whatever their event times, per user or everyone's; an id the history does not hold, or
    // holds for another user, is told apart from "nothing new".
    let c = unique("u");
    let mut order = Vec::new();
    for (i, who) in [&a, &c, &a, &c, &a].into_iter().enumerate() {
        let to = if i % 2 == 0 {
            Mode::Guardian
        } else {
            Mode::Hypothesis
        };
        let s = switch(who, &unique("sw"), to, 100 - i as i64);
        store
            .commit(&CommitBatch {
                group: group.clone(),
                topic: topic.clone(),
                checkpoints: vec![checkpoint(who, 10 + i as i64, (1, i as i64))],
                switches: vec![s.clone()],
                ..Default::default()
            })
            .await
            .unwrap();
        order.push(s);
    }
    let after = |p: Option<&str>, id: &str, limit: i64| {
        let (p, id) = (p.map(str::to_string), id.to_string());
        async move {
            store
                .switches_after(p.as_deref(), &id, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        after(Some(&a), &ids[1], 10).await,
        Some(vec![order[0].clone(), order[2].clone(), order[4].clone()])
    );
    assert_eq!(
        after(Some(&a), &order[0].switch_id, 10).await,
        Some(vec![order[2].clone(), order[4].clone()])
    );
    assert_eq!(
        after(None, &order[0].switch_id, 10).await,
        Some(order[1..].to_vec())
    );
    assert_eq!(
        after(None, &order[0].switch_id, 2).await,
        Some(order[1..3].to_vec())
    );
    assert_eq!(after(Some(&a), &order[4].switch_id, 10).await, Some(vec![]));
    assert_eq!(after(None, &order[4].switch_id, 10).await, Some(vec![]));
    assert_eq!(after(Some(&a), &order[1].switch_id, 10).await, None);
    assert_eq!(after(Some(&a), "no-such-switch", 10).await, None);
    assert_eq!(after(None, "no-such-switch", 10).await, None);
}

async fn dedup_contract(d: &dyn Dedup) {
    d.check().await.unwrap();
    let ids = vec![unique("ev"), unique("ev"), unique("ev")];
    assert_eq!(d.claim(&ids).await.unwrap(), vec![Claim::Claimed; 3]);
    assert_eq!(d.claim(&ids).await.unwrap(), vec![Claim::InFlight; 3]);
    d.confirm(&ids[..1]).await.unwrap();
    d.release(&ids[1..2]).await.unwrap();
    assert_eq!(
        d.claim(&ids[..2]).await.unwrap(),
        vec![Claim::Done, Claim::Claimed]
    );
    // A confirmed id is not released by a late release.
    d.release(&ids[..1]).await.unwrap();
    assert_eq!(d.claim(&ids[..1]).await.unwrap(), vec![Claim::Done]);
    // An in-flight claim whose owner died expires (claim TTL is 1 s here).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(d.claim(&ids[2..]).await.unwrap(), vec![Claim::Claimed]);
    assert_eq!(d.claim(&ids[..1]).await.unwrap(), vec![Claim::Done]);
}

fn view(pseudonym: &str, mode: Mode) -> StateView {
    let hrv = HrvBaseline {
        baseline_ms: 55.5,
        personal: true,
        days: 20,
        required_days: 14,
        normal_band_ms: Some([48.0, 61.0]),
    };
    StateView {
        user_pseudonym: pseudonym.into(),
        thread_id: thread_id(pseudonym),
        mode,
        confidence: 0.5,
        mode_since: Some(at(0)),
        calibrating: false,
        baselines: Baselines {
            hrv_rmssd: hrv.clone(),
            hrv_sdnn: HrvBaseline {
                normal_band_ms: None,
                ..hrv
            },
            resting_heart_rate: RestingHeartRateBaseline {
                baseline_bpm: Some(58.0),
                days: 20,
                required_days: 3,
            },
            heart_rate: HeartRateBaseline {
                baseline_bpm: 70.0,
                personal: false,
            },
        },
        latest: Snapshot::default(),
        events: 42,
        anomalies: 1,
        as_of: Some(at(5)),
    }
}

fn point(minute: i64) -> SeriesPoint {
    SeriesPoint {
        metric: Metric::HeartRate,
        value: 60.0 + minute as f64,
        at: at(minute),
        artefact: minute % 2 == 0,
    }
}

/// `cache` keeps at most 5 points per user and forgets after 1 s.
async fn state_cache_contract(cache: &dyn StateCache) {
    let (a, b) = (unique("u"), unique("u"));
    assert_eq!(cache.state(&a).await.unwrap(), None);
    assert!(cache.series(&a, 10).await.unwrap().is_empty());
    cache
        .put(&[
            CachedUser {
                pseudonym: a.clone(),
                state: view(&a, Mode::Guardian),
                points: (0..3).map(point).collect(),
            },
            CachedUser {
                pseudonym: b.clone(),
                state: view(&b, Mode::Pattern),
                points: Vec::new(),
            },
        ])
        .await
        .unwrap();
    assert_eq!(
        cache.state(&a).await.unwrap(),
        Some(view(&a, Mode::Guardian))
    );
    assert_eq!(
        cache.state(&b).await.unwrap(),
        Some(view(&b, Mode::Pattern))
    );
    assert_eq!(
        cache.series(&a, 10).await.unwrap(),
        (0..3).map(point).collect::<Vec<_>>()
    );
    cache
        .put(&[CachedUser {
            pseudonym: a.clone(),
            state: view(&a, Mode::Reflex),
            points: (3..8).map(point).collect(),
        }])
        .await
        .unwrap();
    assert_eq!(cache.state(&a).await.unwrap(), Some(view(&a, Mode::Reflex)));
    // Capped at the newest five, oldest first; `limit` takes the newest.
    assert_eq!(
        cache.series(&a, 10).await.unwrap(),
        (3..8).map(point).collect::<Vec<_>>()
    );
    assert_eq!(
        cache.series(&a, 2).await.unwrap(),
        (6..8).map(point).collect::<Vec<_>>()
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(cache.state(&a).await.unwrap(), None);
    assert!(cache.series(&a, 10).await.unwrap().is_empty());
}

/// Per-sink queues: filled by the commit, heads only, in order per user, leased, retried later.
async fn delivery_store_contract<S: StateStore + DeliveryStore>(store: &S) {
    let (a, b, c) = (unique("u"), unique("u"), unique("u"));
    let endpoint = WebhookEndpoint {
        id: unique("wh"),
        url: "https://example.com/hook".into(),
        events: vec!["mode.switched".into()],
        user_ids: Some(vec!["user-a".into()]),
        secret_sealed: "v1.sealed".into(),
        created_at: at(0),
        disabled_at: None,
        disabled_reason: None,
    };
    store
        .create_endpoint(&endpoint, std::slice::from_ref(&a))
        .await
        .unwrap();
    assert_eq!(
        store.endpoint(&endpoint.id).await.unwrap(),
        Some(endpoint.clone())
    );
    let sw = |p: &str, m| switch(p, &unique("sw"), Mode::Reflex, m);
    let (a1, a2, b1, c1) = (sw(&a, 1), sw(&a, 2), sw(&b, 3), sw(&c, 4));
    let batch = CommitBatch {
        checkpoints: vec![
            checkpoint(&a, 1, (0, 1)),
            checkpoint(&b, 1, (0, 2)),
            checkpoint(&c, 1, (0, 3)),
        ],
        switches: vec![a1.clone(), a2.clone(), b1.clone(), c1.clone()],
        sinks: vec!["agent".into()],
        ..Default::default()
    };
    store.commit(&batch).await.unwrap();
    // The switches committed again (a replay after a crash): queued once.
    store
        .commit(&CommitBatch {
            switches: batch.switches.clone(),
            sinks: batch.sinks.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.backlog("agent").await.unwrap(), 4);
    assert_eq!(
        store.backlog("webhook").await.unwrap(),
        2,
        "only user a's switches"
    );
    let now = Utc::now();
    let lease = now + chrono::Duration::seconds(60);
    let heads = store.claim("agent", "one", now, lease, 10).await.unwrap();
    let ids: Vec<_> = heads.iter().map(|d| d.message.switch_id.clone()).collect();
    assert_eq!(
        ids,
        [
            a1.switch_id.clone(),
            b1.switch_id.clone(),
            c1.switch_id.clone()
        ]
    );
    assert_eq!(heads[0].pseudonym, a);
    // Leased: another owner gets nothing until the lease runs out.
    assert!(store
        .claim("agent", "two", now, lease, 10)
        .await
        .unwrap()
        .is_empty());
    let later = lease + chrono::Duration::seconds(1);
    assert_eq!(
        store
            .claim("agent", "two", later, later, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    // a's first done: its second is the head; b's fails and waits.
    store.finish(heads[0].id).await.unwrap();
    store
        .retry_at(
            heads[1].id,
            1,
            now + chrono::Duration::seconds(30),
            "HTTP 500",
        )
        .await
        .unwrap();
    store.finish(heads[2].id).await.unwrap();
    let next = store.claim("agent", "one", now, lease, 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message, a2);
    let retried = store
        .claim(
            "agent",
            "one",
            now + chrono::Duration::seconds(31),
            lease,
            10,
        )
        .await
        .unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(
        (retried[0].message.switch_id.clone(), retried[0].attempts),
        (b1.switch_id.clone(), 1)
    );

    // Webhook queues carry their endpoint; attempts are kept newest first.
    let hooks = store.claim("webhook", "one", now, lease, 10).await.unwrap();
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].target, endpoint.id);
    for (n, outcome) in [(1, "failed"), (2, "delivered")] {
        let attempt = WebhookAttempt {
            message_id: a1.switch_id.clone(),
            attempt: n,
            attempted_at: at(n as i64),
            status: Some(if n == 1 { 500 } else { 204 }),
            outcome: outcome.into(),
            error: (n == 1).then(|| "HTTP 500".to_string()),
            duration_ms: 3,
        };
        store.record_attempt(&endpoint.id, &attempt).await.unwrap();
    }
    let attempts = store.attempts(&endpoint.id, 10).await.unwrap();
    assert_eq!(
        attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(attempts[1].error.as_deref(), Some("HTTP 500"));
    // Disabled: its queue goes, and new switches are not queued for it.
    store
        .disable_endpoint(&endpoint.id, "failed for the whole schedule")
        .await
        .unwrap();
    assert_eq!(store.backlog("webhook").await.unwrap(), 0);
    let disabled = store.endpoint(&endpoint.id).await.unwrap().unwrap();
    assert!(disabled.disabled_at.is_some());
    store
        .commit(&CommitBatch {
            switches: vec![sw(&a, 9)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.backlog("webhook").await.unwrap(), 0);
    assert_eq!(store.endpoints().await.unwrap().len(), 1);
    assert!(store.delete_endpoint(&endpoint.id).await.unwrap());
    assert!(!store.delete_endpoint(&endpoint.id).await.unwrap());
    assert!(store.attempts(&endpoint.id, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn postgres_store_meets_its_contracts() {
    let store = PgStore::connect(&fresh_database().await).await.unwrap();
    key_store_contract(&store).await;
    state_store_contract(&store).await;
    delivery_store_contract(&store).await;
}

#[tokio::test]
async fn sqlite_store_meets_its_contracts() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    key_store_contract(&store).await;
    state_store_contract(&store).await;
    delivery_store_contract(&store).await;
}

#[tokio::test]
async fn redis_dedup_meets_the_contract() {
    let d = RedisDedup::connect(&redis_url(), None, 60, Duration::from_secs(1))
        .await
        .unwrap();
    dedup_contract(&d).await;
}

#[tokio::test]
async fn memory_dedup_meets_the_contract() {
    let d = MemoryDedup::new(Duration::from_secs(60), Duration::from_secs(1), 1000);
    dedup_contract(&d).await;
}

#[tokio::test]
async fn redis_state_cache_meets_the_contract() {
    let c = RedisStateCache::connect(&redis_url(), None, 1, 5)
        .await
        .unwrap();
    state_cache_contract(&c).await;
}

#[tokio::test]
async fn memory_state_cache_meets_the_contract() {
    let c = MemoryStateCache::new(Duration::from_secs(1), 5);
    state_cache_contract(&c).await;
}

type Schema = (
    BTreeMap<String, BTreeSet<String>>,
    BTreeMap<String, (String, Vec<String>)>,
);

async fn postgres_schema() -> Schema {
    use sqlx::Row;
    let store = PgStore::connect(&fresh_database().await).await.unwrap();
    let pool = store.pool();
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        tables.entry(r.get(0)).or_default().insert(r.get(1));
    }
    // Indexes created by name: not those behind a primary key or unique constraint.
    let mut indexes = BTreeMap::new();
    for r in sqlx::query(
        "SELECT i.relname::text, t.relname::text,
                array_agg(a.attname::text ORDER BY k.n)
         FROM pg_index x
         JOIN pg_class i ON i.oid = x.indexrelid
         JOIN pg_class t ON t.oid = x.indrelid
         JOIN pg_namespace ns ON ns.oid = t.relnamespace
         CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
         JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum
         WHERE ns.nspname = 'public' AND t.relname <> '_sqlx_migrations'
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
         GROUP BY i.relname, t.relname",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    {
        indexes.insert(r.get(0), (r.get(1), r.get(2)));
    }
    (tables, indexes)
}

fn sqlite_schema() -> Schema {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let c = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut st = c
        .prepare(
            "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'",
        )
        .unwrap();
    for r in st
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .unwrap()
    {
        let (t, col) = r.unwrap();
        tables.entry(t).or_default().insert(col);
    }
    let mut indexes = BTreeMap::new();
    let mut st = c
        .prepare(
            "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
        )
        .unwrap();
    let named: Vec<(String, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (name, table) in named {
        let mut st = c
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
            .unwrap();
        let cols: Vec<String> = st
            .query_map([&name], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        indexes.insert(name, (table, cols));
    }
    (tables, indexes)
}

#[tokio::test]
async fn postgres_and_sqlite_schemas_have_the_same_tables_columns_and_indexes() {
    let (pg_tables, pg_indexes) = postgres_schema().await;
    let (lite_tables, lite_indexes) = sqlite_schema();
    assert!(pg_tables.contains_key("checkpoints"), "{pg_tables:?}");
    assert!(
        pg_indexes.contains_key("mode_history_unpublished"),
        "{pg_indexes:?}"
    );
    assert_eq!(pg_tables, lite_tables);
    assert_eq!(pg_indexes, lite_indexes);
}

#[test]
fn store_errors_keep_their_source() {
    let e = StoreError::from(rusqlite::Error::InvalidQuery);
    let source = std::error::Error::source(&e).expect("the SQLite error is kept");
    assert!(source.downcast_ref::<rusqlite::Error>().is_some());
}

fn vendor_connection(user: &str, vendor_user: &str, minute: i64) -> auren::store::VendorConnection {
    auren::store::VendorConnection {
        vendor: "whoop".into(),
        user_id: user.into(),
        vendor_user_id: vendor_user.into(),
        access_sealed: format!("v1.access-{user}"),
        refresh_sealed: Some(format!("v1.refresh-{user}")),
        expires_at: at(minute + 60),
        scope: "offline read:recovery".into(),
        status: "connected".into(),
        last_sync_at: None,
        last_error: None,
        created_at: at(minute),
        sync: Default::default(),
    }
}

/// Backfill and reconciliation leases, and the shared request budget.
async fn sync_store_contract(store: &dyn auren::store::ConnectionStore) {
    use auren::store::SyncState;
    // A vendor of its own: the other contracts leave connections behind.
    let whoop = vec!["whoop2".to_string()];
    let mut carol = vendor_connection("carol", "20001", 0);
    carol.vendor = "whoop2".into();
    store.upsert_connection(&carol).await.unwrap();
    let now = at(100);
    assert_eq!(
        store
            .claim_sync(&["oura".to_string()], "o1", now, at(110))
            .await
            .unwrap(),
        None,
        "only the vendors asked for"
    );
    let c = store
        .claim_sync(&whoop, "o1", now, at(110))
        .await
        .unwrap()
        .expect("a new connection is due at once");
    assert_eq!(c.user_id, "carol");
    assert_eq!(c.sync, SyncState::default());
    assert_eq!(
        store.claim_sync(&whoop, "o2", now, at(110)).await.unwrap(),
        None,
        "leased to o1"
    );
    let progress = SyncState {
        backfill_status: "running".into(),
        backfill_from: Some(at(-60 * 24)),
        backfill_done_until: Some(at(-60 * 12)),
        backfill_events: 42,
        ..SyncState::default()
    };
    assert!(!store
        .save_sync("whoop2", "carol", "o2", &progress, Some(at(120)))
        .await
        .unwrap());
    assert!(store
        .save_sync("whoop2", "carol", "o1", &progress, Some(at(120)))
        .await
        .unwrap());
    assert_eq!(
        store
            .claim_sync(&whoop, "o2", at(115), at(125))
            .await
            .unwrap(),
        None,
        "the lease was renewed"
    );
    // A lease that ran out is taken over, with the progress saved so far.
    let taken = store
        .claim_sync(&whoop, "o2", at(121), at(131))
        .await
        .unwrap()
        .expect("an expired lease");
    assert_eq!(taken.sync, progress);
    let done = SyncState {
        backfill_status: "done".into(),
        synced_until: Some(at(121)),
        next_sync_at: Some(at(481)),
        ..progress.clone()
    };
    assert!(store
        .save_sync("whoop2", "carol", "o2", &done, None)
        .await
        .unwrap());
    assert_eq!(
        store
            .claim_sync(&whoop, "o1", at(122), at(132))
            .await
            .unwrap(),
        None,
        "released, but not due until its next sync"
    );
    let due = store
        .claim_sync(&whoop, "o1", at(481), at(491))
        .await
        .unwrap()
        .expect("due");
    assert_eq!(due.sync, done);
    assert_eq!(
        store
            .connection("whoop2", "carol")
            .await
            .unwrap()
            .unwrap()
            .sync,
        done
    );
    store.delete_connection("whoop2", "carol").await.unwrap();

    // The budget: `limit` a window, counted by every caller alike.
    for _ in 0..3 {
        assert!(store.take_rate("whoop", 60, at(1), 3).await.unwrap());
    }
    assert!(!store.take_rate("whoop", 60, at(1), 3).await.unwrap());
    assert!(
        store.take_rate("whoop", 60, at(2), 3).await.unwrap(),
        "a new window"
    );
    assert!(
        store.take_rate("oura", 60, at(1), 3).await.unwrap(),
        "per vendor"
    );
    assert!(
        store.take_rate("whoop", 86_400, at(1), 3).await.unwrap(),
        "per span"
    );
}

async fn connection_store_contract(store: &dyn auren::store::ConnectionStore) {
    let a = vendor_connection("alice", "10129", 0);
    store.upsert_connection(&a).await.unwrap();
    assert_eq!(
        store.connection("whoop", "alice").await.unwrap(),
        Some(a.clone())
    );
    assert_eq!(
        store
            .connection_for_vendor_user("whoop", "10129")
            .await
            .unwrap()
            .map(|c| c.user_id),
        Some("alice".into())
    );
    assert_eq!(store.connection("oura", "alice").await.unwrap(), None);
    // One user per vendor account: bob linking the same WHOOP account replaces alice's link.
    store
        .upsert_connection(&vendor_connection("bob", "10129", 1))
        .await
        .unwrap();
    assert_eq!(store.connection("whoop", "alice").await.unwrap(), None);
    store.upsert_connection(&a).await.unwrap();
    assert_eq!(store.connection("whoop", "bob").await.unwrap(), None);

    store
        .store_tokens(
            "whoop",
            "alice",
            "v1.new-access",
            Some("v1.new-refresh"),
            at(120),
        )
        .await
        .unwrap();
    store
        .set_health("whoop", "alice", "connected", None, Some(at(5)))
        .await
        .unwrap();
    store
        .set_health(
            "whoop",
            "alice",
            "revoked",
            Some("refresh refused (HTTP 400)"),
            None,
        )
        .await
        .unwrap();
    let c = store.connection("whoop", "alice").await.unwrap().unwrap();
    assert_eq!(c.access_sealed, "v1.new-access");
    assert_eq!(c.refresh_sealed.as_deref(), Some("v1.new-refresh"));
    assert_eq!(c.expires_at, at(120));
    assert_eq!(c.status, "revoked");
    assert_eq!(c.last_error.as_deref(), Some("refresh refused (HTTP 400)"));
    assert_eq!(c.last_sync_at, Some(at(5)), "a failure keeps the last sync");
    assert_eq!(store.connections_of("alice").await.unwrap().len(), 1);
    assert!(store.delete_connection("whoop", "alice").await.unwrap());
    assert!(!store.delete_connection("whoop", "alice").await.unwrap());
    assert!(store.connections_of("alice").await.unwrap().is_empty());

    // Parked notifications come due only once their account is connected and their time came.
    let parked = |id: &str, account: &str, minutes: i64| auren::store::ParkedNotification {
        event_id: id.into(),
        vendor: "whoop".into(),
        vendor_user_id: account.into(),
        body: format!("{{\"id\":\"{id}\"}}"),
        reason: "unknown_user".into(),
        not_before: at(minutes),
        attempts: 0,
    };
    store
        .park_notification(&parked("e1", "555", 0))
        .await
        .unwrap();
    store
        .park_notification(&parked("e2", "555", 30))
        .await
        .unwrap();
    assert!(
        store.due_parked(at(60), 10).await.unwrap().is_empty(),
        "not connected"
    );
    store
        .upsert_connection(&vendor_connection("erin", "555", 0))
        .await
        .unwrap();
    let due = store.due_parked(at(10), 10).await.unwrap();
    assert_eq!(due, vec![parked("e1", "555", 0)]);
    let mut again = parked("e1", "555", 90);
    again.attempts = 1;
    again.reason = "not_scored".into();
    store.park_notification(&again).await.unwrap();
    assert_eq!(
        store.due_parked(at(60), 10).await.unwrap(),
        vec![parked("e2", "555", 30)]
    );
    assert_eq!(store.due_parked(at(90), 10).await.unwrap().len(), 2);
    store.drop_parked("e1").await.unwrap();
    store.drop_parked("e2").await.unwrap();
    assert!(store.due_parked(at(90), 10).await.unwrap().is_empty());

    let later = Utc::now() + chrono::Duration::minutes(10);
    assert!(store.consume_oauth_state("nonce-1", later).await.unwrap());
    assert!(
        !store.consume_oauth_state("nonce-1", later).await.unwrap(),
        "a replay"
    );
    assert!(store.consume_oauth_state("nonce-2", later).await.unwrap());
}

#[tokio::test]
async fn postgres_connection_store_meets_its_contract() {
    let store = PgStore::connect(&fresh_database().await).await.unwrap();
    connection_store_contract(&store).await;
    sync_store_contract(&store).await;
}

#[tokio::test]
async fn sqlite_connection_store_meets_its_contract() {
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(dir.path()).unwrap();
    connection_store_contract(&lite).await;
    sync_store_contract(&lite).await;
}
