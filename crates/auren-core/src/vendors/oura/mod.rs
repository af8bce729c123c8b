//! Oura API v2 webhooks.
//!
//! Oura signs `x-oura-timestamp || body` with the app's client secret (`signature.rs` holds
//! `sign` and `verify` side by side). Deliveries carry ids only (`object_id`, `data_type`,
//! `event_type`, `user_id`); the data is fetched afterwards (`data.rs` reads it).

pub mod data;
mod signature;

pub use signature::{
    sign, signed_headers, verify, Verified, MAX_FALLBACK_BODY_BYTES, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, WINDOW_SECONDS,
};

use super::MalformedBody;
use chrono::{DateTime, Utc};
use serde::Deserialize;

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

    const BODY: &str = r#"{"event_type":"create","data_type":"sleep","object_id":"8f9a5221-639e-4a85-81cb-4065ef23f979","event_time":"2024-01-01T08:00:00+00:00","user_id":"oura-user-123"}"#;

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
