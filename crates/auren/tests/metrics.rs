//! `/metrics` of a running `auren serve` (the binary, ingest and bridge): every metric has help
//! text, the build is identified, the process is measured, and the text is valid Prometheus
//! exposition (`promtool check metrics`, when promtool is available: `scripts/test.sh` passes it
//! as `AUREN_TEST_PROMTOOL`).

mod common;
use common::*;
use std::collections::BTreeSet;
use std::process::Stdio;

/// Kills the child on drop, so a failed assertion leaves no service behind.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn promtool() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("AUREN_TEST_PROMTOOL").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let cache = std::env::var_os("AUREN_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/auren"))
        })?;
    let cached = cache.join("promtool/promtool");
    if cached.exists() {
        return Some(cached);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("promtool"))
        .find(|p| p.exists())
}

#[tokio::test]
async fn every_metric_has_help_and_the_build_and_process_are_measured() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = service_args(&Options::default(), dir.path()).await;
    let (api, metrics) = (free_port(), free_port());
    settings.http.http_addr = format!("127.0.0.1:{api}").parse().unwrap();
    settings.metrics.metrics_addr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let _service = Running(
        auren_command(&settings)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{api}");
    eventually(30, "the service to answer /health", || async {
        client.get(format!("{base}/health")).send().await.ok()
    })
    .await;
    // Traffic of several kinds, so counters, gauges and histograms all have series.
    let body = whoop_body(&unique("trace"));
    let mut req = client
        .post(format!("{base}/webhooks/whoop"))
        .body(body.clone());
    for (k, v) in whoop_headers(WHOOP_SECRET, &now_millis(), &body) {
        req = req.header(k, v);
    }
    assert_eq!(req.send().await.unwrap().status(), 200);
    let r = client
        .post(format!("{base}/webhooks/whoop"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let scrape = || async {
        client
            .get(format!("http://127.0.0.1:{metrics}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let text = eventually(10, "the webhook and bridge metrics", || async {
        let t = scrape().await;
        (t.contains("auren_log_append_seconds")
            && t.contains("auren_kafka_messages_processed_total"))
        .then_some(t)
    })
    .await;
    let names = |prefix: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let (typed, helped) = (names("# TYPE "), names("# HELP "));
    assert!(typed.len() >= 10, "{text}");
    let bare: Vec<_> = typed.difference(&helped).collect();
    assert!(bare.is_empty(), "metrics without HELP: {bare:?}\n{text}");
    for name in &typed {
        let help = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# HELP {name} ")))
            .unwrap_or_default();
        assert!(help.len() > 10, "{name}: help {help:?}");
    }

    let build = text
        .lines()
        .find(|l| l.starts_with("auren_build_info{"))
        .unwrap_or_else(|| panic!("no auren_build_info:\n{text}"));
    assert!(build.ends_with(" 1"), "{build}");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    let revision = build
        .split("revision=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap();
    // Built from a git checkout here (CI builds from a clone): the revision is HEAD's.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert_eq!(revision, head.trim(), "{build}");

    for process in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_threads",
        "process_start_time_seconds",
    ] {
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{process} ")))
            .unwrap_or_else(|| panic!("no {process}:\n{text}"));
        let value: f64 = value.trim().parse().unwrap();
        // CPU time is a counter of whole seconds: 0 this early.
        let least = if process.starts_with("process_cpu") {
            0.0
        } else {
            1.0
        };
        assert!(value >= least, "{process} {value}");
    }

    match promtool() {
        Some(promtool) => {
            use std::io::Write;
            let mut child = std::process::Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                out.status.success(),
                "promtool check metrics: {said}\n{text}"
            );
            // promtool's lint notes (e.g. counters without _total) are printed, not failures.
            println!(
                "promtool check metrics passed{}",
                if said.trim().is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            );
        }
        None => println!("promtool not found: `promtool check metrics` not run"),
    }
}
