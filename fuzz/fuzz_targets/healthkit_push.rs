#![no_main]
#[path = "common.rs"]
mod common;

use auren_core::ingest::IngestLimits;
use auren_core::model::Vendor;
use auren_core::vendors::healthkit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = IngestLimits::default();
    if let Ok(pushes) = healthkit::parse(data, &limits, common::now()) {
        for p in &pushes {
            common::check(&p.parsed, &limits, Vendor::Healthkit);
        }
    }
});
