#![no_main]
//! Arbitrary headers, key and body through the WHOOP check, and sign-then-verify round trips.

use arbitrary::Arbitrary;
use auren_core::vendors::whoop;
use chrono::DateTime;
use libfuzzer_sys::fuzz_target;

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    secret: &'a [u8],
    signature: Option<&'a str>,
    timestamp: Option<&'a str>,
    body: &'a [u8],
    now_millis: i64,
}

fuzz_target!(|i: Input<'_>| {
    let Some(now) = DateTime::from_timestamp_millis(i.now_millis) else {
        return;
    };
    let _ = whoop::verify(i.secret, i.signature, i.timestamp, i.body, now);
    if let Some(ts) = i.timestamp {
        let _ = whoop::signed_at(ts);
    }
    let ts = now.timestamp_millis().to_string();
    let sig = whoop::sign(i.secret, &ts, i.body);
    assert_eq!(
        whoop::verify(i.secret, Some(&sig), Some(&ts), i.body, now),
        Ok(())
    );
});
