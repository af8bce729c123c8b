//! AUREN Bridge service: the adapters around `auren-core`, and the `auren` binary.
//!
//! # Layout
//!
//! Read in this order; each module's own doc says why it is shaped as it is.
//!
//! - [`settings`]: one typed settings tree (flags, environment, an optional YAML file), split
//!   into groups that each command takes as it needs.
//! - [`root`]: the composition root. [`root::Backends`] opens each port once, on first use.
//! - The ports and their adapters, each choosing its backend inside its own folder:
//!   - [`log`]: the durable event log (append, subscribe, read, create topics, close):
//!     `log/kafka` | `log/embedded`.
//!   - [`store`]: API keys and the bridge's durable state: PostgreSQL | SQLite, with their
//!     migrations side by side in `migrations/{postgres,sqlite}`.
//!   - [`cache`]: ingest dedup and the state cache: Redis | in-process.
//! - [`messages`]: the typed messages that leave the bridge (switch, dead letter, state view,
//!   series point).
//! - [`http`]: the API: webhooks (verify, normalise, append, acknowledge), user state, admin.
//! - [`bridge`]: consumes the log in per-user order, runs the pure engine, checkpoints state and
//!   offsets in one transaction, publishes switches from an outbox.
//! - [`live`]: what live event streams carry (every bridge's switches, from the switches
//!   topic; users' state, from the cache), gathered once per process and fanned out.
//! - [`reload`]: the thresholds file in force, and its hot reload.
//! - [`shutdown`]: one signal every long-running piece stops on, and the drain after it.
//! - [`app`]: `serve` and `bridge`, the long-running commands; [`cli`]: every command.
//! - [`connect`]: users' OAuth2 connections to Oura and WHOOP, and the fetch-after-notify
//!   worker; [`vendors_fake`]: fake WHOOP and Oura APIs for tests and newcomers.
//! - [`dlq`]: dead-letter replay; [`replay`]: a scenario file through the engine offline;
//!   [`simulate`]: realistic signed traffic for a running service;
//!   [`telemetry`]: metrics and log lines; [`tls`]: certificates for the API listener and Redis.
//!
//! Dependencies point one way: `settings`, `messages` and `shutdown` depend on nothing here;
//! the ports on `settings` (and `log` on `cache` for Kafka's dedup); `root` on the ports; `http`,
//! `bridge` and `dlq` on the ports; `app` and `cli` on everything.

pub mod app;
pub mod bridge;
pub mod cache;
pub mod cli;
pub mod connect;
pub mod crypto;
pub mod delivery;
pub mod dlq;
pub mod http;
pub mod live;
pub mod log;
pub mod messages;
pub mod reload;
pub mod replay;
pub mod root;
pub mod settings;
pub mod shutdown;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod vendors_fake;
