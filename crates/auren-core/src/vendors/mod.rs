//! One module per vendor: how it signs, what it sends, and how that becomes [`crate::model`]
//! events. Nothing here does IO; the HTTP layer hands in headers, raw bytes and the current time.

pub mod health_auto_export;
pub mod healthkit;
pub mod oura;
pub mod whoop;

use crate::ingest::IngestLimits;
use crate::model::{Metric, ReadingDetail};
use chrono::{DateTime, Utc};
use std::collections::{BTreeMap, BTreeSet};

/// Longest piece of client text (a type name, a unit, a field value in an error) that an answer
/// echoes: a refusal must not grow with the input it refuses.
pub const MAX_ECHO_CHARS: usize = 64;

/// Longest parser message passed on: serde quotes the offending value, which may be a megabyte.
const MAX_MESSAGE_CHARS: usize = 200;

/// Cuts client-supplied text to `max` characters and marks the cut, so that no answer, log line
/// or stored field grows with the input.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((end, _)) => format!("{}…", &s[..end]),
    }
}

/// Why a body could not be read at all (HTTP 400).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedBody(pub String);

impl MalformedBody {
    pub fn from_json(e: serde_json::Error) -> Self {
        // serde's message names the field and the position, and quotes the value it could not
        // take (`invalid type: string "..."`), which can be as long as the body: keep the start
        // and the position only.
        let msg = e.to_string();
        let msg = if msg.chars().count() > MAX_MESSAGE_CHARS {
            format!(
                "{} at line {} column {}",
                clip(&msg, MAX_MESSAGE_CHARS),
                e.line(),
                e.column()
            )
        } else {
            msg
        };
        MalformedBody(format!("body is not the expected JSON: {msg}"))
    }
}

/// Why a multi-sample push was refused as a whole. Sizes are checked before any sample is read,
/// so an oversized push costs one JSON parse, never per-sample work or a per-sample answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Malformed(#[from] MalformedBody),
    #[error("a batch holds at most {limit} pushes, this one has {found}")]
    TooManyPushes { limit: usize, found: usize },
    #[error("a request holds at most {limit} samples, this one has {found}")]
    TooManySamples { limit: usize, found: usize },
    #[error("a metric holds at most {limit} data points, {metric} has {found}")]
    TooManyPoints {
        metric: String,
        limit: usize,
        found: usize,
    },
}

impl PushError {
    /// Short machine-readable reason, also a bounded metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            PushError::Malformed(_) => "malformed_body",
            PushError::TooManyPushes { .. } => "too_many_pushes",
            PushError::TooManySamples { .. } => "too_many_samples",
            PushError::TooManyPoints { .. } => "too_many_points",
        }
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
    /// The parts that identify this sample for idempotency, beyond the user. Each part is in a
    /// canonical form (metric name, UTC instant, [`canonical_number`]), so one reading spelled
    /// two ways gets one event id.
    pub identity: Vec<String>,
}

/// Why one sample was refused (HTTP 422 when no sample of the request was valid).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SampleRejection {
    /// Position of the sample in the request, e.g. `pushes[0].samples[3]` or `metrics[2].data[7]`.
    pub at: String,
    /// The vendor's type name, when it could be read, cut to [`MAX_ECHO_CHARS`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_type: Option<String>,
    /// Machine-readable reason, also a bounded metric label.
    pub reason: &'static str,
    pub detail: String,
}

/// The refused samples of a request: the first few in full, and how many there were in all.
/// A push of half a million bad samples is answered with a list as short as a push of one
/// hundred, and no refusal beyond the listed ones is even formatted.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejections {
    /// The first refusals, in request order, at most the limit given at creation.
    pub listed: Vec<SampleRejection>,
    /// Every refusal, listed or not.
    pub total: usize,
    /// Refusals per reason, listed or not: reasons are a closed set, so this stays small and
    /// metrics stay exact when the list is cut.
    pub by_reason: BTreeMap<&'static str, usize>,
    #[serde(skip)]
    limit: usize,
}

impl Default for Rejections {
    fn default() -> Self {
        Rejections::new(crate::ingest::IngestLimits::default().max_rejections_listed)
    }
}

impl Rejections {
    pub fn new(limit: usize) -> Self {
        Rejections {
            listed: Vec::new(),
            total: 0,
            by_reason: BTreeMap::new(),
            limit,
        }
    }

    /// Counts a refusal; `describe` runs only when the refusal will be listed.
    pub fn push_with(&mut self, reason: &'static str, describe: impl FnOnce() -> SampleRejection) {
        self.total += 1;
        *self.by_reason.entry(reason).or_default() += 1;
        if self.listed.len() < self.limit {
            self.listed.push(describe());
        }
    }

    pub fn push(&mut self, r: SampleRejection) {
        self.push_with(r.reason, || r);
    }

    /// Adds another request part's refusals, keeping this list's limit.
    pub fn merge(&mut self, other: Rejections) {
        self.total += other.total;
        for (reason, n) in other.by_reason {
            *self.by_reason.entry(reason).or_default() += n;
        }
        let room = self.limit.saturating_sub(self.listed.len());
        self.listed.extend(other.listed.into_iter().take(room));
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Type names we do not track, skipped without error: each distinct name once (cut to
/// [`MAX_ECHO_CHARS`]), at most a limit of them, and how many samples were skipped in all.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Unsupported {
    pub names: BTreeSet<String>,
    pub total: usize,
    #[serde(skip)]
    limit: usize,
}

impl Default for Unsupported {
    fn default() -> Self {
        Unsupported::new(crate::ingest::IngestLimits::default().max_unsupported_listed)
    }
}

impl Unsupported {
    pub fn new(limit: usize) -> Self {
        Unsupported {
            names: BTreeSet::new(),
            total: 0,
            limit,
        }
    }

    pub fn push(&mut self, name: &str) {
        self.total += 1;
        if self.names.len() < self.limit {
            self.names.insert(clip(name, MAX_ECHO_CHARS));
        }
    }

    pub fn merge(&mut self, other: Unsupported) {
        self.total += other.total;
        for name in other.names {
            if self.names.len() >= self.limit {
                break;
            }
            self.names.insert(name);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// Outcome of reading a multi-sample push: what was valid, what was refused, what was skipped
/// because we do not track that type.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ParsedSamples {
    pub samples: Vec<NormalisedSample>,
    pub rejected: Rejections,
    pub unsupported: Unsupported,
}

impl ParsedSamples {
    pub(crate) fn with_limits(limits: &IngestLimits) -> Self {
        ParsedSamples {
            samples: Vec::new(),
            rejected: Rejections::new(limits.max_rejections_listed),
            unsupported: Unsupported::new(limits.max_unsupported_listed),
        }
    }
}

/// Why one sample is refused: a reason (a metric label) and a detail for the answer.
pub(crate) type Rejection = (&'static str, String);

/// One spelling per number: `71`, `71.0` and `7.1e1` are one reading, and so are `0` and `-0`.
/// Rounded to a millionth of the canonical unit, so a unit conversion's last-bit noise does not
/// split a reading in two either.
pub fn canonical_number(v: f64) -> String {
    let r = (v * 1e6).round() / 1e6;
    // Adding zero turns -0.0 into 0.0 and leaves every other value alone.
    format!("{}", r + 0.0)
}

/// Refuses a sample time the limits do not allow, as a per-sample rejection.
pub(crate) fn check_time(
    limits: &IngestLimits,
    now: DateTime<Utc>,
    field: &str,
    at: DateTime<Utc>,
) -> Result<(), Rejection> {
    limits
        .check_time(at, now)
        .map_err(|e| (e.reason(), format!("{field}: {e}")))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_on_characters_and_marks_the_cut() {
        assert_eq!(clip("short", 64), "short");
        assert_eq!(clip("abcdef", 3), "abc…");
        assert_eq!(clip("ééééé", 2), "éé…");
        assert_eq!(clip("", 0), "");
        assert_eq!(clip("a", 0), "…");
    }

    #[test]
    fn one_spelling_per_number() {
        assert_eq!(canonical_number(71.0), "71");
        assert_eq!(canonical_number(-0.0), "0");
        assert_eq!(canonical_number(0.97 * 100.0), "97");
        assert_eq!(canonical_number((98.6 - 32.0) * 5.0 / 9.0), "37");
        assert_eq!(canonical_number(71.5), "71.5");
        assert_eq!(canonical_number(-0.4), "-0.4");
        assert_ne!(canonical_number(71.000_01), canonical_number(71.0));
    }

    fn refusal(i: usize) -> SampleRejection {
        SampleRejection {
            at: format!("samples[{i}]"),
            sample_type: None,
            reason: if i.is_multiple_of(2) {
                "out_of_range"
            } else {
                "unknown_unit"
            },
            detail: String::new(),
        }
    }

    #[test]
    fn rejections_list_the_first_and_count_all() {
        let mut a = Rejections::new(3);
        let mut described = 0;
        for i in 0..10 {
            a.push_with(refusal(i).reason, || {
                described += 1;
                refusal(i)
            });
        }
        assert_eq!(described, 3);
        assert_eq!((a.listed.len(), a.total), (3, 10));
        assert_eq!(a.by_reason["out_of_range"], 5);
        let mut b = Rejections::new(3);
        b.push(refusal(11));
        b.merge(a.clone());
        assert_eq!(b.listed[0].at, "samples[11]");
        assert_eq!((b.listed.len(), b.total), (3, 11));
        assert_eq!(b.by_reason["unknown_unit"], 6);
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["total"], 11);
        assert!(json.get("limit").is_none());
    }

    #[test]
    fn unsupported_names_are_distinct_cut_and_few() {
        let mut u = Unsupported::new(2);
        for name in ["b", "a", "b", &"x".repeat(1000), "c"] {
            u.push(name);
        }
        assert_eq!(u.total, 5);
        assert_eq!(u.names.len(), 2);
        let mut v = Unsupported::new(3);
        v.push(&"y".repeat(100));
        v.merge(u);
        assert_eq!(v.total, 6);
        assert!(v
            .names
            .iter()
            .all(|n| n.chars().count() <= MAX_ECHO_CHARS + 1));
        assert_eq!(v.names.len(), 3);
    }
}
