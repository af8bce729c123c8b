#![no_main]
#[path = "common.rs"]
mod common;

use auren_core::{ingest, vendors::oura};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = oura::parse_delivery(data) {
        let e = ingest::oura_notification(&d, &common::pseudonyms(), common::now());
        serde_json::to_vec(&e).unwrap();
    }
});
