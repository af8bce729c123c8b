//! Delivery to a LangGraph server (`LANGGRAPH_URL`): one thread per user, each switch written to
//! it in order. The protocol, as observed on a real `langgraph dev` server, is in
//! `examples/langgraph-agent/API-NOTES.md`; the notes below say only why this code is shaped so.
//!
//! - The thread id is a UUIDv5 of the pseudonym (the server only takes UUIDs), so every process
//!   and every restart finds the same thread without storing it; threads are created with
//!   `if_exists: do_nothing`, and recreated when the server answers 404 (it lost its data).
//! - `state` mode: the server has no conditional write, so idempotence is read-then-write: a
//!   switch already in the thread's `applied_switch_ids` is not written again, and one older
//!   than the thread's `switched_at` only records its id. Safe because this is the one writer of
//!   those keys and a user's switches are delivered one at a time.
//! - `run` mode: the graph itself drops a switch it already applied; a run that fails is
//!   reported inside a 200 (`__error__`), which counts as a failed delivery.
//! - Errors never carry response bodies: the server's 409 repeats the in-flight run's input.

use super::{backoff, describe, Outcome, Sink};
use crate::settings::{DeliverySettings, LangGraphDelivery};
use crate::store::PendingDelivery;
use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

/// `uuid5(NAMESPACE_DNS, "threads.langgraph.auren.invalid")`: the namespace of thread ids.
pub const THREAD_NS: Uuid = Uuid::from_u128(0xb4341596_9c01_5880_b268_ef1e5382dbdd);

/// The node a state update is attributed to, as the example graph names it.
const AS_NODE: &str = "apply_switch";

/// A failure the server makes deterministic (a malformed switch, a bad assistant): retried a
/// few times in case it was a deployment in progress, then given up so that the user's later
/// switches are not held behind it for ever.
const MAX_PERMANENT_FAILURES: i32 = 10;

/// A user's LangGraph thread id.
pub fn thread_uuid(pseudonym: &str) -> Uuid {
    Uuid::new_v5(&THREAD_NS, pseudonym.as_bytes())
}

enum Failure {
    /// Worth retrying after the usual backoff (server down, 5xx, timeouts).
    Transient(String),
    /// Retry soon: a run is in flight on the thread, or the thread had to be recreated.
    Soon(String),
    /// The server refused what was sent.
    Permanent(String),
}

pub struct LangGraph {
    http: reqwest::Client,
    base: url::Url,
    api_key: Option<String>,
    assistant: String,
    mode: LangGraphDelivery,
    timeout: Duration,
    graph_id: tokio::sync::OnceCell<String>,
    /// Threads known to exist, so that each is created once per process.
    threads: moka::sync::Cache<Uuid, ()>,
}

impl LangGraph {
    pub fn new(base: url::Url, s: &DeliverySettings) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(s.langgraph_timeout_ms);
        Ok(Self {
            http: reqwest::Client::builder()
                // rustls: TLS 1.3 preferred, 1.2 the floor.
                .min_tls_version(reqwest::tls::Version::TLS_1_2)
                .timeout(timeout)
                .connect_timeout(Duration::from_secs(5))
                .build()?,
            base,
            api_key: s.langgraph_api_key.clone().filter(|k| !k.is_empty()),
            assistant: s.langgraph_assistant_id.clone(),
            mode: s.langgraph_delivery,
            timeout,
            graph_id: tokio::sync::OnceCell::new(),
            threads: moka::sync::Cache::builder().max_capacity(100_000).build(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, self.url(path));
        match &self.api_key {
            Some(k) => r.header("x-api-key", k),
            None => r,
        }
    }

    /// Sends and sorts the answer: the JSON of a 2xx, or a failure by status.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<(StatusCode, Value), Failure> {
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Transient(describe(&e)))?;
        let status = resp.status();
        if status.is_success() {
            let v = resp
                .json::<Value>()
                .await
                .map_err(|e| Failure::Transient(describe(&e)))?;
            return Ok((status, v));
        }
        Err(match status {
            StatusCode::CONFLICT => {
                Failure::Soon("HTTP 409: a run is in flight on the thread".into())
            }
            StatusCode::NOT_FOUND => Failure::Soon("HTTP 404: thread not found".into()),
            StatusCode::TOO_MANY_REQUESTS => Failure::Transient("HTTP 429".into()),
            s if s.is_server_error() => Failure::Transient(format!("HTTP {}", s.as_u16())),
            s => Failure::Permanent(format!("HTTP {}", s.as_u16())),
        })
    }

    /// The graph a thread must name in its metadata: the assistant's graph when the assistant
    /// is a UUID, else the graph name itself.
    async fn graph_id(&self) -> Result<String, Failure> {
        self.graph_id
            .get_or_try_init(|| async {
                if Uuid::parse_str(&self.assistant).is_err() {
                    return Ok(self.assistant.clone());
                }
                let path = format!("/assistants/{}", self.assistant);
                let (_, v) = self.call(self.request(reqwest::Method::GET, &path)).await?;
                v["graph_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Failure::Permanent("the assistant names no graph".into()))
            })
            .await
            .cloned()
    }

    async fn ensure_thread(&self, thread: Uuid, d: &PendingDelivery) -> Result<(), Failure> {
        if self.threads.contains_key(&thread) {
            return Ok(());
        }
        let body = json!({
            "thread_id": thread.to_string(),
            "if_exists": "do_nothing",
            "metadata": {
                "graph_id": self.graph_id().await?,
                "user_pseudonym": d.pseudonym,
                "auren_thread": d.message.thread_id,
                "created_by": "auren-bridge",
            },
        });
        self.call(self.request(reqwest::Method::POST, "/threads").json(&body))
            .await?;
        self.threads.insert(thread, ());
        Ok(())
    }

    async fn write_state(&self, thread: Uuid, d: &PendingDelivery) -> Result<(), Failure> {
        let m = &d.message;
        let path = format!("/threads/{thread}/state");
        let (_, current) = self.call(self.request(reqwest::Method::GET, &path)).await?;
        let values = &current["values"];
        let applied = values["applied_switch_ids"]
            .as_array()
            .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(&m.switch_id)));
        if applied {
            return Ok(());
        }
        let newer_in_thread = values["switched_at"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| t > m.at);
        let update = if newer_in_thread {
            json!({"applied_switch_ids": [m.switch_id]})
        } else {
            json!({
                "mode": m.to_mode,
                "previous_mode": m.from_mode,
                "confidence": m.confidence,
                "reasons": m.reasons,
                "readings": m.snapshot,
                "calibrating": m.calibrating,
                "switch_id": m.switch_id,
                "switched_at": m.at,
                "user_pseudonym": m.user_pseudonym,
                "applied_switch_ids": [m.switch_id],
            })
        };
        let body = json!({"values": update, "as_node": AS_NODE});
        self.call(self.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        Ok(())
    }

    async fn start_run(&self, thread: Uuid, d: &PendingDelivery) -> Result<(), Failure> {
        let m = &d.message;
        let body = json!({
            "assistant_id": self.assistant,
            "input": {"switch": m},
            "metadata": {"switch_id": m.switch_id, "source": "auren-bridge"},
            "multitask_strategy": "enqueue",
        });
        let path = format!("/threads/{thread}/runs/wait");
        let (_, v) = self
            .call(self.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        if let Some(e) = v.get("__error__") {
            // The error's type only: its message may quote the input.
            let kind = e["error"].as_str().unwrap_or("unknown");
            return Err(Failure::Permanent(format!("the run failed: {kind}")));
        }
        if let Some(ids) = v["applied_switch_ids"].as_array() {
            if !ids.iter().any(|id| id.as_str() == Some(&m.switch_id)) {
                return Err(Failure::Permanent(
                    "the run ended without applying the switch".into(),
                ));
            }
        }
        Ok(())
    }

    async fn try_deliver(&self, d: &PendingDelivery) -> Result<(), Failure> {
        let thread = thread_uuid(&d.pseudonym);
        self.ensure_thread(thread, d).await?;
        let done = match self.mode {
            LangGraphDelivery::State => self.write_state(thread, d).await,
            LangGraphDelivery::Run => self.start_run(thread, d).await,
        };
        if matches!(&done, Err(Failure::Soon(e)) if e.starts_with("HTTP 404")) {
            self.threads.invalidate(&thread);
        }
        done
    }
}

#[async_trait]
impl Sink for LangGraph {
    fn kind(&self) -> &'static str {
        "langgraph"
    }

    fn max_duration(&self) -> Duration {
        // Up to four requests (assistant, thread, read, write).
        self.timeout * 4
    }

    async fn deliver(&self, d: &PendingDelivery) -> Outcome {
        let attempts = d.attempts + 1;
        match self.try_deliver(d).await {
            Ok(()) => Outcome::Delivered,
            Err(Failure::Soon(error)) => Outcome::Retry {
                error,
                after: Duration::from_millis(250 * u64::from(attempts.clamp(1, 8) as u32)),
            },
            Err(Failure::Transient(error)) => Outcome::Retry {
                error,
                after: backoff(attempts),
            },
            Err(Failure::Permanent(error)) if attempts >= MAX_PERMANENT_FAILURES => {
                Outcome::GiveUp { error }
            }
            Err(Failure::Permanent(error)) => Outcome::Retry {
                error,
                after: backoff(attempts),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_ids_are_the_documented_uuid5_of_the_pseudonym() {
        // The namespace is uuid5(NAMESPACE_DNS, "threads.langgraph.auren.invalid").
        assert_eq!(
            Uuid::new_v5(&Uuid::NAMESPACE_DNS, b"threads.langgraph.auren.invalid"),
            THREAD_NS
        );
        let a = thread_uuid("u_abc");
        assert_eq!(a, thread_uuid("u_abc"));
        assert_ne!(a, thread_uuid("u_abd"));
        assert_eq!(a.get_version_num(), 5);
    }
}
