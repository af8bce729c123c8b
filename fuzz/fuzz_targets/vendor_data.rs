#![no_main]
//! Fetched vendor documents: Oura's single documents and pages of every type, WHOOP's sleeps,
//! workouts and recoveries. The first byte picks the type, the rest is the body. Whatever the
//! body, parsing must not panic, and every reading it gives must be plausible and serialisable.

#[path = "common.rs"]
mod common;

use auren_core::ingest;
use auren_core::model::Vendor;
use auren_core::vendors::{oura, whoop, NormalisedSample};
use libfuzzer_sys::fuzz_target;

const OURA_TYPES: &[&str] = &[
    "sleep",
    "daily_readiness",
    "daily_activity",
    "daily_spo2",
    "daily_stress",
    "daily_sleep",
    "workout",
    "vo2_max",
    "heartrate",
    "tag",
];

fn check(vendor: Vendor, samples: &[NormalisedSample]) {
    let keys = common::pseudonyms();
    for s in samples {
        let (lo, hi) = s.metric.plausible_range();
        assert!(
            s.value.is_finite() && s.value >= lo && s.value <= hi,
            "{s:?}"
        );
        assert!(!s.identity.is_empty());
        let e = ingest::sample_event(vendor, "fuzz-user", s, &keys, common::now());
        serde_json::to_vec(&e).unwrap();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let n = OURA_TYPES.len();
    let i = usize::from(pick) % (2 * n + 3);
    if i < n {
        if let Ok(s) = oura::data::document_samples(OURA_TYPES[i], body) {
            check(Vendor::Oura, &s);
        }
    } else if i < 2 * n {
        if let Ok((s, _)) = oura::data::page_samples(OURA_TYPES[i - n], body) {
            check(Vendor::Oura, &s);
        }
    } else if i == 2 * n {
        if let Ok(sleep) = whoop::data::parse::<whoop::data::Sleep>(body) {
            check(Vendor::Whoop, &whoop::data::sleep_samples(&sleep));
        }
    } else if i == 2 * n + 1 {
        if let Ok(w) = whoop::data::parse::<whoop::data::Workout>(body) {
            check(Vendor::Whoop, &whoop::data::workout_samples(&w));
        }
    } else if let Ok(r) = whoop::data::parse::<whoop::data::Recovery>(body) {
        let sleep = whoop::data::Sleep {
            id: r.sleep_id.clone(),
            cycle_id: r.cycle_id,
            start: common::now(),
            end: common::now(),
            nap: false,
            updated_at: None,
            score_state: None,
            score: None,
        };
        check(Vendor::Whoop, &whoop::data::recovery_samples(&r, &sleep));
    }
});
