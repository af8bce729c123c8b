#![no_main]
#[path = "common.rs"]
mod common;

use auren_core::{ingest, vendors::whoop};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = whoop::parse_delivery(data) {
        let e = ingest::whoop_notification(&d, &common::pseudonyms(), common::now(), common::now());
        serde_json::to_vec(&e).unwrap();
    }
});
