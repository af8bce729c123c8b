//! The one event type that flows from a webhook to a mode switch.
//!
//! Every vendor payload is normalised into [`BiometricEvent`]s before anything is written to the log.
//! An event is either a [`Reading`] (a value with its unit, already converted to the canonical unit
//! for its [`Metric`]) or a [`Notification`] (a vendor told us that data exists, carrying ids only;
//! Oura and WHOOP work this way). Both travel the same topic, keyed the same way, so the bridge sees
//! one ordered stream per user.
//!
//! Units are part of the metric, never guessed downstream: HRV RMSSD and HRV SDNN are different
//! [`Metric`]s, so no baseline can mix them by accident.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Version of the JSON written to the log. Bump when a field changes meaning.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    Oura,
    Whoop,
    /// Apple HealthKit, pushed by our iOS companion app.
    Healthkit,
    /// Apple HealthKit, pushed by the Health Auto Export app's REST automation.
    HealthAutoExport,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Oura => "oura",
            Vendor::Whoop => "whoop",
            Vendor::Healthkit => "healthkit",
            Vendor::HealthAutoExport => "health_auto_export",
        }
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A canonical unit, spelled as UCUM so the FHIR output needs no second table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Unit {
    /// Beats or breaths per minute.
    #[serde(rename = "/min")]
    PerMinute,
    #[serde(rename = "ms")]
    Millisecond,
    #[serde(rename = "%")]
    Percent,
    #[serde(rename = "Cel")]
    Celsius,
    #[serde(rename = "{steps}")]
    Steps,
    #[serde(rename = "{count}")]
    Count,
    #[serde(rename = "kcal")]
    Kilocalorie,
    #[serde(rename = "m")]
    Metre,
    #[serde(rename = "kg")]
    Kilogram,
    #[serde(rename = "mL/(kg.min)")]
    MlPerKgMin,
    #[serde(rename = "mm[Hg]")]
    MillimetreMercury,
    #[serde(rename = "min")]
    Minute,
    /// A unitless score or fraction (vendor scores 0-100, stress 0-1).
    #[serde(rename = "1")]
    Score,
}

impl Unit {
    pub fn ucum(self) -> &'static str {
        match self {
            Unit::PerMinute => "/min",
            Unit::Millisecond => "ms",
            Unit::Percent => "%",
            Unit::Celsius => "Cel",
            Unit::Steps => "{steps}",
            Unit::Count => "{count}",
            Unit::Kilocalorie => "kcal",
            Unit::Metre => "m",
            Unit::Kilogram => "kg",
            Unit::MlPerKgMin => "mL/(kg.min)",
            Unit::MillimetreMercury => "mm[Hg]",
            Unit::Minute => "min",
            Unit::Score => "1",
        }
    }
}

/// What was measured. Each metric has exactly one canonical [`Unit`] and one plausible range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    HeartRate,
    RestingHeartRate,
    WalkingHeartRate,
    /// HRV as RMSSD (Oura, WHOOP). Never compared with SDNN.
    HrvRmssd,
    /// HRV as SDNN (Apple). Never compared with RMSSD.
    HrvSdnn,
    OxygenSaturation,
    RespiratoryRate,
    BodyTemperature,
    /// Apple's sleeping wrist temperature: an absolute skin temperature, not a core temperature.
    WristTemperature,
    /// Deviation from the personal temperature baseline (Oura, WHOOP); may be negative.
    TemperatureDeviation,
    Steps,
    ActiveEnergy,
    BasalEnergy,
    Distance,
    FlightsClimbed,
    Vo2Max,
    BodyMass,
    BloodPressureSystolic,
    BloodPressureDiastolic,
    /// One segment of a night, with its stage in [`ReadingDetail::Sleep`]; value is its length.
    SleepSegment,
    SleepTotal,
    SleepDeep,
    SleepRem,
    SleepCore,
    SleepAwake,
    SleepInBed,
    MindfulMinutes,
    /// A vendor recovery or readiness score, 0-100; an independent vote, never a baseline.
    RecoveryScore,
    /// Stress as a fraction 0-1.
    StressLevel,
    /// A workout session (a vendor's workout record, or one the watch recorded); the value is
    /// its length in minutes from `occurred_at`. The engine reads it as activity context.
    Workout,
}

impl Metric {
    pub const ALL: [Metric; 30] = [
        Metric::HeartRate,
        Metric::RestingHeartRate,
        Metric::WalkingHeartRate,
        Metric::HrvRmssd,
        Metric::HrvSdnn,
        Metric::OxygenSaturation,
        Metric::RespiratoryRate,
        Metric::BodyTemperature,
        Metric::WristTemperature,
        Metric::TemperatureDeviation,
        Metric::Steps,
        Metric::ActiveEnergy,
        Metric::BasalEnergy,
        Metric::Distance,
        Metric::FlightsClimbed,
        Metric::Vo2Max,
        Metric::BodyMass,
        Metric::BloodPressureSystolic,
        Metric::BloodPressureDiastolic,
        Metric::SleepSegment,
        Metric::SleepTotal,
        Metric::SleepDeep,
        Metric::SleepRem,
        Metric::SleepCore,
        Metric::SleepAwake,
        Metric::SleepInBed,
        Metric::MindfulMinutes,
        Metric::RecoveryScore,
        Metric::StressLevel,
        Metric::Workout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::HeartRate => "heart_rate",
            Metric::RestingHeartRate => "resting_heart_rate",
            Metric::WalkingHeartRate => "walking_heart_rate",
            Metric::HrvRmssd => "hrv_rmssd",
            Metric::HrvSdnn => "hrv_sdnn",
            Metric::OxygenSaturation => "oxygen_saturation",
            Metric::RespiratoryRate => "respiratory_rate",
            Metric::BodyTemperature => "body_temperature",
            Metric::WristTemperature => "wrist_temperature",
            Metric::TemperatureDeviation => "temperature_deviation",
            Metric::Steps => "steps",
            Metric::ActiveEnergy => "active_energy",
            Metric::BasalEnergy => "basal_energy",
            Metric::Distance => "distance",
            Metric::FlightsClimbed => "flights_climbed",
            Metric::Vo2Max => "vo2_max",
            Metric::BodyMass => "body_mass",
            Metric::BloodPressureSystolic => "blood_pressure_systolic",
            Metric::BloodPressureDiastolic => "blood_pressure_diastolic",
            Metric::SleepSegment => "sleep_segment",
            Metric::SleepTotal => "sleep_total",
            Metric::SleepDeep => "sleep_deep",
            Metric::SleepRem => "sleep_rem",
            Metric::SleepCore => "sleep_core",
            Metric::SleepAwake => "sleep_awake",
            Metric::SleepInBed => "sleep_in_bed",
            Metric::MindfulMinutes => "mindful_minutes",
            Metric::RecoveryScore => "recovery_score",
            Metric::StressLevel => "stress_level",
            Metric::Workout => "workout",
        }
    }

    /// The canonical unit every reading of this metric is stored in.
    pub fn unit(self) -> Unit {
        use Metric::*;
        match self {
            HeartRate | RestingHeartRate | WalkingHeartRate | RespiratoryRate => Unit::PerMinute,
            HrvRmssd | HrvSdnn => Unit::Millisecond,
            OxygenSaturation => Unit::Percent,
            BodyTemperature | WristTemperature | TemperatureDeviation => Unit::Celsius,
            Steps => Unit::Steps,
            FlightsClimbed => Unit::Count,
            ActiveEnergy | BasalEnergy => Unit::Kilocalorie,
            Distance => Unit::Metre,
            Vo2Max => Unit::MlPerKgMin,
            BodyMass => Unit::Kilogram,
            BloodPressureSystolic | BloodPressureDiastolic => Unit::MillimetreMercury,
            SleepSegment | SleepTotal | SleepDeep | SleepRem | SleepCore | SleepAwake
            | SleepInBed | MindfulMinutes | Workout => Unit::Minute,
            RecoveryScore | StressLevel => Unit::Score,
        }
    }

    /// Inclusive range of physiologically plausible values in the canonical unit. A value outside
    /// it is refused at ingest (422): it is either a unit mistake or a broken sensor, and storing
    /// it would poison a personal baseline. Values inside it may still be anomalous for one person;
    /// that is the mode engine's call, not ingest's.
    pub fn plausible_range(self) -> (f64, f64) {
        use Metric::*;
        match self {
            HeartRate => (20.0, 250.0),
            RestingHeartRate => (20.0, 150.0),
            WalkingHeartRate => (30.0, 220.0),
            HrvRmssd | HrvSdnn => (1.0, 500.0),
            OxygenSaturation => (50.0, 100.0),
            RespiratoryRate => (3.0, 70.0),
            BodyTemperature => (30.0, 45.0),
            WristTemperature => (20.0, 45.0),
            TemperatureDeviation => (-10.0, 10.0),
            Steps => (0.0, 100_000.0),
            ActiveEnergy => (0.0, 15_000.0),
            BasalEnergy => (0.0, 10_000.0),
            Distance => (0.0, 500_000.0),
            FlightsClimbed => (0.0, 5_000.0),
            Vo2Max => (5.0, 100.0),
            BodyMass => (1.0, 650.0),
            BloodPressureSystolic => (40.0, 300.0),
            BloodPressureDiastolic => (20.0, 200.0),
            SleepSegment | SleepTotal | SleepDeep | SleepRem | SleepCore | SleepAwake
            | SleepInBed => (0.0, 24.0 * 60.0),
            MindfulMinutes | Workout => (0.0, 24.0 * 60.0),
            RecoveryScore => (0.0, 100.0),
            StressLevel => (0.0, 1.0),
        }
    }

    /// LOINC code for FHIR output, where one exists. RMSSD has none: it must not borrow SDNN's.
    pub fn loinc(self) -> Option<&'static str> {
        use Metric::*;
        match self {
            HeartRate => Some("8867-4"),
            RestingHeartRate => Some("40443-4"),
            HrvSdnn => Some("80404-7"),
            OxygenSaturation => Some("2708-6"),
            RespiratoryRate => Some("9279-1"),
            BodyTemperature => Some("8310-5"),
            Steps => Some("55423-8"),
            ActiveEnergy => Some("41981-2"),
            SleepTotal => Some("93832-4"),
            _ => None,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// HealthKit's `HKCategoryValueSleepAnalysis`, with Apple's raw values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SleepStage {
    InBed,
    AsleepUnspecified,
    Awake,
    AsleepCore,
    AsleepDeep,
    AsleepRem,
}

impl SleepStage {
    /// Apple's raw enum value (`inBed = 0` ... `asleepREM = 5`).
    pub fn from_raw(raw: i64) -> Option<Self> {
        Some(match raw {
            0 => SleepStage::InBed,
            1 => SleepStage::AsleepUnspecified,
            2 => SleepStage::Awake,
            3 => SleepStage::AsleepCore,
            4 => SleepStage::AsleepDeep,
            5 => SleepStage::AsleepRem,
            _ => return None,
        })
    }

    /// Names used by HealthKit (`asleepREM`), Health Auto Export (`REM`, `In Bed`) and our iOS app.
    /// Unknown names are refused rather than folded into `inBed` as the predecessor did.
    pub fn from_name(name: &str) -> Option<Self> {
        let n: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Some(match n.as_str() {
            "inbed" => SleepStage::InBed,
            "asleep" | "asleepunspecified" | "unspecified" => SleepStage::AsleepUnspecified,
            "awake" => SleepStage::Awake,
            "core" | "asleepcore" => SleepStage::AsleepCore,
            "deep" | "asleepdeep" => SleepStage::AsleepDeep,
            "rem" | "asleeprem" => SleepStage::AsleepRem,
            _ => return None,
        })
    }
}

/// Extra structure some readings carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadingDetail {
    /// The value is an average over an interval that also had this minimum and maximum.
    Range { min: f64, max: f64 },
    /// A sleep segment from `start` to `end`, in `stage`; the value is its length in minutes.
    Sleep {
        stage: SleepStage,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    /// The vendor says its own baseline for this user is still being built (WHOOP's
    /// `user_calibrating`). Its scores are then not yet personal, so the engine does not count
    /// them as votes and reports the user as calibrating. A vendor-data adapter sets it.
    VendorCalibrating,
}

/// One measured value, in the canonical unit of its metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub metric: Metric,
    pub value: f64,
    pub unit: Unit,
    /// How far the source is trusted, in [0, 1]: a watch sensor more than a manual entry.
    pub confidence: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ReadingDetail>,
}

/// A vendor's "data is ready" notice. Oura and WHOOP webhooks carry ids only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The vendor's data type, as sent (`sleep`, `daily_readiness`, `recovery` ...). Unknown
    /// values are kept, not refused: vendors add types without notice.
    pub data_type: String,
    /// `create`, `update`, `delete` (Oura) or `updated`, `deleted` (WHOOP).
    pub event_type: String,
    pub object_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// A vendor object the vendor says is gone (an Oura `delete`, a WHOOP `*.deleted`), under our
/// user: downstream consumers (an agent's history, an export) can drop what came from it. The
/// engine does not take readings back out of baselines already built: one night among sixty
/// barely moves them, and the readings themselves were real when they were taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deletion {
    /// The vendor's data type (`sleep`, `workout`, `recovery` ...).
    pub data_type: String,
    pub object_id: String,
}

/// Marks the start of a history fetched from a vendor when the user connected. It goes into the
/// log, keyed by the user, ahead of the history itself, so the bridge learns in order that the
/// readings that follow are the user's own past: their baselines are personal from the first
/// day (see `UserState::mark_backfilled`) instead of waiting out a calibration period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    /// Start of the fetched history.
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    Reading(Reading),
    Notification(Notification),
    Deletion(Deletion),
    Backfill(Backfill),
}

/// Stable id of an event, derived from vendor ids or sample content, never random: a redelivery
/// of the same thing gets the same id, so it is recognised at ingest and downstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(String);

impl EventId {
    /// Hash of the parts, each length-prefixed so that ("ab","c") and ("a","bc") differ.
    pub fn derive(parts: &[&str]) -> Self {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p.as_bytes());
        }
        EventId(hex::encode(&h.finalize()[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who the event is about, as the service knows them.
///
/// `id` is our user id for HealthKit pushes (bound to the API key), or `<vendor>:<vendor user id>`
/// for Oura and WHOOP until the account link maps it. `pseudonym` is the keyed pseudonym: the only
/// form of the id that may appear in logs, metric labels and Kafka keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    pub id: String,
    pub pseudonym: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BiometricEvent {
    pub schema: u16,
    pub id: EventId,
    pub subject: Subject,
    pub vendor: Vendor,
    /// The device or app that measured it, as the vendor named it ("Apple Watch", ring id ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// When it happened (event time). Decisions downstream use this, never the wall clock.
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub payload: Payload,
}

impl BiometricEvent {
    pub fn reading(&self) -> Option<&Reading> {
        match &self.payload {
            Payload::Reading(r) => Some(r),
            Payload::Notification(_) | Payload::Deletion(_) | Payload::Backfill(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_deterministic_and_unambiguous() {
        assert_eq!(EventId::derive(&["a", "b"]), EventId::derive(&["a", "b"]));
        assert_ne!(EventId::derive(&["ab", "c"]), EventId::derive(&["a", "bc"]));
        assert_eq!(EventId::derive(&["x"]).as_str().len(), 32);
    }

    #[test]
    fn every_metric_has_a_sane_range_and_round_trips_through_json() {
        for m in Metric::ALL {
            let (lo, hi) = m.plausible_range();
            assert!(lo < hi, "{m}");
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
            let back: Metric = serde_json::from_str(&json).unwrap();
            assert_eq!(back, m);
        }
    }

    #[test]
    fn rmssd_never_borrows_the_sdnn_loinc_code() {
        assert_eq!(Metric::HrvSdnn.loinc(), Some("80404-7"));
        assert_eq!(Metric::HrvRmssd.loinc(), None);
        assert_ne!(Metric::HrvRmssd, Metric::HrvSdnn);
    }

    #[test]
    fn sleep_stage_names_and_raw_values() {
        assert_eq!(SleepStage::from_raw(5), Some(SleepStage::AsleepRem));
        assert_eq!(SleepStage::from_raw(6), None);
        assert_eq!(SleepStage::from_name("In Bed"), Some(SleepStage::InBed));
        assert_eq!(
            SleepStage::from_name("asleepREM"),
            Some(SleepStage::AsleepRem)
        );
        assert_eq!(SleepStage::from_name("Core"), Some(SleepStage::AsleepCore));
        assert_eq!(SleepStage::from_name("dozing"), None);
    }

    #[test]
    fn event_json_round_trip() {
        let e = BiometricEvent {
            schema: EVENT_SCHEMA_VERSION,
            id: EventId::derive(&["t"]),
            subject: Subject {
                id: "u1".into(),
                pseudonym: "p".into(),
            },
            vendor: Vendor::Healthkit,
            device: Some("Apple Watch".into()),
            occurred_at: "2025-01-27T10:30:00Z".parse().unwrap(),
            received_at: "2025-01-27T10:30:01Z".parse().unwrap(),
            payload: Payload::Reading(Reading {
                metric: Metric::HeartRate,
                value: 72.0,
                unit: Unit::PerMinute,
                confidence: 0.95,
                detail: Some(ReadingDetail::Range {
                    min: 60.0,
                    max: 80.0,
                }),
            }),
        };
        let s = serde_json::to_string(&e).unwrap();
        assert!(s.contains("\"unit\":\"/min\""), "{s}");
        let back: BiometricEvent = serde_json::from_str(&s).unwrap();
        assert_eq!(back, e);
    }
}

/// The longest user id accepted, in characters (not bytes: ids in any script count alike).
pub const MAX_USER_ID_CHARS: usize = 256;

/// Why a user id is refused. User ids name files, URLs, log pseudonyms and LangGraph metadata;
/// one that carries a control character, a path separator or a dot segment can forge a path or
/// a log line anywhere it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserIdError {
    #[error("user id is empty")]
    Empty,
    #[error("user id is longer than {MAX_USER_ID_CHARS} characters")]
    TooLong,
    #[error("user id contains a control or invisible character")]
    NotPrintable,
    #[error("user id contains a path separator (/ or \\)")]
    PathSeparator,
    #[error("user id is a dot segment (. or ..)")]
    DotSegment,
    #[error("user id starts or ends with white space")]
    Padded,
}

/// Checks a user id from a request or the command line.
pub fn validate_user_id(id: &str) -> Result<(), UserIdError> {
    if id.is_empty() {
        return Err(UserIdError::Empty);
    }
    if id.chars().count() > MAX_USER_ID_CHARS {
        return Err(UserIdError::TooLong);
    }
    if id.trim() != id {
        return Err(UserIdError::Padded);
    }
    if id.contains(['/', '\\']) {
        return Err(UserIdError::PathSeparator);
    }
    if id == "." || id == ".." {
        return Err(UserIdError::DotSegment);
    }
    // Control characters, and the format characters that hide or reorder text in a log line
    // (zero-width spaces, bidirectional overrides, the BOM).
    let invisible = |c: char| {
        c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if id.chars().any(invisible) {
        return Err(UserIdError::NotPrintable);
    }
    Ok(())
}

#[cfg(test)]
mod user_id_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_ids_pass_and_forged_ones_do_not() {
        for ok in [
            "u1",
            "alice@example.com",
            "用户-42",
            "a.b",
            "...",
            "x y",
            "00000000-0000-4000-8000-000000000000",
        ] {
            assert_eq!(validate_user_id(ok), Ok(()), "{ok}");
        }
        let bad = [
            ("", UserIdError::Empty),
            ("a/b", UserIdError::PathSeparator),
            ("..\\x", UserIdError::PathSeparator),
            ("..", UserIdError::DotSegment),
            (".", UserIdError::DotSegment),
            ("a\nb", UserIdError::NotPrintable),
            ("a\u{0}", UserIdError::NotPrintable),
            ("a\u{202E}b", UserIdError::NotPrintable),
            (" a", UserIdError::Padded),
            ("a\t", UserIdError::Padded),
        ];
        for (id, want) in bad {
            assert_eq!(validate_user_id(id), Err(want), "{id:?}");
        }
        assert_eq!(
            validate_user_id(&"é".repeat(256)),
            Ok(()),
            "256 characters, 512 bytes"
        );
        assert_eq!(
            validate_user_id(&"é".repeat(257)),
            Err(UserIdError::TooLong)
        );
    }

    proptest! {
        #[test]
        fn a_valid_id_never_carries_what_forges_paths_or_lines(id in "\\PC*") {
            if validate_user_id(&id).is_ok() {
                prop_assert!(!id.contains('/') && !id.contains('\\'));
                prop_assert!(!id.chars().any(char::is_control));
                prop_assert!(id != "." && id != "..");
                prop_assert!(!id.is_empty() && id.chars().count() <= MAX_USER_ID_CHARS);
            }
        }
    }
}
