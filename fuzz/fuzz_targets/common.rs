#![allow(dead_code)]
// Shared by the targets through `#[path]`: the fixed clock, the key and the invariants every
// accepted sample must meet, whatever the input.

use auren_core::ingest::{self, IngestLimits};
use auren_core::model::Vendor;
use auren_core::pseudonym::Pseudonymizer;
use auren_core::vendors::ParsedSamples;
use chrono::{DateTime, Utc};

pub fn now() -> DateTime<Utc> {
    // 2025-01-28T00:00:00Z: the seeds' sample times fall just before it.
    DateTime::from_timestamp(1_738_022_400, 0).unwrap()
}

pub fn pseudonyms() -> Pseudonymizer {
    Pseudonymizer::new(b"fuzz-pseudonym-key-0123456789").unwrap()
}

pub fn check(p: &ParsedSamples, limits: &IngestLimits, vendor: Vendor) {
    assert!(p.rejected.listed.len() <= limits.max_rejections_listed);
    assert!(p.rejected.listed.len() <= p.rejected.total);
    assert_eq!(
        p.rejected.by_reason.values().sum::<usize>(),
        p.rejected.total
    );
    assert!(p.unsupported.names.len() <= limits.max_unsupported_listed);
    for r in &p.rejected.listed {
        assert!(r.detail.chars().count() <= 200, "{}", r.detail);
    }
    let keys = pseudonyms();
    for s in &p.samples {
        let (lo, hi) = s.metric.plausible_range();
        assert!(
            s.value.is_finite() && s.value >= lo && s.value <= hi,
            "{s:?}"
        );
        assert!(limits.check_time(s.occurred_at, now()).is_ok(), "{s:?}");
        let e = ingest::sample_event(vendor, "fuzz-user", s, &keys, now());
        serde_json::to_vec(&e).unwrap();
    }
}
