#![no_main]
#[path = "common.rs"]
mod common;

use auren_core::ingest::IngestLimits;
use auren_core::model::Vendor;
use auren_core::vendors::health_auto_export;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = IngestLimits::default();
    if let Ok(p) = health_auto_export::parse(data, &limits, common::now()) {
        common::check(&p, &limits, Vendor::HealthAutoExport);
    }
});
