//! WHOOP API v2 webhooks.
//!
//! WHOOP signs `X-WHOOP-Signature-Timestamp || raw body` (timestamp in milliseconds) with the
//! app's client secret and sends standard base64 in `X-WHOOP-Signature`. Bodies carry ids only.
//! Deliveries repeat, so `trace_id` is the idempotency key; creates arrive as `*.updated`.

use super::MalformedBody;
use crate::signature::{check_timestamp, verify_hmac_sha256, SignatureError, TimestampUnit};
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;

pub const SIGNATURE_HEADER: &str = "x-whoop-signature";
pub const TIMESTAMP_HEADER: &str = "x-whoop-signature-timestamp";
pub const WINDOW_SECONDS: i64 = 300;

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
    check_timestamp(timestamp, TimestampUnit::Milliseconds, now, WINDOW_SECONDS)?;
    if verify_hmac_sha256(client_secret, &[timestamp.as_bytes(), body], &mac) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Object ids are UUID strings in v2 and integers in the legacy v1 model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ObjectId {
    Uuid(String),
    Legacy(i64),
}

impl ObjectId {
    pub fn to_id_string(&self) -> String {
        match self {
            ObjectId::Uuid(s) => s.clone(),
            ObjectId::Legacy(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Delivery {
    pub user_id: i64,
    pub id: ObjectId,
    #[serde(rename = "type")]
    pub event_type: String,
    pub trace_id: String,
}

impl Delivery {
    /// `sleep.updated` -> (`sleep`, `updated`). An unknown type is kept as it is.
    pub fn split_type(&self) -> (&str, &str) {
        self.event_type
            .split_once('.')
            .unwrap_or((self.event_type.as_str(), ""))
    }
}

pub fn parse_delivery(body: &[u8]) -> Result<Delivery, MalformedBody> {
    let d: Delivery = serde_json::from_slice(body).map_err(MalformedBody::from_json)?;
    if d.trace_id.trim().is_empty() {
        return Err(MalformedBody("field trace_id is empty".into()));
    }
    if d.event_type.trim().is_empty() {
        return Err(MalformedBody("field type is empty".into()));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whoop_test_client_secret";
    const TS: &str = "1748241241000";
    const BODY: &str = r#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;
    const SIG: &str = "x+HHVf+U+8T0RnIs67xehaD4azpuZwkVqpPcVK8IQ3Y=";

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_748_241_250, 0).unwrap()
    }

    #[test]
    fn vendor_vector() {
        assert_eq!(
            verify(SECRET, Some(SIG), Some(TS), BODY.as_bytes(), now()),
            Ok(())
        );
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
        let hex_sig = hex::encode(crate::signature::hmac_sha256(SECRET, &[TS.as_bytes(), b]));
        assert!(verify(SECRET, Some(&hex_sig), Some(TS), b, now()).is_err());
    }

    #[test]
    fn parses_v2_and_v1_bodies() {
        let d = parse_delivery(BODY.as_bytes()).unwrap();
        assert_eq!(d.split_type(), ("sleep", "updated"));
        assert_eq!(d.id.to_id_string(), "ecfc6a15-4661-442f-a9a4-f160dd7afae8");
        let v1 = r#"{"user_id":1,"id":42,"type":"recovery.deleted","trace_id":"t"}"#;
        assert_eq!(
            parse_delivery(v1.as_bytes()).unwrap().id.to_id_string(),
            "42"
        );
        assert!(parse_delivery(br#"{"user_id":"x","id":1,"type":"a","trace_id":"t"}"#).is_err());
        assert!(parse_delivery(br#"{"user_id":1,"id":1,"type":"a","trace_id":""}"#).is_err());
    }
}
