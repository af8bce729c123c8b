//! WHOOP API v2 webhooks.
//!
//! WHOOP signs `X-WHOOP-Signature-Timestamp || raw body` with the app's client secret
//! (`signature.rs` holds `sign` and `verify` side by side). Bodies carry ids only.
//! Deliveries repeat, so `trace_id` is the idempotency key; creates arrive as `*.updated`.

pub mod data;
mod signature;

pub use signature::{
    sign, signed_at, signed_headers, verify, SIGNATURE_HEADER, TIMESTAMP_HEADER, WINDOW_SECONDS,
};

use super::MalformedBody;
use serde::Deserialize;

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

    const BODY: &str = r#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784-5100-49e8-8098-75d35c47b31b"}"#;

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
