//! Webhook signature primitives shared by the vendor modules.
//!
//! Each vendor signs `timestamp || raw body` with HMAC-SHA256 and its own encoding; the vendor
//! modules decide the encoding and window, this module does the keyed hash, the constant-time
//! comparison and the replay window, so that no vendor gets these subtly different.

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

/// How a vendor's timestamp header is to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    Milliseconds,
    /// Seconds or milliseconds, told apart by magnitude: Oura does not document which it sends.
    SecondsOrMilliseconds,
}

/// Parses a timestamp header and refuses it when it is more than `window_seconds` from `now`.
pub fn check_timestamp(
    header: &str,
    unit: TimestampUnit,
    now: DateTime<Utc>,
    window_seconds: i64,
) -> Result<(), SignatureError> {
    let raw: i64 = header
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    // 10^11 seconds is the year 5138; anything larger is milliseconds.
    let millis = match unit {
        TimestampUnit::Milliseconds => raw,
        TimestampUnit::SecondsOrMilliseconds if raw.unsigned_abs() >= 100_000_000_000 => raw,
        TimestampUnit::SecondsOrMilliseconds => raw.saturating_mul(1000),
    };
    let skew_ms = now
        .timestamp_millis()
        .saturating_sub(millis)
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
    fn window_accepts_seconds_and_milliseconds() {
        let now = at(1_700_000_000);
        let s = TimestampUnit::SecondsOrMilliseconds;
        assert!(check_timestamp("1700000000", s, now, 300).is_ok());
        assert!(check_timestamp("1700000000000", s, now, 300).is_ok());
        assert!(check_timestamp("1700000300", s, now, 300).is_ok());
        assert!(matches!(
            check_timestamp("1700000301", s, now, 300),
            Err(SignatureError::StaleTimestamp { .. })
        ));
        assert!(matches!(
            check_timestamp("1699999000000", s, now, 300),
            Err(SignatureError::StaleTimestamp { .. })
        ));
        assert_eq!(
            check_timestamp("soon", s, now, 300),
            Err(SignatureError::BadTimestamp)
        );
        assert!(check_timestamp("-9223372036854775808", s, now, 300).is_err());
    }

    #[test]
    fn milliseconds_only_does_not_guess() {
        let now = at(1_748_241_241);
        let ms = TimestampUnit::Milliseconds;
        assert!(check_timestamp("1748241241000", ms, now, 300).is_ok());
        // The same instant in seconds is 55 years off when read as milliseconds.
        assert!(check_timestamp("1748241241", ms, now, 300).is_err());
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
