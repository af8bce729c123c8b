//! One module per vendor: how it signs, what it sends, and how that becomes [`crate::model`]
//! events. Nothing here does IO; the HTTP layer hands in headers, raw bytes and the current time.

pub mod health_auto_export;
pub mod healthkit;
pub mod oura;
pub mod whoop;

use crate::model::{Metric, ReadingDetail};
use chrono::{DateTime, Utc};

/// Why a body could not be read at all (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

impl MalformedBody {
    pub fn from_json(e: serde_json::Error) -> Self {
        // serde's message names the field and position but never echoes the value.
        MalformedBody(format!("body is not the expected JSON: {e}"))
    }
}

/// A sample that was read and normalised, before it is bound to a user and given an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalisedSample {
    pub metric: Metric,
    pub value: f64,
    pub occurred_at: DateTime<Utc>,
    pub detail: Option<ReadingDetail>,
    pub device: Option<String>,
    pub confidence: f64,
    /// The parts that identify this sample for idempotency, beyond the user.
    pub identity: Vec<String>,
}

/// Why one sample was refused (HTTP 422 when no sample of the request was valid).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampleRejection {
    /// Position of the sample in the request, e.g. `pushes[0].samples[3]` or `metrics[2].data[7]`.
    pub at: String,
    /// The vendor's type name, when it could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_type: Option<String>,
    /// Machine-readable reason, also a bounded metric label.
    pub reason: &'static str,
    pub detail: String,
}

/// Outcome of reading a multi-sample push: what was valid, what was refused, what was skipped
/// because we do not track that type.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedSamples {
    pub samples: Vec<NormalisedSample>,
    pub rejected: Vec<SampleRejection>,
    pub unsupported: Vec<String>,
}

/// Puts a push's samples in event-time order (stable, so equal times keep their order). HealthKit
/// answers one query per type, so a push lists every heart rate of a run before its first step
/// count; in time order, the steps arrive beside the heart rates they explain and the engine can
/// tell exercise from stress as it goes.
pub fn sort_by_time(parsed: &mut ParsedSamples) {
    parsed.samples.sort_by_key(|s| s.occurred_at);
}

/// How far a reading from this source is trusted. A sensor worn on the body beats a phone's
/// estimate, which beats a value typed in by hand.
pub fn confidence_for_source(source: Option<&str>) -> f64 {
    let s = source.unwrap_or("").to_ascii_lowercase();
    if s.contains("watch") || s.contains("oura") || s.contains("whoop") || s.contains("ring") {
        0.95
    } else if s.contains("iphone") || s.contains("phone") {
        0.8
    } else if s.contains("manual") || s == "health" || s.contains("user entered") {
        0.5
    } else {
        0.7
    }
}
