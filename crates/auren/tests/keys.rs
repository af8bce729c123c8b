//! Listing and revoking push keys through the admin API, and revocation across instances: two
//! services on one PostgreSQL database, a key used on both, revoked through one, refused by the
//! other once its cached lookup expires (`AUREN_KEY_CACHE_TTL_SECONDS`).

mod common;
use common::*;
use std::time::{Duration, Instant};

const TTL_SECONDS: u64 = 2;

fn sample(minute: u32) -> Vec<(&'static str, f64, String)> {
    vec![("heartRate", 70.0, format!("2025-01-27T10:{minute:02}:00Z"))]
}

#[tokio::test]
async fn a_key_revoked_on_one_instance_is_refused_by_the_other_within_the_cache_ttl() {
    let a = TestApp::spawn_with(
        Options {
            postgres: true,
            ..Default::default()
        },
        |s| s.ingest.key_cache_ttl_seconds = TTL_SECONDS,
    )
    .await;
    let url = a.args.store.postgres_url.clone();
    let b = TestApp::spawn_with(Options::default(), move |s| {
        s.store.postgres_url = url;
        s.ingest.key_cache_ttl_seconds = TTL_SECONDS;
    })
    .await;
    let user = unique("revoked-user");
    let r = a
        .client
        .post(a.url(&format!("/admin/users/{user}/keys")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = r.json::<serde_json::Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let other_key = a.issue_key(&user).await;
    // Both instances accept the key, and have now cached its lookup.
    for app in [&a, &b] {
        assert_eq!(app.push(&key, &user, &sample(1)).await.status(), 200);
    }

    let (status, listed) = b
        .get_json(&format!("/admin/users/{user}/keys"), ADMIN)
        .await;
    assert_eq!(status, 200, "{listed}");
    let keys = listed["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{listed}");
    let text = listed.to_string();
    assert!(!text.contains(&key) && !text.contains(&other_key), "{text}");
    let hash = auren::store::key_hash(&key);
    assert!(
        !text.contains(&hash),
        "the whole hash is never shown: {text}"
    );
    let key_id = auren::store::key_id(&hash);
    let entry = keys
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .unwrap();
    assert!(entry["created_at"].is_string() && entry["revoked_at"].is_null());

    let r = a
        .client
        .delete(a.url(&format!("/admin/keys/{key_id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let revoked_at = Instant::now();
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["revoked_now"], true, "{answer}");
    assert_eq!(answer["key_id"], key_id.as_str());
    assert!(answer["revoked_at"].is_string());

    // The instance that revoked it refuses it at once.
    let (status, p) = problem(a.push(&key, &user, &sample(2)).await).await;
    assert_eq!(
        (status, p["reason"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // The other within its cache TTL.
    loop {
        let r = b.push(&key, &user, &sample(3)).await;
        if r.status() == 401 {
            break;
        }
        assert_eq!(r.status(), 200);
        assert!(
            revoked_at.elapsed() < Duration::from_millis(TTL_SECONDS * 1000 + 1500),
            "instance b still accepts the revoked key after {:?}",
            revoked_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let bound = revoked_at.elapsed();
    println!("refused by the other instance {bound:?} after the revocation");
    // Reading the user's data with it is refused too; the user's other key still works.
    let (status, _) = b.get_json(&format!("/users/{user}/modes"), &key).await;
    assert_eq!(status, 401);
    for app in [&a, &b] {
        assert_eq!(app.push(&other_key, &user, &sample(4)).await.status(), 200);
    }

    // Revoking again changes nothing; the listing shows when.
    let r = b
        .client
        .delete(b.url(&format!("/admin/keys/{key_id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let again: serde_json::Value = r.json().await.unwrap();
    assert_eq!(again["revoked_now"], false);
    assert_eq!(again["revoked_at"], answer["revoked_at"]);
    let (_, listed) = a
        .get_json(&format!("/admin/users/{user}/keys"), ADMIN)
        .await;
    let entry = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == key_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["revoked_at"], answer["revoked_at"]);
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn key_endpoints_answer_problems() {
    let app = TestApp::spawn(Options::default()).await;
    let user = unique("user");
    let delete = |id: String, token: Option<&'static str>| {
        let mut req = app.client.delete(app.url(&format!("/admin/keys/{id}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    for (id, token, status, reason) in [
        ("0123456789abcdef", None, 401, "missing_token"),
        ("0123456789abcdef", Some("not-the-token"), 403, "not_admin"),
        ("0123456789abcdef", Some(ADMIN), 404, "unknown_key"),
        ("0123456789ABCDEF", Some(ADMIN), 400, "invalid_key_id"),
        ("0123", Some(ADMIN), 400, "invalid_key_id"),
    ] {
        let (s, p) = problem(delete(id.to_string(), token).await.unwrap()).await;
        assert_eq!((s, p["reason"].as_str().unwrap()), (status, reason), "{id}");
    }
    // A user key is not the admin token.
    let key = app.issue_key(&user).await;
    let r = app
        .client
        .get(app.url(&format!("/admin/users/{user}/keys")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let (s, p) = problem(r).await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (403, "not_admin"));
    let (s, p) = problem(
        app.client
            .get(app.url("/admin/users/%20/keys"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, p["reason"].as_str().unwrap()), (400, "invalid_user_id"));
    let (s, listed) = app
        .get_json(&format!("/admin/users/{}/keys", unique("nobody")), ADMIN)
        .await;
    assert_eq!((s, listed["keys"].as_array().unwrap().len()), (200, 0));

    // Two keys sharing an id (made up; real ids differ in 64 bits): neither is revoked.
    let store = app.backends.keys().await.unwrap();
    let prefix = "fedcba9876543210";
    for tail in ["0", "1"] {
        store
            .insert(&format!("{prefix}{}", tail.repeat(48)), &user)
            .await
            .unwrap();
    }
    let (s, p) = problem(delete(prefix.to_string(), Some(ADMIN)).await.unwrap()).await;
    assert_eq!(
        (s, p["reason"].as_str().unwrap()),
        (409, "ambiguous_key_id")
    );
    app.stop().await;
}
