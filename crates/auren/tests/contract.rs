//! The API against its own description, judged by an independent implementation: schemathesis
//! (from PyPI, in the cached virtualenv `scripts/test.sh` builds) generates requests from
//! `/openapi.json` and checks the live service's answers: no 5xx, every status documented,
//! every content type and body as described.

mod common;
use common::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let venv = std::env::var("AUREN_TEST_CONTRACT_VENV").expect(
        "AUREN_TEST_CONTRACT_VENV names the virtualenv with schemathesis; scripts/test.sh sets it",
    );
    let app = TestApp::spawn(Options {
        bridge: true,
        // Schemathesis sends wrong tokens on purpose; it is not a guesser to lock out.
        settings: Some(|s| s.http.auth_failures_per_minute = 1_000_000),
        ..Default::default()
    })
    .await;
    // A user with state and history, so the read endpoints have something to describe.
    let key = app.issue_key("contract-user").await;
    let start = chrono::Utc::now() - chrono::Duration::hours(2);
    assert_eq!(
        app.push(&key, "contract-user", &stress_episode(start, 30))
            .await
            .status(),
        200
    );
    let spec: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spec["info"]["title"], "AUREN Bridge");
    // Twice: with generated user ids (invalid ones, unknown ones), then with the known user,
    // so the 200 answers of the read endpoints are checked against their schemas too.
    let config = app.data_dir.path().join("schemathesis.toml");
    std::fs::write(&config, "[parameters]\nuser_id = \"contract-user\"\n").unwrap();
    // The live event streams never end: schemathesis reads each answer until 20 events or its
    // request timeout, so every 200 from them would cost the whole timeout. They get a run of
    // their own with fewer examples and a short timeout (what arrives in it is still checked
    // against the event schema), after the two runs over everything else.
    for run in ["generated users", "fixed user", "event streams"] {
        let (fixed_user, streams) = (run != "generated users", run == "event streams");
        let mut cmd = tokio::process::Command::new(format!("{venv}/bin/schemathesis"));
        // Its cache (and any failures it would replay) stays in this test's scratch directory.
        cmd.current_dir(app.data_dir.path()).arg("--no-color");
        if fixed_user {
            cmd.arg("--config-file").arg(&config);
        }
        let (max_examples, timeout) = if streams { ("5", "3") } else { ("30", "10") };
        cmd.args([
            "run",
            &app.url("/openapi.json"),
            if streams {
                "--include-path-regex"
            } else {
                "--exclude-path-regex"
            },
            "/events$",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            max_examples,
            "--workers",
            "2",
            "--request-timeout",
            timeout,
            "--header",
            &format!("Authorization: Bearer {ADMIN}"),
        ]);
        let out = tokio::time::timeout(Duration::from_secs(600), cmd.output())
            .await
            .expect("schemathesis finishes within 10 minutes")
            .expect("schemathesis runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "schemathesis found problems ({run}):\n{stdout}\n{stderr}"
        );
        // It did test the API, not an empty description.
        let tested = if streams { "Tested: 2" } else { "Tested: 21" };
        assert!(stdout.contains(tested), "{stdout}");
        if fixed_user {
            // The user routes reach real data; webhook ids are not given (no endpoint exists:
            // without AUREN_TOKEN_KEY registration answers its documented 409).
            let missing = stdout
                .split_once("Missing test data")
                .map(|(_, rest)| rest.split("SUMMARY").next().unwrap_or(rest))
                .unwrap_or("");
            assert!(!missing.contains("/users/"), "{stdout}");
        }
    }
    app.stop().await;
}
