//! Pure core of AUREN Bridge: no IO, no clocks, no randomness.
//!
//! Everything a decision depends on is passed in (bytes, headers, the current time), so every
//! rule here can be unit- and property-tested, and a replay of the same input gives the same
//! output. The service crate wraps this core with adapters for HTTP, the event log, stores and
//! caches.

pub mod engine;
pub mod ingest;
pub mod model;
pub mod pseudonym;
pub mod scenarios;
pub mod signature;
pub mod units;
pub mod vendors;
