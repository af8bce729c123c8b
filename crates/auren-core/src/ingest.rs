//! From vendor payloads to [`BiometricEvent`]s: binds each to a subject, gives it its
//! deterministic id and stamps when it was received. Pure: the caller passes the clock reading
//! and the [`IngestLimits`] that bound what one request may make us do.

use crate::model::{
    Backfill, BiometricEvent, Deletion, EventId, Notification, Payload, Reading, Subject, Vendor,
    EVENT_SCHEMA_VERSION,
};
use crate::pseudonym::Pseudonymizer;
use crate::vendors::{oura, whoop, NormalisedSample};
use chrono::{DateTime, TimeDelta, Utc};

/// What one request may contain and which sample times are believable. The parsers take these
/// with the current time, so the rules are tested without a clock and each deployment can set
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestLimits {
    /// How far past the server's clock a sample may be dated. A reading cannot come from the
    /// future; a few minutes allow for a phone clock that runs fast. Without this bound one
    /// sample dated 9999 would move a user's clock, which never goes back, past all real data.
    pub max_future_skew: TimeDelta,
    /// How far back a sample may be dated. Long enough for a phone's first backfill of years
    /// of HealthKit history, short enough that a zeroed or wrong-century date (0000, 1900) is
    /// refused rather than stored.
    pub max_age: TimeDelta,
    /// Samples in one request, over all pushes of a HealthKit batch or all metrics of a Health
    /// Auto Export body. Parsing, normalising and answering grow with this, not with the body.
    pub max_samples_per_push: usize,
    /// Data points in one Health Auto Export metric.
    pub max_points_per_metric: usize,
    /// Refused samples listed in full in an answer; the rest are only counted.
    pub max_rejections_listed: usize,
    /// Distinct unsupported type names listed in an answer; the rest are only counted.
    pub max_unsupported_listed: usize,
}

impl Default for IngestLimits {
    /// 5 minutes ahead (the signature replay window), 5 years back; 20,000 samples per push,
    /// about what the default 1 MiB body holds at the smallest real sample size; 10,000 points per
    /// metric, a week of minute-level heart rate; 100 refusals and 20 unsupported names listed.
    fn default() -> Self {
        IngestLimits {
            max_future_skew: TimeDelta::minutes(5),
            max_age: TimeDelta::days(5 * 365 + 1),
            max_samples_per_push: 20_000,
            max_points_per_metric: 10_000,
            max_rejections_listed: 100,
            max_unsupported_listed: 20,
        }
    }
}

/// Why a sample's time is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimeRefusal {
    #[error(
        "{ahead_seconds} s after the server's clock, more than the {allowed_seconds} s allowed"
    )]
    InFuture {
        ahead_seconds: i64,
        allowed_seconds: i64,
    },
    #[error("{age_days} days old, more than the {allowed_days} days kept")]
    TooOld { age_days: i64, allowed_days: i64 },
}

impl TimeRefusal {
    /// Short machine-readable reason, also a bounded metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            TimeRefusal::InFuture { .. } => "timestamp_in_future",
            TimeRefusal::TooOld { .. } => "timestamp_too_old",
        }
    }
}

impl IngestLimits {
    /// Whether a sample dated `at` is believable when received at `now`. Both bounds are
    /// inclusive.
    pub fn check_time(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), TimeRefusal> {
        // DateTime spans ±262,000 years and TimeDelta ±292 million, so the difference is exact.
        let ahead = at.signed_duration_since(now);
        if ahead > self.max_future_skew {
            return Err(TimeRefusal::InFuture {
                ahead_seconds: ahead.num_seconds(),
                allowed_seconds: self.max_future_skew.num_seconds(),
            });
        }
        let age = -ahead;
        if age > self.max_age {
            return Err(TimeRefusal::TooOld {
                age_days: age.num_days(),
                allowed_days: self.max_age.num_days(),
            });
        }
        Ok(())
    }
}

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

/// A vendor object deleted at the vendor, for our user `user_id`. The id covers the object, so
/// a redelivered deletion is a duplicate.
pub fn deletion_event(
    vendor: Vendor,
    user_id: &str,
    data_type: &str,
    object_id: &str,
    p: &Pseudonymizer,
    received_at: DateTime<Utc>,
) -> BiometricEvent {
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&[vendor.as_str(), user_id, "deleted", data_type, object_id]),
        subject: subject(p, user_id.to_string()),
        vendor,
        device: None,
        occurred_at: received_at,
        received_at,
        payload: Payload::Deletion(Deletion {
            data_type: data_type.into(),
            object_id: object_id.into(),
        }),
    }
}

/// The marker ahead of a backfilled history (see [`crate::model::Backfill`]). Its id covers
/// the start of the history, so re-marking the same backfill after a restart is a duplicate.
pub fn backfill_marker(
    vendor: Vendor,
    user_id: &str,
    since: DateTime<Utc>,
    p: &Pseudonymizer,
    received_at: DateTime<Utc>,
) -> BiometricEvent {
    let from = since.to_rfc3339();
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&[vendor.as_str(), user_id, "backfill", &from]),
        subject: subject(p, user_id.to_string()),
        vendor,
        device: None,
        occurred_at: received_at,
        received_at,
        payload: Payload::Backfill(Backfill { since }),
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

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn time_limits_are_inclusive_and_each_has_its_reason() {
        let l = IngestLimits::default();
        let now = at("2026-12-01T12:00:00Z");
        assert_eq!(l.check_time(now, now), Ok(()));
        assert_eq!(l.check_time(now + l.max_future_skew, now), Ok(()));
        assert_eq!(l.check_time(now - l.max_age, now), Ok(()));
        let ahead = l.check_time(now + l.max_future_skew + TimeDelta::seconds(1), now);
        assert_eq!(
            ahead,
            Err(TimeRefusal::InFuture {
                ahead_seconds: 301,
                allowed_seconds: 300
            })
        );
        assert_eq!(ahead.unwrap_err().reason(), "timestamp_in_future");
        let old = l.check_time(now - l.max_age - TimeDelta::seconds(1), now);
        assert_eq!(old.unwrap_err().reason(), "timestamp_too_old");
        for (t, reason) in [
            ("9999-12-31T23:59:59Z", "timestamp_in_future"),
            ("1900-01-01T00:00:00Z", "timestamp_too_old"),
            ("0000-01-01T00:00:00Z", "timestamp_too_old"),
        ] {
            assert_eq!(
                l.check_time(at(t), now).unwrap_err().reason(),
                reason,
                "{t}"
            );
        }
        // The extremes chrono can represent are refused, not overflowed.
        assert!(l.check_time(DateTime::<Utc>::MAX_UTC, now).is_err());
        assert!(l.check_time(DateTime::<Utc>::MIN_UTC, now).is_err());
        let tight = IngestLimits {
            max_future_skew: TimeDelta::zero(),
            max_age: TimeDelta::hours(1),
            ..l
        };
        assert!(tight
            .check_time(now + TimeDelta::milliseconds(1), now)
            .is_err());
        assert!(tight.check_time(now - TimeDelta::minutes(61), now).is_err());
    }

    /// Ids of every sample of a HealthKit push whose samples are given as JSON text.
    fn healthkit_ids(samples: &[&str]) -> Vec<EventId> {
        let body = format!(r#"{{"user_id":"u1","samples":[{}]}}"#, samples.join(","));
        let now = at("2025-01-28T00:00:00Z");
        let pushes =
            crate::vendors::healthkit::parse(body.as_bytes(), &IngestLimits::default(), now)
                .unwrap();
        let parsed = &pushes[0].parsed;
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        parsed
            .samples
            .iter()
            .map(|s| sample_event(Vendor::Healthkit, "u1", s, &p(), now).id)
            .collect()
    }

    fn all_equal(ids: &[EventId]) -> bool {
        ids.windows(2).all(|w| w[0] == w[1])
    }

    #[test]
    fn healthkit_spellings_of_one_reading_share_an_id() {
        let same: &[&[&str]] = &[
            // Numbers: integer, decimal, exponent.
            &[
                r#"{"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:00Z","source":"Apple Watch"}"#,
                r#"{"type":"heartRate","value":71.0,"timestamp":"2025-01-27T10:30:00Z","source":"Apple Watch"}"#,
                r#"{"type":"heartRate","value":7.1e1,"timestamp":"2025-01-27T10:30:00Z","source":"Apple Watch"}"#,
            ],
            // Signed zero.
            &[
                r#"{"type":"stepCount","value":0,"timestamp":"2025-01-27T10:30:00Z","source":"iPhone"}"#,
                r#"{"type":"stepCount","value":-0,"timestamp":"2025-01-27T10:30:00Z","source":"iPhone"}"#,
                r#"{"type":"stepCount","value":-0.0,"timestamp":"2025-01-27T10:30:00Z","source":"iPhone"}"#,
            ],
            // Type aliases.
            &[
                r#"{"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:00Z"}"#,
                r#"{"type":"HeartRate","value":71,"timestamp":"2025-01-27T10:30:00Z"}"#,
                r#"{"type":"HKQuantityTypeIdentifierHeartRate","value":71,"timestamp":"2025-01-27T10:30:00Z"}"#,
            ],
            &[
                r#"{"type":"sleepAnalysis","value":4,"timestamp":"2025-01-27T01:00:00Z","end_timestamp":"2025-01-27T01:45:00Z"}"#,
                r#"{"type":"HKCategoryTypeIdentifierSleepAnalysis","value":"asleepDeep","timestamp":"2025-01-27T01:00:00Z","endDate":"2025-01-27T01:45:00Z"}"#,
            ],
            // Time zones and units of one instant and one value.
            &[
                r#"{"type":"heartRate","value":71,"unit":"bpm","timestamp":"2025-01-27T10:30:00Z"}"#,
                r#"{"type":"heartRate","value":71,"unit":"count/min","timestamp":"2025-01-27T11:30:00+01:00"}"#,
                r#"{"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:00.000Z"}"#,
            ],
            &[
                r#"{"type":"oxygenSaturation","value":0.97,"timestamp":"2025-01-27T10:30:00Z"}"#,
                r#"{"type":"oxygenSaturation","value":97,"unit":"%","timestamp":"2025-01-27T10:30:00Z"}"#,
            ],
            &[
                r#"{"type":"bodyTemperature","value":98.6,"unit":"degF","timestamp":"2025-01-27T10:30:00Z"}"#,
                r#"{"type":"bodyTemperature","value":37,"unit":"degC","timestamp":"2025-01-27T10:30:00Z"}"#,
            ],
        ];
        for group in same {
            let ids = healthkit_ids(group);
            assert_eq!(ids.len(), group.len());
            assert!(all_equal(&ids), "{group:?} gave {ids:?}");
        }
        // Different readings keep different ids.
        let different = healthkit_ids(&[
            r#"{"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:00Z"}"#,
            r#"{"type":"heartRate","value":72,"timestamp":"2025-01-27T10:30:00Z"}"#,
            r#"{"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:01Z"}"#,
            r#"{"type":"heartRate","value":71,"timestamp":"2025-01-27T10:30:00Z","source":"iPhone"}"#,
            r#"{"type":"restingHeartRate","value":71,"timestamp":"2025-01-27T10:30:00Z"}"#,
            r#"{"type":"heartRate","value":71.5,"timestamp":"2025-01-27T10:30:00Z"}"#,
        ]);
        let unique: std::collections::BTreeSet<_> = different.iter().collect();
        assert_eq!(unique.len(), different.len(), "{different:?}");
    }

    /// Ids of every point of a Health Auto Export body whose metrics are given as JSON text.
    fn hae_ids(metrics: &[&str]) -> Vec<EventId> {
        let body = format!(r#"{{"data":{{"metrics":[{}]}}}}"#, metrics.join(","));
        let now = at("2024-02-08T00:00:00Z");
        let parsed = crate::vendors::health_auto_export::parse(
            body.as_bytes(),
            &IngestLimits::default(),
            now,
        )
        .unwrap();
        assert!(parsed.rejected.is_empty(), "{:?}", parsed.rejected);
        parsed
            .samples
            .iter()
            .map(|s| sample_event(Vendor::HealthAutoExport, "u1", s, &p(), now).id)
            .collect()
    }

    #[test]
    fn health_auto_export_spellings_of_one_point_share_an_id() {
        let same: &[&[&str]] = &[
            &[
                r#"{"name":"walking_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06 14:30:00 -0800"}]}"#,
                r#"{"name":"walking_heart_rate_average","units":"count/min","data":[{"qty":71.0,"date":"2024-02-06 14:30:00 -0800"}]}"#,
                r#"{"name":"walking_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06 22:30:00 +0000"}]}"#,
                r#"{"name":"walking_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06T22:30:00Z"}]}"#,
            ],
            &[
                r#"{"name":"heart_rate_variability","units":"ms","data":[{"qty":44,"date":"2024-02-06 03:00:00 -0800","source":"Apple Watch"}]}"#,
                r#"{"name":"heart_rate_variability_sdnn","units":"ms","data":[{"qty":44.0,"date":"2024-02-06 11:00:00 +0000","source":"Apple Watch"}]}"#,
            ],
            &[
                r#"{"name":"step_count","units":"count","data":[{"qty":0,"date":"2024-02-06 03:00:00 -0800"}]}"#,
                r#"{"name":"step_count","units":"count","data":[{"qty":-0,"date":"2024-02-06 03:00:00 -0800"}]}"#,
            ],
            &[
                r#"{"name":"weight_body_mass","units":"kg","data":[{"qty":80,"date":"2024-02-06 07:00:00 -0800"}]}"#,
                r#"{"name":"body_mass","units":"lb","data":[{"qty":176.37,"date":"2024-02-06 07:00:00 -0800"}]}"#,
            ],
            &[
                r#"{"name":"sleep_analysis","units":"hr","data":[{"date":"2024-02-06","totalSleep":7.5,"sleepEnd":"2024-02-06 07:00:00 -0800"}]}"#,
                r#"{"name":"sleep_analysis","units":"hr","data":[{"date":"2024-02-06 00:00:00 -0800","totalSleep":7.5,"sleepEnd":"2024-02-06 15:00:00 +0000"}]}"#,
            ],
        ];
        for group in same {
            let ids = hae_ids(group);
            assert_eq!(ids.len(), group.len());
            assert!(all_equal(&ids), "{group:?} gave {ids:?}");
        }
        let different = hae_ids(&[
            r#"{"name":"walking_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06 14:30:00 -0800"}]}"#,
            r#"{"name":"walking_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06 14:31:00 -0800"}]}"#,
            r#"{"name":"walking_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06 14:30:00 -0800","source":"iPhone"}]}"#,
            r#"{"name":"resting_heart_rate","units":"bpm","data":[{"qty":71,"date":"2024-02-06 14:30:00 -0800"}]}"#,
        ]);
        let unique: std::collections::BTreeSet<_> = different.iter().collect();
        assert_eq!(unique.len(), different.len(), "{different:?}");
    }
}
