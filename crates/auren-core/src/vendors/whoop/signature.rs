//! How WHOOP signs a delivery, and how we check it.
//!
//! `X-WHOOP-Signature` is the standard base64 HMAC-SHA256 of `X-WHOOP-Signature-Timestamp ||
//! raw body` under the app's client secret; the timestamp is in milliseconds.

use crate::signature::{
    check_window, hmac_sha256, parse_timestamp, verify_hmac_sha256, SignatureError,
};
use base64::Engine;
use chrono::{DateTime, Utc};

pub const SIGNATURE_HEADER: &str = "x-whoop-signature";
pub const TIMESTAMP_HEADER: &str = "x-whoop-signature-timestamp";
/// WHOOP documents no replay window; five minutes, as peers use.
pub const WINDOW_SECONDS: i64 = 300;

/// The `X-WHOOP-Signature` value for `body` sent at `timestamp` (the header's exact text).
pub fn sign(client_secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mac = hmac_sha256(client_secret, &[timestamp.as_bytes(), body]);
    base64::engine::general_purpose::STANDARD.encode(mac)
}

/// Both headers of a signed delivery, signature first, as WHOOP would send them.
pub fn signed_headers(
    client_secret: &[u8],
    timestamp: &str,
    body: &[u8],
) -> [(&'static str, String); 2] {
    [
        (SIGNATURE_HEADER, sign(client_secret, timestamp, body)),
        (TIMESTAMP_HEADER, timestamp.to_string()),
    ]
}

/// When WHOOP signed the delivery: its bodies carry no time of their own, so a verified
/// timestamp header is the best event time there is. None when the header is not a time.
pub fn signed_at(timestamp: &str) -> Option<DateTime<Utc>> {
    parse_timestamp(timestamp)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
}

/// Verifies a delivery. `signature` and `timestamp` are the header values, if present.
pub fn verify(
    client_secret: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(), SignatureError> {
    let signature = signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    let mac = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER, "base64"))?;
    // Milliseconds only: guessing the unit would accept a seconds value as a 1970 instant.
    check_window(parse_timestamp(timestamp)?, now, WINDOW_SECONDS)?;
    if verify_hmac_sha256(client_secret, &[timestamp.as_bytes(), body], &mac) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whoop_test_client_secret";
    const TS: &str = "1748241241000";
    const BODY: &str = r#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;
    const SIG: &str = "x+HHVf+U+8T0RnIs67xehaD4azpuZwkVqpPcVK8IQ3Y=";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_748_241_250, 0).unwrap()
    }

    #[test]
    fn sign_gives_the_documented_vector() {
        assert_eq!(sign(SECRET, TS, BODY.as_bytes()), SIG);
        let h = signed_headers(SECRET, TS, BODY.as_bytes());
        assert_eq!(h[0], (SIGNATURE_HEADER, SIG.to_string()));
        assert_eq!(h[1], (TIMESTAMP_HEADER, TS.to_string()));
    }

    #[test]
    fn vendor_vector() {
        assert_eq!(
            verify(SECRET, Some(SIG), Some(TS), BODY.as_bytes(), now()),
            Ok(())
        );
        assert_eq!(signed_at(TS).unwrap().timestamp_millis(), 1_748_241_241_000);
        assert_eq!(signed_at("later"), None);
    }

    #[test]
    fn refusals() {
        let b = BODY.as_bytes();
        assert_eq!(
            verify(b"other", Some(SIG), Some(TS), b, now()),
            Err(SignatureError::Mismatch)
        );
        let mut flipped = b.to_vec();
        flipped[3] ^= 1;
        assert_eq!(
            verify(SECRET, Some(SIG), Some(TS), &flipped, now()),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, None, Some(TS), b, now()),
            Err(SignatureError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            verify(SECRET, Some(SIG), None, b, now()),
            Err(SignatureError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert!(matches!(
            verify(SECRET, Some("%%%"), Some(TS), b, now()),
            Err(SignatureError::MalformedHeader(..))
        ));
        let later = DateTime::from_timestamp_millis(1_748_241_241_000 + 300_001).unwrap();
        assert!(matches!(
            verify(SECRET, Some(SIG), Some(TS), b, later),
            Err(SignatureError::StaleTimestamp { .. })
        ));
        // Hex of the right MAC is not the right encoding.
        let hex_sig = hex::encode(hmac_sha256(SECRET, &[TS.as_bytes(), b]));
        assert!(verify(SECRET, Some(&hex_sig), Some(TS), b, now()).is_err());
    }

    #[test]
    fn milliseconds_only_does_not_guess() {
        let now = DateTime::from_timestamp(1_748_241_241, 0).unwrap();
        let secs = "1748241241";
        let sig = sign(SECRET, secs, b"{}");
        // The same instant in seconds is 55 years off when read as milliseconds.
        assert!(matches!(
            verify(SECRET, Some(&sig), Some(secs), b"{}", now),
            Err(SignatureError::StaleTimestamp { .. })
        ));
    }

    proptest! {
        #[test]
        fn sign_then_verify_round_trips(
            secret in proptest::collection::vec(any::<u8>(), 0..64),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            skew_ms in -300_000i64..=300_000,
        ) {
            let now = DateTime::from_timestamp(1_748_241_241, 0).unwrap();
            let ts = (now.timestamp_millis() + skew_ms).to_string();
            let sig = sign(&secret, &ts, &body);
            prop_assert_eq!(verify(&secret, Some(&sig), Some(&ts), &body, now), Ok(()));
            let mut other = secret.clone();
            // Not a zero byte: HMAC pads short keys with zeros, so that would be the same key.
            other.push(1);
            prop_assert!(verify(&other, Some(&sig), Some(&ts), &body, now).is_err());
            let mut tampered = body.clone();
            tampered.push(b'x');
            prop_assert!(verify(&secret, Some(&sig), Some(&ts), &tampered, now).is_err());
        }
    }
}
