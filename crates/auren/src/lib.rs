//! AUREN Bridge service: the adapters around `auren-core`.
//!
//! - [`http`]: the webhook API (sources).
//! - [`log`]: the durable event log, Kafka or embedded (the sink ingest acknowledges against).
//! - [`store`], [`cache`]: state store (PostgreSQL | SQLite) and cache (Redis | in-process).
//! - [`app`]: wiring and lifecycle; [`cli`]: the `auren` command.

pub mod app;
pub mod bridge;
pub mod cache;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod http;
pub mod log;
pub mod reload;
pub mod replay;
pub mod simulate;
pub mod store;
pub mod telemetry;
