//! Webhook signature primitives shared by the vendor modules.
//!
//! Each vendor signs `timestamp || raw body` with HMAC-SHA256 in its own encoding and timestamp
//! unit; those live beside each vendor's parser (`vendors::oura`, `vendors::whoop`), each with
//! its `sign` next to its `verify`. This module keeps only what they must not get subtly
//! different: the keyed hash, the constant-time comparison and the replay window.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a signed request was refused. Every variant maps to HTTP 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header {0} is not valid {1}")]
    MalformedHeader(&'static str, &'static str),
    #[error("timestamp header is not a number")]
    BadTimestamp,
    #[error(
        "timestamp is {skew_seconds} s away from now, more than the {window_seconds} s allowed"
    )]
    StaleTimestamp {
        skew_seconds: i64,
        window_seconds: i64,
    },
    #[error("signature does not match")]
    Mismatch,
}

impl SignatureError {
    /// Short machine-readable reason, also a bounded metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::MissingHeader(_) => "missing_signature_header",
            SignatureError::MalformedHeader(..) => "malformed_signature_header",
            SignatureError::BadTimestamp => "bad_timestamp",
            SignatureError::StaleTimestamp { .. } => "stale_timestamp",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time check that `expected_mac` is the HMAC of `parts` under `key`.
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], expected_mac: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected_mac).is_ok()
}

/// Compares two secrets in time independent of where they differ (MACs of both, compared with
/// the MAC library's constant-time check).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let probe = hmac_sha256(b"auren-compare", &[a]);
    verify_hmac_sha256(b"auren-compare", &[b], &probe)
}

/// Parses a decimal timestamp header. Vendors differ in the unit, so the caller converts.
pub fn parse_timestamp(header: &str) -> Result<i64, SignatureError> {
    header
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)
}

/// Refuses a signature timestamp more than `window_seconds` from `now`: a captured request
/// replayed later is refused even though its MAC is right.
pub fn check_window(
    signed_at_millis: i64,
    now: DateTime<Utc>,
    window_seconds: i64,
) -> Result<(), SignatureError> {
    let skew_ms = now
        .timestamp_millis()
        .saturating_sub(signed_at_millis)
        .saturating_abs();
    if skew_ms > window_seconds.saturating_mul(1000) {
        return Err(SignatureError::StaleTimestamp {
            skew_seconds: skew_ms / 1000,
            window_seconds,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn window_is_inclusive_and_symmetric() {
        let now = at(1_700_000_000);
        assert!(check_window(1_700_000_000_000, now, 300).is_ok());
        assert!(check_window(1_700_000_300_000, now, 300).is_ok());
        assert!(check_window(1_699_999_700_000, now, 300).is_ok());
        assert_eq!(
            check_window(1_700_000_300_001, now, 300),
            Err(SignatureError::StaleTimestamp {
                skew_seconds: 300,
                window_seconds: 300
            })
        );
        assert!(check_window(1_699_999_699_999, now, 300).is_err());
        assert!(check_window(i64::MIN, now, 300).is_err());
        assert!(check_window(i64::MAX, now, 300).is_err());
        assert!(check_window(0, now, i64::MAX).is_ok());
    }

    #[test]
    fn timestamps_are_decimal_integers() {
        assert_eq!(parse_timestamp(" 1700000000 "), Ok(1_700_000_000));
        assert_eq!(parse_timestamp("-1"), Ok(-1));
        for bad in ["soon", "", "1.5", "0x10", "99999999999999999999"] {
            assert_eq!(
                parse_timestamp(bad),
                Err(SignatureError::BadTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn verify_is_exact() {
        let mac = hmac_sha256(b"k", &[b"12", b"body"]);
        assert!(verify_hmac_sha256(b"k", &[b"1", b"2body"], &mac));
        assert!(!verify_hmac_sha256(b"k", &[b"12", b"bodY"], &mac));
        assert!(!verify_hmac_sha256(b"k2", &[b"12", b"body"], &mac));
        assert!(!verify_hmac_sha256(b"k", &[b"12", b"body"], &mac[..31]));
    }
}
