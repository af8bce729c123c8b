//! From vendor payloads to [`BiometricEvent`]s: binds each to a subject, gives it its
//! deterministic id and stamps when it was received. Pure: the caller passes the clock reading.

use crate::model::{
    BiometricEvent, EventId, Notification, Payload, Reading, Subject, Vendor, EVENT_SCHEMA_VERSION,
};
use crate::pseudonym::Pseudonymizer;
use crate::vendors::{oura, whoop, NormalisedSample};
use chrono::{DateTime, Utc};

fn subject(p: &Pseudonymizer, id: String) -> Subject {
    Subject {
        pseudonym: p.pseudonym(&id),
        id,
    }
}

/// An Oura delivery. Until the account link maps Oura's user id to ours, the subject is
/// `oura:<oura user id>`. The id covers everything Oura sends, so a retry of the same delivery
/// is recognised, while a later update of the same object is a new event.
pub fn oura_notification(
    d: &oura::Delivery,
    p: &Pseudonymizer,
    received_at: DateTime<Utc>,
) -> BiometricEvent {
    let event_time = d.event_time.map(|t| t.to_rfc3339()).unwrap_or_default();
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&[
            "oura",
            &d.user_id,
            &d.data_type,
            &d.object_id,
            &d.event_type,
            &event_time,
        ]),
        subject: subject(p, format!("oura:{}", d.user_id)),
        vendor: Vendor::Oura,
        device: None,
        // A notification's own time is when Oura says the change happened, else when it told us.
        occurred_at: d.event_time.unwrap_or(received_at),
        received_at,
        payload: Payload::Notification(Notification {
            data_type: d.data_type.clone(),
            event_type: d.event_type.clone(),
            object_id: d.object_id.clone(),
            trace_id: None,
        }),
    }
}

/// A WHOOP delivery. `trace_id` is WHOOP's idempotency key, so it alone makes the id.
/// `signed_at` is the verified signature timestamp: WHOOP bodies carry no time of their own.
pub fn whoop_notification(
    d: &whoop::Delivery,
    p: &Pseudonymizer,
    signed_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
) -> BiometricEvent {
    let (data_type, event_type) = d.split_type();
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&["whoop", &d.trace_id]),
        subject: subject(p, format!("whoop:{}", d.user_id)),
        vendor: Vendor::Whoop,
        device: None,
        occurred_at: signed_at,
        received_at,
        payload: Payload::Notification(Notification {
            data_type: data_type.to_string(),
            event_type: event_type.to_string(),
            object_id: d.id.to_id_string(),
            trace_id: Some(d.trace_id.clone()),
        }),
    }
}

/// A HealthKit or Health Auto Export sample for our user `user_id`.
pub fn sample_event(
    vendor: Vendor,
    user_id: &str,
    s: &NormalisedSample,
    p: &Pseudonymizer,
    received_at: DateTime<Utc>,
) -> BiometricEvent {
    let mut parts: Vec<&str> = vec![vendor.as_str(), user_id];
    parts.extend(s.identity.iter().map(String::as_str));
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&parts),
        subject: subject(p, user_id.to_string()),
        vendor,
        device: s.device.clone(),
        occurred_at: s.occurred_at,
        received_at,
        payload: Payload::Reading(Reading {
            metric: s.metric,
            value: s.value,
            unit: s.metric.unit(),
            confidence: s.confidence,
            detail: s.detail.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Metric;

    fn p() -> Pseudonymizer {
        Pseudonymizer::new(b"test-pseudonym-key-0123").unwrap()
    }

    #[test]
    fn whoop_redelivery_has_the_same_id() {
        let body = br#"{"user_id":10129,"id":"ecfc6a15-4661-442f-a9a4-f160dd7afae8","type":"sleep.updated","trace_id":"e369c784"}"#;
        let d = whoop::parse_delivery(body).unwrap();
        let t1 = DateTime::from_timestamp(1, 0).unwrap();
        let t2 = DateTime::from_timestamp(99, 0).unwrap();
        let a = whoop_notification(&d, &p(), t1, t1);
        let b = whoop_notification(&d, &p(), t2, t2);
        assert_eq!(a.id, b.id);
        assert_eq!(a.subject.id, "whoop:10129");
        assert!(!a.subject.pseudonym.contains("10129"));
    }

    #[test]
    fn sample_ids_depend_on_user_and_content() {
        let s = NormalisedSample {
            metric: Metric::HeartRate,
            value: 70.0,
            occurred_at: DateTime::from_timestamp(1000, 0).unwrap(),
            detail: None,
            device: None,
            confidence: 0.9,
            identity: vec!["heartRate".into(), "x".into()],
        };
        let now = DateTime::from_timestamp(2000, 0).unwrap();
        let a = sample_event(Vendor::Healthkit, "u1", &s, &p(), now);
        let b = sample_event(Vendor::Healthkit, "u2", &s, &p(), now);
        let c = sample_event(Vendor::HealthAutoExport, "u1", &s, &p(), now);
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, c.id);
        assert_eq!(
            a.id,
            sample_event(Vendor::Healthkit, "u1", &s, &p(), now).id
        );
        assert_eq!(a.reading().unwrap().unit.ucum(), "/min");
    }
}
