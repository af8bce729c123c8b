//! Golden tests for each rule, and properties: no flapping on stationary noise, identical
//! decisions on replay, and a checkpoint round trip that changes nothing.

use super::*;
use crate::model::{
    BiometricEvent, EventId, Payload, Reading, Subject, Vendor, EVENT_SCHEMA_VERSION,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;

const USER: &str = "u_test";
const DAY: i64 = 86_400;
const T0: i64 = 1_735_689_600; // 2025-01-01T00:00:00Z

fn ev(metric: Metric, value: f64, at: i64) -> BiometricEvent {
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&[metric.as_str(), &value.to_string(), &at.to_string()]),
        subject: Subject {
            id: "user".into(),
            pseudonym: USER.into(),
        },
        vendor: Vendor::Healthkit,
        device: Some("Apple Watch".into()),
        occurred_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap(),
        received_at: DateTime::<Utc>::from_timestamp(at, 0).unwrap(),
        payload: Payload::Reading(Reading {
            metric,
            value,
            unit: metric.unit(),
            confidence: 0.95,
            detail: None,
        }),
    }
}

struct Run {
    cfg: EngineConfig,
    state: UserState,
    switches: Vec<ModeSwitch>,
}

impl Run {
    fn new() -> Self {
        Self {
            cfg: EngineConfig::default(),
            state: UserState::default(),
            switches: vec![],
        }
    }
    fn feed(&mut self, metric: Metric, value: f64, at: i64) -> Option<ModeSwitch> {
        let out = self.state.apply(&self.cfg, USER, &ev(metric, value, at));
        if let Some(s) = &out.switch {
            self.switches.push(s.clone());
        }
        out.switch
    }
    fn mode(&self) -> Mode {
        self.state.mode
    }
    /// `days` nights of personal data: SDNN, resting HR and temperature at 06:00.
    fn calibrate(&mut self, days: i64, sdnn: f64, rhr: f64) {
        for d in 0..days {
            let at = T0 + d * DAY + 6 * 3600;
            let wobble = if d % 2 == 0 { 1.02 } else { 0.98 };
            self.feed(Metric::HrvSdnn, sdnn * wobble, at);
            self.feed(
                Metric::RestingHeartRate,
                rhr + if d % 2 == 0 { 1.0 } else { -1.0 },
                at + 1,
            );
            self.feed(
                Metric::BodyTemperature,
                36.6 + if d % 2 == 0 { 0.1 } else { -0.1 },
                at + 2,
            );
        }
    }
}

#[test]
fn calibrating_user_starts_from_the_kind_prior_and_hrv_alone_never_enters_reflex() {
    let mut r = Run::new();
    assert!(r.state.calibrating(&r.cfg));
    let near = |(b, p): (f64, bool), want: f64| !p && (b - want).abs() < 1e-9;
    assert!(near(r.state.hrv_baseline(&r.cfg, Metric::HrvSdnn), 40.0));
    assert!(near(r.state.hrv_baseline(&r.cfg, Metric::HrvRmssd), 60.0));
    // 18 ms against SDNN's prior of 40 is a 55 % drop, but a prior is not the user: however many
    // readings say so, no REFLEX without another signal.
    for i in 0..5 {
        assert!(r.feed(Metric::HrvSdnn, 18.0, T0 + i * 60).is_none());
    }
    assert_eq!(r.mode(), Mode::Pattern);
    // A heart rate of the same moment, 25 bpm over the default baseline, corroborates.
    let s = r
        .feed(Metric::HeartRate, 95.0, T0 + 330)
        .expect("HRV drop with heart rate 25 bpm over baseline");
    assert_eq!((s.from, s.to), (Mode::Pattern, Mode::Reflex));
    assert!(s.calibrating);
    let rules: Vec<_> = s.reasons.iter().map(|x| x.rule).collect();
    // 22 ms under 40 is under the 25 ms rule; 55 % is over the 30 % one.
    assert!(!rules.contains(&Rule::HrvDropMs) && rules.contains(&Rule::HrvDropPercentage));
    assert!(rules.contains(&Rule::HeartRateElevation), "{rules:?}");
    assert!(s.reasons.iter().any(|x| x.rule == Rule::HrvDropPercentage
        && x.baseline == Some(40.0)
        && x.threshold == 30.0));
    assert!((0.0..=1.0).contains(&s.confidence));
    assert_eq!(s.snapshot.hrv_sdnn, Some(18.0));
}

#[test]
fn the_prior_gives_way_to_the_users_own_nights() {
    let mut r = Run::new();
    // A low-HRV user: SDNN about 22 ms every night. The baseline leaves the prior of 40 fast.
    let mut last = 40.0;
    for d in 0..6 {
        r.feed(Metric::HrvSdnn, 22.0, T0 + d * DAY + 6 * 3600);
        let (b, personal) = r.state.hrv_baseline(&r.cfg, Metric::HrvSdnn);
        assert!(!personal && b <= last, "night {d}: {b}");
        last = b;
    }
    assert!(
        last < 27.0,
        "after 5 completed nights the baseline is mostly theirs: {last}"
    );
    assert_eq!(r.mode(), Mode::Pattern);
}

#[test]
fn hrv_drop_rules_use_their_thresholds_against_a_personal_baseline() {
    // 26 ms below 60 (43 %) trips both; 20 ms below 60 (33 %) the percentage only; 15 ms (25 %)
    // neither. A personal drop confirms itself on its second reading.
    for (v, expect) in [(34.0, true), (40.0, true), (45.0, false)] {
        let mut r = Run::new();
        r.calibrate(20, 60.0, 55.0);
        let at = T0 + 20 * DAY + 5 * 3600;
        assert!(
            r.feed(Metric::HrvSdnn, v, at).is_none(),
            "one reading is one signal"
        );
        r.feed(Metric::HrvSdnn, v, at + 1800);
        assert_eq!(r.mode() == Mode::Reflex, expect, "HRV {v}");
    }
}

#[test]
fn an_hrv_drop_within_the_users_own_noise_is_not_acute() {
    // An athlete whose nightly SDNN swings ±25 %: a 30 % dip is inside their noise.
    let mut r = Run::new();
    for d in 0..20 {
        let at = T0 + d * DAY + 6 * 3600;
        r.feed(Metric::HrvSdnn, if d % 2 == 0 { 125.0 } else { 75.0 }, at);
    }
    let at = T0 + 20 * DAY + 5 * 3600;
    r.feed(Metric::HrvSdnn, 66.0, at);
    r.feed(Metric::HrvSdnn, 66.0, at + 1800);
    assert_eq!(r.mode(), Mode::Pattern);
}

#[test]
fn heart_rate_over_100_at_rest_but_not_while_active() {
    let mut r = Run::new();
    r.feed(Metric::HeartRate, 104.0, T0);
    assert_eq!(
        r.feed(Metric::HeartRate, 106.0, T0 + 60).map(|s| s.to),
        Some(Mode::Reflex)
    );

    let mut active = Run::new();
    active.feed(Metric::Steps, 900.0, T0);
    active.feed(Metric::HeartRate, 104.0, T0 + 30);
    active.feed(Metric::HeartRate, 106.0, T0 + 90);
    assert_eq!(active.mode(), Mode::Pattern, "exercise is not acute stress");

    // A ride: no steps, but active energy; and the energy sample stamped after the heart rates.
    let mut ride = Run::new();
    ride.feed(Metric::ActiveEnergy, 11.0, T0 + 600);
    for i in 0..10 {
        ride.feed(Metric::HeartRate, 140.0 + i as f64, T0 + i * 60);
    }
    assert_eq!(
        ride.mode(),
        Mode::Pattern,
        "activity counts either side of a reading"
    );
    // A swim: a workout record only.
    let mut swim = Run::new();
    swim.feed(Metric::Workout, 40.0, T0);
    for i in 0..30 {
        swim.feed(Metric::HeartRate, 130.0, T0 + 300 + i * 60);
    }
    assert_eq!(swim.mode(), Mode::Pattern);
}

#[test]
fn one_reading_is_one_signal_whatever_rules_it_trips() {
    let mut r = Run::new();
    // 125 bpm is over 100 and 55 over the baseline: two rules, one reading, no REFLEX yet.
    assert!(r.feed(Metric::HeartRate, 125.0, T0).is_none());
    // A redelivery of the same reading under another id still is the same reading.
    let mut again = ev(Metric::HeartRate, 125.0, T0);
    again.id = EventId::derive(&["other id"]);
    assert!(r.state.apply(&r.cfg, USER, &again).switch.is_none());
    assert_eq!(r.mode(), Mode::Pattern);
}

#[test]
fn a_push_listing_heart_rates_before_steps_is_a_run_not_stress() {
    use crate::vendors::healthkit;
    let mut samples = vec![];
    for i in 0..20 {
        let t = DateTime::<Utc>::from_timestamp(T0 + i * 60, 0)
            .unwrap()
            .to_rfc3339();
        samples.push(serde_json::json!({"type": "heartRate", "value": 150 + i % 5, "timestamp": t, "source": "Apple Watch"}));
    }
    for i in 0..20 {
        let t = DateTime::<Utc>::from_timestamp(T0 + i * 60, 0)
            .unwrap()
            .to_rfc3339();
        samples.push(serde_json::json!({"type": "stepCount", "value": 160, "timestamp": t, "source": "Apple Watch"}));
    }
    let body = serde_json::json!({"user_id": "u", "samples": samples}).to_string();
    let now = DateTime::<Utc>::from_timestamp(T0 + 1300, 0).unwrap();
    let push = healthkit::parse(body.as_bytes(), &Default::default(), now)
        .unwrap()
        .remove(0);
    let p = crate::pseudonym::Pseudonymizer::new(b"test-pseudonym-key-0123").unwrap();
    let mut r = Run::new();
    for s in &push.parsed.samples {
        let e = crate::ingest::sample_event(Vendor::Healthkit, "u", s, &p, now);
        r.state.apply(&r.cfg, USER, &e);
    }
    assert_eq!(r.mode(), Mode::Pattern);
}

#[test]
fn an_absurd_future_event_never_strands_the_user() {
    let mut r = Run::new();
    let mut far = ev(Metric::HeartRate, 120.0, T0);
    far.occurred_at = "9999-12-31T23:59:59Z".parse().unwrap();
    assert!(r.state.apply(&r.cfg, USER, &far).refused);
    // Inside u32 but far after its own receipt: also refused.
    let mut ahead = ev(Metric::HeartRate, 120.0, T0);
    ahead.occurred_at = DateTime::<Utc>::from_timestamp(T0 + 400 * DAY, 0).unwrap();
    assert!(r.state.apply(&r.cfg, USER, &ahead).refused);
    assert_eq!(r.state.clock, None);
    r.feed(Metric::HeartRate, 112.0, T0);
    r.feed(Metric::HeartRate, 112.0, T0 + 60);
    assert_eq!(
        r.mode(),
        Mode::Reflex,
        "later real data still moves the mode"
    );

    // A state whose clock was parked in 2100 before this guard existed heals on real data.
    let mut old = Run::new();
    let mut stamped = ev(Metric::HeartRate, 70.0, 4_102_444_800);
    stamped.received_at = stamped.occurred_at;
    old.state.apply(&old.cfg, USER, &stamped);
    assert_eq!(old.state.clock, Some(4_102_444_800));
    old.feed(Metric::HeartRate, 112.0, T0);
    old.feed(Metric::HeartRate, 112.0, T0 + 60);
    assert_eq!(old.mode(), Mode::Reflex);
    assert!(old.state.clock.unwrap() < T0 + DAY);
}

#[test]
fn critical_stress_enters_reflex() {
    let mut r = Run::new();
    r.feed(Metric::StressLevel, 0.9, T0);
    let s = r.feed(Metric::StressLevel, 0.88, T0 + 60).unwrap();
    assert_eq!(s.to, Mode::Reflex);
    assert_eq!(s.reasons[0].rule, Rule::StressLevelCritical);
    let mut calm = Run::new();
    calm.feed(Metric::StressLevel, 0.8, T0);
    calm.feed(Metric::StressLevel, 0.8, T0 + 60);
    assert_eq!(calm.mode(), Mode::Pattern);
}

#[test]
fn low_recovery_is_a_clear_signal_unless_the_vendor_is_calibrating() {
    let mut r = Run::new();
    let s = r
        .feed(Metric::RecoveryScore, 35.0, T0)
        .expect("red recovery");
    assert_eq!(s.to, Mode::Guardian);
    assert_eq!(s.reasons[0].rule, Rule::RecoveryScoreLow);

    let mut cal = Run::new();
    let mut e = ev(Metric::RecoveryScore, 20.0, T0);
    if let Payload::Reading(x) = &mut e.payload {
        x.detail = Some(crate::model::ReadingDetail::VendorCalibrating);
    }
    assert!(cal.state.apply(&cal.cfg, USER, &e).switch.is_none());
    assert!(
        cal.state.calibrating(&cal.cfg),
        "the vendor's flag is respected"
    );
    // The vendor's next score without the flag counts again.
    assert_eq!(
        cal.feed(Metric::RecoveryScore, 30.0, T0 + DAY)
            .map(|s| s.to),
        Some(Mode::Guardian)
    );

    let mut one = Run::new();
    one.feed(Metric::RecoveryScore, 55.0, T0);
    one.feed(Metric::StressLevel, 0.75, T0 + 10);
    assert_eq!(
        one.mode(),
        Mode::Pattern,
        "two moderate indicators on one day are not GUARDIAN"
    );
}

#[test]
fn illness_raises_resting_hr_and_temperature_into_guardian_from_the_second_night() {
    let mut r = Run::new();
    r.calibrate(20, 45.0, 55.0);
    assert!(!r.state.calibrating(&r.cfg));
    let night = |d: i64| T0 + d * DAY + 6 * 3600;
    r.feed(Metric::RestingHeartRate, 63.0, night(20));
    r.feed(Metric::BodyTemperature, 37.5, night(20) + 1);
    assert_eq!(
        r.mode(),
        Mode::Pattern,
        "one feverish night is not yet a pattern"
    );
    r.feed(Metric::HeartRate, 70.0, night(20) + 4 * 3600);
    assert_eq!(r.mode(), Mode::Pattern);
    r.feed(Metric::RestingHeartRate, 64.0, night(21));
    r.feed(Metric::BodyTemperature, 37.6, night(21) + 1);
    assert_eq!(r.mode(), Mode::Guardian);
    let s = r.switches.last().unwrap();
    let rules: Vec<_> = s.reasons.iter().map(|x| x.rule).collect();
    assert!(
        rules.contains(&Rule::IllnessPattern)
            && rules.contains(&Rule::RestingHeartRateElevated)
            && rules.contains(&Rule::BodyTemperatureElevated),
        "{rules:?}"
    );
    assert!(!s.calibrating);
    // Still ill: stays. Then two normal nights: back to PATTERN on the second.
    r.feed(Metric::RestingHeartRate, 62.0, night(22));
    r.feed(Metric::BodyTemperature, 37.4, night(22) + 1);
    assert_eq!(r.mode(), Mode::Guardian);
    for d in 23..=24 {
        r.feed(Metric::HrvSdnn, 45.0, night(d));
        r.feed(Metric::RestingHeartRate, 55.0, night(d) + 1);
        r.feed(Metric::BodyTemperature, 36.6, night(d) + 2);
        r.feed(Metric::HeartRate, 66.0, night(d) + 3600);
        if d == 23 {
            assert_eq!(
                r.mode(),
                Mode::Guardian,
                "one normal night is not yet recovery"
            );
        }
    }
    assert_eq!(r.mode(), Mode::Pattern);
    let back = r.switches.last().unwrap();
    assert!(back.reasons.iter().any(|x| x.rule == Rule::NightsRecovered));
}

#[test]
fn a_large_single_deviation_enters_guardian_at_once() {
    let mut r = Run::new();
    r.calibrate(20, 45.0, 55.0);
    let s = r
        .feed(Metric::RestingHeartRate, 67.0, T0 + 20 * DAY + 6 * 3600)
        .expect("resting HR 12 bpm over its mean");
    assert_eq!(s.to, Mode::Guardian);
    assert!(s
        .reasons
        .iter()
        .any(|x| x.rule == Rule::LargeRestingHeartRateRise));
}

#[test]
fn personal_baseline_replaces_defaults_after_calibration() {
    let mut r = Run::new();
    r.calibrate(20, 40.0, 55.0);
    let (b, personal) = r.state.hrv_baseline(&r.cfg, Metric::HrvSdnn);
    assert!(personal && (b - 40.0).abs() < 2.0, "{b}");
    // 30 ms: 25 % under this user's 40: nothing.
    let at = T0 + 20 * DAY + 5 * 3600;
    r.feed(Metric::HrvSdnn, 30.0, at);
    r.feed(Metric::HrvSdnn, 30.0, at + 60);
    assert_eq!(r.mode(), Mode::Pattern);
    // The next night, 26 ms is 35 % under 40 and far outside this steady user's noise: REFLEX on
    // the night's second such reading.
    r.feed(Metric::HrvSdnn, 26.0, at + DAY);
    assert_eq!(r.mode(), Mode::Pattern);
    r.feed(Metric::HrvSdnn, 26.0, at + DAY + 60);
    assert_eq!(r.mode(), Mode::Reflex);
    assert!(r
        .switches
        .last()
        .unwrap()
        .reasons
        .iter()
        .any(|x| x.rule == Rule::HrvDropPercentage && (x.baseline.unwrap() - 40.0).abs() < 2.0));
}

#[test]
fn a_nightly_summary_crash_is_reflex_with_resting_hr_and_stands_until_the_next_night() {
    // Oura-like: one RMSSD, resting HR and temperature deviation per night, no heart rate at night.
    let mut r = Run::new();
    for d in 0..20 {
        let at = T0 + d * DAY + 6 * 3600;
        let w = if d % 2 == 0 { 1.0 } else { -1.0 };
        r.feed(Metric::HrvRmssd, 50.0 * (1.0 + 0.06 * w), at);
        r.feed(Metric::RestingHeartRate, 52.0 + w, at + 1);
        r.feed(Metric::TemperatureDeviation, 0.1 * w, at + 2);
    }
    let crash = T0 + 20 * DAY + 6 * 3600 + 1800;
    assert!(
        r.feed(Metric::HrvRmssd, 27.0, crash).is_none(),
        "alone: waits"
    );
    let s = r
        .feed(Metric::RestingHeartRate, 60.0, crash + 1)
        .expect("the night's resting HR corroborates");
    assert_eq!(s.to, Mode::Reflex);
    assert!(s
        .reasons
        .iter()
        .any(|x| x.rule == Rule::RestingHeartRateElevated));
    // The agent meets the user in REFLEX hours later, daytime readings or not.
    for h in 1..14 {
        r.feed(Metric::HeartRate, 70.0, crash + h * 3600);
        r.feed(Metric::Steps, 400.0, crash + h * 3600 + 60);
    }
    assert_eq!(r.mode(), Mode::Reflex);
    // The next night is normal: back to PATTERN.
    let next = T0 + 21 * DAY + 6 * 3600;
    r.feed(Metric::HrvRmssd, 49.0, next);
    r.feed(Metric::RestingHeartRate, 52.0, next + 1);
    r.feed(Metric::HeartRate, 60.0, next + 3600);
    assert_eq!(r.mode(), Mode::Pattern);
}

#[test]
fn a_backfilled_user_is_personal_from_the_first_day() {
    let mut r = Run::new();
    // The marker the backfill puts in the log ahead of the history is what tells the engine.
    let mut marker = ev(Metric::HeartRate, 70.0, T0);
    marker.id = EventId::derive(&["backfill"]);
    marker.payload = Payload::Backfill(crate::model::Backfill {
        since: chrono::DateTime::from_timestamp(T0, 0).unwrap(),
    });
    let out = r.state.apply(&r.cfg, USER, &marker);
    assert!(!out.applied && r.state.events == 0 && r.state.clock.is_none());
    for d in 0..4 {
        r.feed(Metric::HrvRmssd, 50.0, T0 + d * DAY + 6 * 3600);
    }
    assert!(!r.state.calibrating(&r.cfg));
    let (b, personal) = r.state.hrv_baseline(&r.cfg, Metric::HrvRmssd);
    assert!(personal && (b - 50.0).abs() < 0.1, "{b}");
    let at = T0 + 4 * DAY + 6 * 3600;
    r.feed(Metric::HrvRmssd, 28.0, at);
    r.feed(Metric::HrvRmssd, 28.0, at + 60);
    assert_eq!(r.mode(), Mode::Reflex, "a personal drop confirms itself");
}

/// Sixty nights fetched at once when the user connects, with a crashed night in the middle:
/// the history builds the baselines but publishes no switch from the past; the last night, within
/// its daily window of the fetch, still decides, and live data after it switches as usual.
#[test]
fn a_backfilled_history_builds_baselines_but_switches_only_from_its_last_day() {
    let mut r = Run::new();
    let fetched = T0 + 60 * DAY + 9 * 3600;
    let mut marker = ev(Metric::HeartRate, 70.0, fetched);
    marker.id = EventId::derive(&["backfill"]);
    marker.payload = Payload::Backfill(crate::model::Backfill {
        since: DateTime::from_timestamp(T0, 0).unwrap(),
    });
    r.state.apply(&r.cfg, USER, &marker);
    let past = |metric, value, at| {
        let mut e = ev(metric, value, at);
        e.received_at = DateTime::from_timestamp(fetched, 0).unwrap();
        e
    };
    for d in 0..60 {
        let at = T0 + d * DAY + 7 * 3600;
        // Night 30 crashes: live, it would be REFLEX.
        let v = if d == 30 { 18.0 } else { 50.0 + (d % 3) as f64 };
        for (i, x) in [v, v].into_iter().enumerate() {
            let mut e = past(Metric::HrvRmssd, x, at + i as i64 * 60);
            e.id = EventId::derive(&["h", &d.to_string(), &i.to_string()]);
            let out = r.state.apply(&r.cfg, USER, &e);
            assert!(out.applied && out.switch.is_none(), "night {d}");
        }
    }
    assert!(!r.state.calibrating(&r.cfg));
    assert!(r.state.hrv_baseline(&r.cfg, Metric::HrvRmssd).1);
    assert_eq!(r.mode(), Mode::Pattern);
    // The fetched last night is within its window of the fetch: a crash there is today's news.
    let last = T0 + 60 * DAY + 7 * 3600;
    for i in 0..2 {
        let mut e = past(Metric::HrvRmssd, 20.0, last + i * 60);
        e.id = EventId::derive(&["last", &i.to_string()]);
        r.state.apply(&r.cfg, USER, &e);
    }
    assert_eq!(r.mode(), Mode::Reflex, "the last night decides");
}

#[test]
fn rmssd_and_sdnn_never_share_a_baseline() {
    let mut r = Run::new();
    r.calibrate(20, 40.0, 55.0); // SDNN only
    assert!(r.state.hrv_baseline(&r.cfg, Metric::HrvSdnn).1);
    let (b, personal) = r.state.hrv_baseline(&r.cfg, Metric::HrvRmssd);
    assert!(!personal && (b - 60.0).abs() < 1e-9);
    // An RMSSD of 45 is judged against RMSSD's default 60 (25 % drop: nothing), not SDNN's 40.
    let at = T0 + 20 * DAY + 12 * 3600;
    r.feed(Metric::HrvRmssd, 45.0, at);
    r.feed(Metric::HrvRmssd, 45.0, at + 60);
    assert_eq!(r.mode(), Mode::Pattern);
    let sdnn_before = r.state.hrv_sdnn.stats();
    r.feed(Metric::HrvRmssd, 80.0, at + 120);
    assert_eq!(
        r.state.hrv_sdnn.stats(),
        sdnn_before,
        "RMSSD never moves the SDNN baseline"
    );
}

#[test]
fn a_sensor_artefact_leads_to_hypothesis_not_reflex() {
    let mut r = Run::new();
    r.calibrate(20, 45.0, 55.0);
    let at = T0 + 20 * DAY + 15 * 3600;
    r.feed(Metric::HeartRate, 68.0, at);
    let s = r.feed(Metric::HeartRate, 220.0, at + 60).expect("artefact");
    assert_eq!(s.to, Mode::Hypothesis);
    assert_eq!(s.reasons[0].rule, Rule::HeartRateJumpArtefact);
    assert_eq!(
        r.state.latest.heart_rate.unwrap().v,
        68.0,
        "the artefact is kept out of the state"
    );
    // Normal readings: back to PATTERN only after the dwell and the cooldown.
    let mut t = at + 120;
    while r.mode() == Mode::Hypothesis && t < at + 3600 {
        r.feed(Metric::HeartRate, 67.0 + (t % 3) as f64, t);
        t += 60;
    }
    assert_eq!(r.mode(), Mode::Pattern);
    let back = r.switches.last().unwrap();
    assert!(
        back.at.timestamp() - s.at.timestamp() >= 600,
        "dwell of 600 s respected"
    );
    assert!(r.switches.iter().all(|s| s.to != Mode::Reflex));

    let mut hrv = Run::new();
    hrv.feed(Metric::HrvSdnn, 300.0, T0);
    assert_eq!(hrv.mode(), Mode::Hypothesis);
    assert_eq!(hrv.state.hrv_sdnn.days_with_data(), 0);
}

#[test]
fn odd_combinations_are_hypotheses() {
    let mut r = Run::new();
    r.feed(Metric::HeartRate, 45.0, T0);
    let s = r.feed(Metric::HrvSdnn, 18.0, T0 + 30).unwrap();
    // 18 ms is also a 42 ms drop (REFLEX evidence), but alone and uncorroborated; the odd
    // combination is the decision.
    assert_eq!(s.to, Mode::Hypothesis);
    assert!(s
        .reasons
        .iter()
        .any(|x| x.rule == Rule::LowHrvWithLowHeartRate));
}

#[test]
fn cooldown_blocks_calmer_switches_but_not_more_urgent_ones() {
    let mut r = Run::new();
    r.cfg.stability.min_dwell_seconds = 0; // isolate the cooldown
    r.feed(Metric::RecoveryScore, 30.0, T0);
    r.feed(Metric::RecoveryScore, 30.0, T0 + 10);
    assert_eq!(r.mode(), Mode::Guardian);
    // Recovery back to normal 60 s later: GUARDIAN's exit holds, but the cooldown has not passed.
    r.feed(Metric::RecoveryScore, 80.0, T0 + 70);
    assert_eq!(r.mode(), Mode::Guardian);
    // A more urgent mode pre-empts the cooldown.
    r.feed(Metric::StressLevel, 0.95, T0 + 80);
    let s = r.feed(Metric::StressLevel, 0.95, T0 + 90).unwrap();
    assert_eq!((s.from, s.to), (Mode::Guardian, Mode::Reflex));
    // Calm readings: no switch until 300 s after the last switch.
    r.feed(Metric::StressLevel, 0.3, T0 + 100);
    assert_eq!(r.mode(), Mode::Reflex);
    r.feed(Metric::StressLevel, 0.3, T0 + 389);
    assert_eq!(r.mode(), Mode::Reflex);
    let back = r.feed(Metric::StressLevel, 0.3, T0 + 390).unwrap();
    assert_eq!(back.to, Mode::Pattern);
}

#[test]
fn dwell_and_exit_threshold_give_hysteresis() {
    let mut r = Run::new();
    r.feed(Metric::HeartRate, 110.0, T0);
    r.feed(Metric::HeartRate, 110.0, T0 + 60);
    assert_eq!(r.mode(), Mode::Reflex);
    // 95 bpm is under the entry threshold (100) but not under the exit one (90): stay.
    for i in 0..20 {
        r.feed(Metric::HeartRate, 95.0, T0 + 120 + i * 60);
    }
    assert_eq!(r.mode(), Mode::Reflex);
    // Under 90 for less than the dwell: stay; for the dwell: return to PATTERN.
    let start = T0 + 2000;
    for i in 0..10 {
        r.feed(Metric::HeartRate, 72.0, start + i * 60);
    }
    assert_eq!(r.mode(), Mode::Reflex);
    let s = r.feed(Metric::HeartRate, 72.0, start + 600).unwrap();
    assert_eq!((s.from, s.to), (Mode::Reflex, Mode::Pattern));
    assert!(s.reasons.iter().any(|x| x.rule == Rule::HeartRateNormal));
    assert_eq!(s.reasons[0].rule, Rule::ReflexExitHeld);
    assert!(s.reasons[0].value >= 600.0);
}

#[test]
fn never_switches_to_the_current_mode() {
    let mut r = Run::new();
    for i in 0..30 {
        r.feed(Metric::HeartRate, 115.0, T0 + i * 60);
    }
    assert_eq!(r.switches.len(), 1);
}

#[test]
fn notifications_and_redeliveries_change_nothing() {
    let mut r = Run::new();
    let e = ev(Metric::HeartRate, 70.0, T0);
    assert!(r.state.apply(&r.cfg, USER, &e).applied);
    let again = r.state.apply(&r.cfg, USER, &e);
    assert!(again.duplicate && !again.applied);
    let mut n = e.clone();
    n.id = EventId::derive(&["n"]);
    n.payload = Payload::Notification(crate::model::Notification {
        data_type: "sleep".into(),
        event_type: "updated".into(),
        object_id: "x".into(),
        trace_id: None,
    });
    assert!(!r.state.apply(&r.cfg, USER, &n).applied);
    n.id = EventId::derive(&["d"]);
    n.payload = Payload::Deletion(crate::model::Deletion {
        data_type: "sleep".into(),
        object_id: "x".into(),
    });
    assert!(!r.state.apply(&r.cfg, USER, &n).applied);
    assert_eq!(r.state.events, 1);
    assert!(
        !r.state.flags.backfilled,
        "only a backfill marker marks the user"
    );
}

#[test]
fn significant_change_follows_the_config() {
    let mut r = Run::new();
    let first = r
        .state
        .apply(&r.cfg, USER, &ev(Metric::HeartRate, 70.0, T0));
    assert!(first.significant, "nothing saved yet");
    r.state.mark_saved();
    assert!(
        !r.state
            .apply(&r.cfg, USER, &ev(Metric::HeartRate, 75.0, T0 + 60))
            .significant
    );
    assert!(
        r.state
            .apply(&r.cfg, USER, &ev(Metric::HeartRate, 80.0, T0 + 120))
            .significant
    );
}

#[test]
fn memory_per_user_is_within_budget_after_a_long_history() {
    let mut r = Run::new();
    r.calibrate(120, 45.0, 55.0);
    let total = std::mem::size_of::<UserState>() + r.state.heap_bytes();
    assert!(total <= 2048, "{total} bytes");
}

/// A day of normal life: nightly values with noise, heart rate every 10 minutes by day.
fn stationary(seed: u64, days: i64) -> Vec<BiometricEvent> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    };
    let mut out = vec![];
    for d in 0..days {
        let night = T0 + d * DAY + 6 * 3600;
        out.push(ev(Metric::HrvSdnn, 48.0 * (1.0 + 0.08 * noise()), night));
        out.push(ev(
            Metric::RestingHeartRate,
            56.0 + 1.5 * noise(),
            night + 1,
        ));
        out.push(ev(Metric::BodyTemperature, 36.6 + 0.1 * noise(), night + 2));
        for k in 0..84 {
            let t = T0 + d * DAY + 8 * 3600 + k * 600;
            out.push(ev(Metric::HeartRate, 66.0 + 6.0 * noise(), t));
        }
    }
    out
}

fn replay(cfg: &EngineConfig, events: &[BiometricEvent]) -> (UserState, Vec<ModeSwitch>) {
    let mut s = UserState::default();
    let sw = events
        .iter()
        .filter_map(|e| s.apply(cfg, USER, e).switch)
        .collect();
    (s, sw)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn stationary_noise_never_flaps(seed in any::<u64>()) {
        let cfg = EngineConfig::default();
        let (_, switches) = replay(&cfg, &stationary(seed, 30));
        prop_assert!(switches.len() <= 4, "{} switches: {:?}", switches.len(),
            switches.iter().map(|s| (s.to, s.reasons.iter().map(|r| r.rule).collect::<Vec<_>>())).collect::<Vec<_>>());
        prop_assert!(switches.iter().all(|s| s.to != Mode::Reflex), "noise is never acute stress");
        for w in switches.windows(2) {
            let gap = w[1].at.timestamp() - w[0].at.timestamp();
            prop_assert!(gap >= 300 || w[1].to.urgency() > w[0].to.urgency(), "switch within the cooldown");
        }
    }

    #[test]
    fn replay_gives_identical_decisions_and_checkpoints_change_nothing(seed in any::<u64>(), cut in 0usize..2000) {
        let cfg = EngineConfig::default();
        let mut events = stationary(seed, 20);
        // An episode after the last normal reading, so there is something to decide.
        let t = T0 + 19 * DAY + 23 * 3600;
        for i in 0..10 { events.push(ev(Metric::HeartRate, 112.0, t + i * 60)); }
        let (a_state, a) = replay(&cfg, &events);
        let (b_state, b) = replay(&cfg, &events);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a_state, &b_state);
        prop_assert!(a.iter().any(|s| s.to == Mode::Reflex));
        // Stop at `cut`, checkpoint through JSON, restore, continue: same result.
        let cut = cut.min(events.len());
        let mut s = UserState::default();
        let mut c: Vec<ModeSwitch> = events[..cut].iter().filter_map(|e| s.apply(&cfg, USER, e).switch).collect();
        let mut restored: UserState = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        c.extend(events[cut..].iter().filter_map(|e| restored.apply(&cfg, USER, e).switch));
        prop_assert_eq!(c, a);
        prop_assert_eq!(restored, a_state);
    }
}
