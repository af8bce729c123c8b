//! Oura API v2 webhooks.
//!
//! Oura signs `x-oura-timestamp || body` with the app's client secret and sends the MAC as
//! upper-case hex in `x-oura-signature`. Its own Node sample HMACs a compact re-serialisation of
//! the body rather than the raw bytes; we verify the raw bytes first and only then try the compact
//! form, so a caller can count how often the fallback is what matched.
//! Deliveries carry ids only (`object_id`, `data_type`, `event_type`, `user_id`); the data is
//! fetched afterwards.

use super::MalformedBody;
use crate::signature::{check_timestamp, verify_hmac_sha256, SignatureError, TimestampUnit};
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub const SIGNATURE_HEADER: &str = "x-oura-signature";
pub const TIMESTAMP_HEADER: &str = "x-oura-timestamp";
/// Not documented by Oura; five minutes either way, like WHOOP.
pub const WINDOW_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    RawBody,
    /// Matched only over a compact re-serialisation of the body.
    CompactFallback,
}

/// Verifies a delivery. `signature` and `timestamp` are the header values, if present.
pub fn verify(
    client_secret: &[u8],
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Verified, SignatureError> {
    let signature = signature.ok_or(SignatureError::MissingHeader(SIGNATURE_HEADER))?;
    let timestamp = timestamp.ok_or(SignatureError::MissingHeader(TIMESTAMP_HEADER))?;
    // hex::decode accepts either case, which is the case-insensitive comparison Oura needs.
    let mac = hex::decode(signature.trim())
        .map_err(|_| SignatureError::MalformedHeader(SIGNATURE_HEADER, "hex"))?;
    check_timestamp(
        timestamp,
        TimestampUnit::SecondsOrMilliseconds,
        now,
        WINDOW_SECONDS,
    )?;
    if verify_hmac_sha256(client_secret, &[timestamp.as_bytes(), body], &mac) {
        return Ok(Verified::RawBody);
    }
    if let Some(compact) = compact_json(body) {
        if compact != body
            && verify_hmac_sha256(client_secret, &[timestamp.as_bytes(), &compact], &mac)
        {
            return Ok(Verified::CompactFallback);
        }
    }
    Err(SignatureError::Mismatch)
}

fn compact_json(body: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_vec(&v).ok()
}

/// Outcome of the subscription handshake (`GET ?verification_token=..&challenge=..`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handshake {
    /// Answer 200 with `{"challenge": <this>}`.
    Echo(String),
    /// 400: no challenge to echo.
    MissingChallenge,
    /// 401: the token is not ours.
    WrongToken,
}

pub fn handshake(expected_token: &str, token: Option<&str>, challenge: Option<&str>) -> Handshake {
    let same = token.is_some_and(|t| {
        crate::signature::constant_time_eq(t.as_bytes(), expected_token.as_bytes())
    });
    if !same {
        return Handshake::WrongToken;
    }
    match challenge {
        Some(c) if !c.is_empty() => Handshake::Echo(c.to_string()),
        _ => Handshake::MissingChallenge,
    }
}

/// A delivery body. `event_time` is the documented field; some senders use `timestamp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivery {
    pub event_type: String,
    pub data_type: String,
    pub object_id: String,
    pub user_id: String,
    #[serde(alias = "timestamp")]
    pub event_time: Option<DateTime<Utc>>,
}

pub fn parse_delivery(body: &[u8]) -> Result<Delivery, MalformedBody> {
    let d: Delivery = serde_json::from_slice(body).map_err(MalformedBody::from_json)?;
    for (name, v) in [
        ("event_type", &d.event_type),
        ("data_type", &d.data_type),
        ("object_id", &d.object_id),
        ("user_id", &d.user_id),
    ] {
        if v.trim().is_empty() {
            return Err(MalformedBody(format!("field {name} is empty")));
        }
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"oura_test_client_secret";
    const TS: &str = "1700000000";
    const BODY: &str = r#"{"event_type":"create","data_type":"sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979","event_time":"2024-01-01T08:00:00+00:00","user_id":"oura-user-123"}"#;
    const SIG: &str = "BF8AE2CFE3524DD169B11B9EFA98252BFC788DFA1941D9D9F0A0BC3170B2C935";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_010, 0).unwrap()
    }

    #[test]
    fn vendor_vector_matches_in_either_case() {
        let v = verify(SECRET, Some(SIG), Some(TS), BODY.as_bytes(), now());
        assert_eq!(v, Ok(Verified::RawBody));
        let lower = SIG.to_ascii_lowercase();
        let v = verify(SECRET, Some(&lower), Some(TS), BODY.as_bytes(), now());
        assert_eq!(v, Ok(Verified::RawBody));
    }

    #[test]
    fn spaced_reserialisation_is_a_different_mac_but_compact_fallback_accepts_it() {
        let spaced = BODY.replace("\",\"", "\", \"").replace("\":\"", "\": \"");
        assert_ne!(spaced, BODY);
        let v = verify(SECRET, Some(SIG), Some(TS), spaced.as_bytes(), now());
        assert_eq!(v, Ok(Verified::CompactFallback));
    }

    #[test]
    fn refusals() {
        let b = BODY.as_bytes();
        assert_eq!(
            verify(b"wrong", Some(SIG), Some(TS), b, now()),
            Err(SignatureError::Mismatch)
        );
        let mut flipped = b.to_vec();
        flipped[10] ^= 1;
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
            verify(SECRET, Some("zz"), Some(TS), b, now()),
            Err(SignatureError::MalformedHeader(..))
        ));
        let late = DateTime::from_timestamp(1_700_000_301, 0).unwrap();
        assert!(matches!(
            verify(SECRET, Some(SIG), Some(TS), b, late),
            Err(SignatureError::StaleTimestamp { .. })
        ));
    }

    #[test]
    fn handshake_cases() {
        assert_eq!(
            handshake("tok", Some("tok"), Some("abc")),
            Handshake::Echo("abc".into())
        );
        assert_eq!(
            handshake("tok", Some("nope"), Some("abc")),
            Handshake::WrongToken
        );
        assert_eq!(handshake("tok", None, Some("abc")), Handshake::WrongToken);
        assert_eq!(
            handshake("tok", Some("tok"), None),
            Handshake::MissingChallenge
        );
        assert_eq!(
            handshake("tok", Some("tok"), Some("")),
            Handshake::MissingChallenge
        );
    }

    #[test]
    fn parses_documented_body_and_timestamp_alias() {
        let d = parse_delivery(BODY.as_bytes()).unwrap();
        assert_eq!(d.data_type, "sleep");
        assert_eq!(d.event_time.unwrap().timestamp(), 1_704_096_000);
        let alias = r#"{"event_type":"update","data_type":"daily_cycle_phases","object_id":"x","user_id":"u","timestamp":"2024-01-01T08:00:00Z"}"#;
        assert!(parse_delivery(alias.as_bytes())
            .unwrap()
            .event_time
            .is_some());
        assert!(parse_delivery(b"{}").is_err());
        assert!(parse_delivery(b"not json").is_err());
        let empty = r#"{"event_type":"","data_type":"sleep","object_id":"x","user_id":"u"}"#;
        assert!(parse_delivery(empty.as_bytes()).is_err());
    }
}
