//! The generator behind the scenario library. Every scenario is a user profile (device, fitness,
//! noise), a number of days, episodes (crash, illness, overreaching, stress at rest, artefacts,
//! gaps) and a delivery style (normal, duplicated, out of order). Apple users' data travels as
//! HealthKit pushes through the real parser, one query per type as the app sends them; Oura and
//! WHOOP users' as nightly summaries.

use super::{Label, Scenario};
use crate::engine::Mode;
use crate::ingest::sample_event;
use crate::model::{
    BiometricEvent, EventId, Metric, Payload, Reading, ReadingDetail, Subject, Vendor,
    EVENT_SCHEMA_VERSION,
};
use crate::pseudonym::Pseudonymizer;
use crate::vendors::healthkit;
use chrono::{DateTime, Utc};
use serde_json::json;

/// 2025-01-06, a Monday.
const T0: i64 = 1_736_121_600;
const H: i64 = 3600;
const D: i64 = 86_400;
const M: i64 = 60;

/// splitmix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Device {
    /// Nightly summaries only: RMSSD, resting HR, temperature deviation, readiness.
    Oura,
    /// Nightly RMSSD, resting HR, recovery; workout records.
    Whoop,
    /// HealthKit pushes: SDNN spot readings at night, heart rate by day and night, resting HR,
    /// wrist temperature, steps, active energy, distance, workouts.
    Apple,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Workout {
    Run,
    Ride,
    Strength,
    Swim,
}

#[derive(Debug, Clone)]
struct Profile {
    device: Device,
    hrv_ms: f64,
    /// Day-to-day CV of ln HRV (SD of ln HRV / mean of ln HRV).
    ln_cv: f64,
    rhr: f64,
    day_hr: f64,
    temp_sd: f64,
    /// Menstrual cycle length in days.
    cycle: Option<i64>,
    /// Weekly schedule: (weekday 0 = Monday, kind, start hour, minutes).
    workouts: Vec<(i64, Workout, f64, i64)>,
    /// The vendor's own calibration lasts this many days (WHOOP's `user_calibrating`).
    vendor_calibrating_days: i64,
}

impl Profile {
    fn new(device: Device, hrv_ms: f64, ln_cv: f64, rhr: f64) -> Self {
        Self {
            device,
            hrv_ms,
            ln_cv,
            rhr,
            day_hr: rhr + 16.0,
            temp_sd: 0.12,
            cycle: None,
            workouts: vec![],
            vendor_calibrating_days: 0,
        }
    }
    fn workouts(mut self, w: &[(i64, Workout, f64, i64)]) -> Self {
        self.workouts = w.to_vec();
        self
    }
}

#[derive(Debug, Clone, Copy)]
enum Episode {
    /// An acute night (alcohol, an acute stressor): HRV about −45 %, resting HR about +7.
    Crash(i64),
    /// Nights `0..0+1` sick: resting HR +7, temperature +0.8 °C, HRV −25 %.
    Illness(i64, i64),
    /// Training block from day `.0`: `.1` days of ramp, `.2` days of plateau, then 3 to recover.
    Overreach(i64, i64, i64),
    /// Stress at rest on day `.0` at hour `.1` for `.2` minutes: heart rate 106-122, no movement.
    DayStress(i64, f64, i64),
    /// One heart-rate sample of 185 between normal ones, on day `.0` at hour `.1`.
    HrSpike(i64, f64),
    /// One HRV reading five times the usual, on night `.0`.
    HrvSpike(i64),
    /// Nothing recorded for days `.0..0+1`.
    Gap(i64, i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Delivery {
    Normal,
    /// Every push or nightly summary delivered twice.
    Duplicated,
    /// A fifth of pushes swapped with the next; a fifth of nights delivered a day late.
    OutOfOrder,
}

struct Spec {
    name: &'static str,
    description: &'static str,
    seed: u64,
    profile: Profile,
    days: i64,
    episodes: Vec<Episode>,
    delivery: Delivery,
}

/// Shifts of the night's true physiology.
#[derive(Default, Clone, Copy)]
struct Shift {
    ln: f64,
    rhr: f64,
    temp: f64,
    /// Heart rate at night over resting.
    night_hr: f64,
}

/// One measured value before delivery.
#[derive(Clone)]
struct Sample {
    metric: Metric,
    value: f64,
    at: i64,
    calibrating: bool,
}

fn s(metric: Metric, value: f64, at: i64) -> Sample {
    Sample {
        metric,
        value,
        at,
        calibrating: false,
    }
}

fn shift_for(spec: &Spec, day: i64) -> Shift {
    let mut sh = Shift::default();
    if let Some(len) = spec.profile.cycle {
        // Luteal phase: days 15 to the end of the cycle.
        if day.rem_euclid(len) >= 14 {
            sh.ln -= 0.04;
            sh.rhr += 2.0;
            sh.temp += 0.3;
        }
    }
    for e in &spec.episodes {
        match *e {
            Episode::Crash(n) if n == day => {
                sh.ln -= 0.6;
                sh.rhr += 7.0;
                sh.temp += 0.15;
                sh.night_hr += 9.0;
            }
            Episode::Illness(n, k) if day >= n && day < n + k => {
                let f = if day == n + k - 1 { 0.7 } else { 1.0 };
                sh.ln -= 0.28 * f;
                sh.rhr += 7.0 * f;
                sh.temp += 0.85 * f;
                sh.night_hr += 6.0 * f;
            }
            Episode::Overreach(a, ramp, plateau) if day >= a => {
                let i = day - a;
                let f = if i < ramp {
                    (i + 1) as f64 / ramp as f64
                } else if i < ramp + plateau {
                    1.0
                } else {
                    (1.0 - (i - ramp - plateau + 1) as f64 / 3.0).max(0.0)
                };
                sh.ln -= 0.4 * f;
                sh.rhr += 4.0 * f;
                sh.night_hr += 3.0 * f;
            }
            _ => {}
        }
    }
    sh
}

fn in_gap(spec: &Spec, t: i64) -> bool {
    spec.episodes.iter().any(|e| match *e {
        Episode::Gap(a, k) => t >= T0 + a * D && t < T0 + (a + k) * D,
        _ => false,
    })
}

/// The measured samples of the whole scenario, in time order.
fn measure(spec: &Spec, rng: &mut Rng) -> Vec<Sample> {
    let p = &spec.profile;
    let mu = p.hrv_ms.ln();
    let sd = p.ln_cv * mu;
    let mut out = vec![];
    let mut carry = 0.0;
    for d in 0..spec.days {
        let day = T0 + d * D;
        let sh = shift_for(spec, d);
        // Night d belongs to the morning of day d.
        let z1 = rng.normal();
        let z2 = rng.normal();
        carry = 0.3 * carry + (1.0 - 0.09f64).sqrt() * z1;
        let ln_night = mu + sh.ln + sd * carry;
        let rhr = p.rhr + sh.rhr + 2.2 * (-0.4 * carry + 0.917 * z2);
        let temp = sh.temp + p.temp_sd * rng.normal();
        let z_hrv = (ln_night - mu) / sd;
        let z_rhr = (rhr - p.rhr) / 2.2;
        let score = |rng: &mut Rng, base: f64| {
            (base + 12.0 * (z_hrv - z_rhr) / 2.0 + 4.0 * rng.normal()).clamp(1.0, 99.0)
        };
        let summary = day + 7 * H + (rng.range(0.0, 40.0) * M as f64) as i64;
        let calibrating = d < p.vendor_calibrating_days;
        match p.device {
            Device::Oura | Device::Whoop => {
                out.push(s(Metric::HrvRmssd, ln_night.exp(), summary));
                out.push(s(Metric::RestingHeartRate, rhr, summary));
                if p.device == Device::Oura {
                    out.push(s(Metric::TemperatureDeviation, temp, summary));
                    out.push(s(Metric::RecoveryScore, score(rng, 78.0), summary));
                } else {
                    let mut r = s(
                        Metric::RecoveryScore,
                        if calibrating {
                            rng.range(25.0, 95.0)
                        } else {
                            score(rng, 66.0)
                        },
                        summary,
                    );
                    r.calibrating = calibrating;
                    out.push(r);
                }
            }
            Device::Apple => {
                for h in [1.5, 3.5, 5.5] {
                    let at =
                        day + (h * H as f64) as i64 + (rng.range(-20.0, 20.0) * M as f64) as i64;
                    out.push(s(
                        Metric::HrvSdnn,
                        (ln_night + 0.12 * rng.normal()).exp(),
                        at,
                    ));
                }
                let mut t = day - H;
                while t < day + 7 * H {
                    out.push(s(
                        Metric::HeartRate,
                        rhr + 2.0 + sh.night_hr + 2.0 * rng.normal(),
                        t,
                    ));
                    t += 15 * M;
                }
                out.push(s(Metric::RestingHeartRate, rhr, day + 6 * H + 50 * M));
                out.push(s(
                    Metric::WristTemperature,
                    35.6 + temp,
                    day + 6 * H + 40 * M,
                ));
                daytime(spec, d, rng, &mut out);
            }
        }
        if p.device == Device::Whoop {
            for &(wd, kind, hour, minutes) in &p.workouts {
                if (d % 7) == wd {
                    let at = day + (hour * H as f64) as i64;
                    // WHOOP's workout record arrives after the workout.
                    let mut w = s(Metric::Workout, minutes as f64, at);
                    w.at = at;
                    out.push(w);
                    let _ = kind;
                }
            }
        }
        for e in &spec.episodes {
            if let Episode::HrvSpike(n) = *e {
                if n == d {
                    let m = if p.device == Device::Apple {
                        Metric::HrvSdnn
                    } else {
                        Metric::HrvRmssd
                    };
                    out.push(s(m, (p.hrv_ms * 5.0).min(490.0), day + 4 * H));
                }
            }
        }
    }
    out.retain(|x| !in_gap(spec, x.at));
    out.sort_by_key(|x| x.at);
    out
}

/// An Apple user's day: heart rate every 10 minutes, walks, workouts, stress at rest, spikes.
fn daytime(spec: &Spec, d: i64, rng: &mut Rng, out: &mut Vec<Sample>) {
    let p = &spec.profile;
    let day = T0 + d * D;
    // Busy windows (walks, workouts, episodes) by minute of the day.
    let mut busy: Vec<(i64, i64)> = vec![];
    for _ in 0..3 {
        let start = day + (rng.range(8.5, 20.0) * H as f64) as i64;
        let len = (rng.range(10.0, 25.0) as i64) * M;
        let mut t = start;
        while t < start + len {
            // Heart rate climbs over the first minutes of a walk.
            let hr = if t == start {
                p.day_hr + rng.range(10.0, 20.0)
            } else {
                rng.range(96.0, 114.0)
            };
            out.push(s(Metric::HeartRate, hr, t));
            out.push(s(Metric::Steps, rng.range(100.0, 125.0) * 2.0, t));
            out.push(s(Metric::ActiveEnergy, rng.range(7.0, 10.0), t));
            out.push(s(Metric::Distance, rng.range(150.0, 200.0), t));
            t += 2 * M;
        }
        busy.push((start, start + len + 10 * M));
    }
    for &(wd, kind, hour, minutes) in &p.workouts {
        if d % 7 != wd {
            continue;
        }
        let start = day + (hour * H as f64) as i64;
        let end = start + minutes * M;
        let mut t = start;
        while t < end {
            let (hr, steps, kcal, dist) = match kind {
                Workout::Run => (
                    rng.range(140.0, 172.0),
                    Some(rng.range(150.0, 175.0)),
                    rng.range(10.0, 14.0),
                    Some(rng.range(160.0, 210.0)),
                ),
                Workout::Ride => (rng.range(128.0, 162.0), None, rng.range(8.0, 11.0), None),
                Workout::Strength => (
                    rng.range(95.0, 142.0),
                    Some(rng.range(5.0, 30.0)),
                    rng.range(5.0, 7.0),
                    None,
                ),
                Workout::Swim => (rng.range(115.0, 150.0), None, rng.range(8.0, 10.0), None),
            };
            out.push(s(Metric::HeartRate, hr, t));
            if let Some(st) = steps {
                out.push(s(Metric::Steps, st, t));
            }
            out.push(s(Metric::ActiveEnergy, kcal, t));
            if let Some(m) = dist {
                out.push(s(Metric::Distance, m, t));
            }
            t += M;
        }
        // Recovery: heart rate decays over 10 minutes.
        for k in 1..=4 {
            out.push(s(
                Metric::HeartRate,
                p.day_hr + 45.0 * (-0.5 * k as f64).exp(),
                end + k * 3 * M,
            ));
        }
        out.push(s(Metric::Workout, minutes as f64, start));
        busy.push((start, end + 15 * M));
    }
    for e in &spec.episodes {
        match *e {
            Episode::DayStress(n, hour, minutes) if n == d => {
                let start = day + (hour * H as f64) as i64;
                let mut t = start;
                while t < start + minutes * M {
                    out.push(s(Metric::HeartRate, rng.range(106.0, 122.0), t));
                    t += 2 * M;
                }
                busy.push((start, start + minutes * M));
            }
            Episode::HrSpike(n, hour) if n == d => {
                let t = day + (hour * H as f64) as i64;
                out.push(s(Metric::HeartRate, p.day_hr, t - M));
                out.push(s(Metric::HeartRate, 185.0, t));
                out.push(s(Metric::HeartRate, p.day_hr + 2.0, t + M));
                busy.push((t - M, t + 2 * M));
            }
            _ => {}
        }
    }
    let mut t = day + 8 * H;
    while t < day + 23 * H {
        if !busy.iter().any(|&(a, b)| t >= a && t < b) {
            out.push(s(Metric::HeartRate, p.day_hr + 4.0 * rng.normal(), t));
            out.push(s(Metric::Steps, rng.range(0.0, 60.0), t));
            out.push(s(Metric::ActiveEnergy, rng.range(0.8, 2.5), t));
        }
        t += 10 * M;
    }
}

fn subject(name: &str) -> Subject {
    Subject {
        id: format!("scenario-{name}"),
        pseudonym: format!("u_{name}"),
    }
}

fn event(name: &str, vendor: Vendor, x: &Sample, received: i64) -> BiometricEvent {
    let at = DateTime::<Utc>::from_timestamp(x.at, 0).unwrap_or_default();
    BiometricEvent {
        schema: EVENT_SCHEMA_VERSION,
        id: EventId::derive(&[vendor.as_str(), name, x.metric.as_str(), &x.at.to_string()]),
        subject: subject(name),
        vendor,
        device: None,
        occurred_at: at,
        received_at: DateTime::<Utc>::from_timestamp(received, 0).unwrap_or_default(),
        payload: Payload::Reading(Reading {
            metric: x.metric,
            value: (x.value * 1000.0).round() / 1000.0,
            unit: x.metric.unit(),
            confidence: 0.9,
            detail: x.calibrating.then_some(ReadingDetail::VendorCalibrating),
        }),
    }
}

const APPLE_TYPES: [(Metric, &str); 8] = [
    (Metric::HeartRate, "heartRate"),
    (Metric::HrvSdnn, "heartRateVariabilitySDNN"),
    (Metric::RestingHeartRate, "restingHeartRate"),
    (Metric::WristTemperature, "appleSleepingWristTemperature"),
    (Metric::Steps, "stepCount"),
    (Metric::ActiveEnergy, "activeEnergyBurned"),
    (Metric::Distance, "distanceWalkingRunning"),
    (Metric::Workout, "workout"),
];

/// Delivers samples as the source would: Apple as hourly pushes listing one type after another
/// (the night's data in the first morning push), others as nightly batches.
fn deliver(spec: &Spec, samples: &[Sample], rng: &mut Rng) -> Vec<BiometricEvent> {
    let name = spec.name;
    let mut batches: Vec<Vec<BiometricEvent>> = vec![];
    if spec.profile.device == Device::Apple {
        let p = Pseudonymizer::new(b"scenario-library-pseudonym-key").expect("key is long enough");
        // A push at hh:05 carries the previous hour; the watch syncs the night at 07:05.
        let push_at = |t: i64| {
            let day = t.div_euclid(D) * D;
            let tod = t - day;
            if tod >= 23 * H {
                day + D + 7 * H + 5 * M
            } else if tod < 7 * H {
                day + 7 * H + 5 * M
            } else {
                day + (tod / H + 1) * H + 5 * M
            }
        };
        let mut i = 0;
        while i < samples.len() {
            let at = push_at(samples[i].at);
            let mut j = i;
            while j < samples.len() && push_at(samples[j].at) == at {
                j += 1;
            }
            let mut list = vec![];
            for (m, t) in APPLE_TYPES {
                for x in samples[i..j].iter().filter(|x| x.metric == m) {
                    let ts = DateTime::<Utc>::from_timestamp(x.at, 0).unwrap_or_default();
                    let mut v = json!({"type": t, "value": (x.value * 1000.0).round() / 1000.0,
                        "timestamp": ts.to_rfc3339(), "source": "Apple Watch"});
                    if m == Metric::Workout {
                        v["unit"] = json!("min");
                    }
                    list.push(v);
                }
            }
            let body = json!({"user_id": subject(name).id, "samples": list}).to_string();
            let received = DateTime::<Utc>::from_timestamp(at, 0).unwrap_or_default();
            let mut batch = vec![];
            if let Ok(pushes) = healthkit::parse(body.as_bytes(), &Default::default(), received) {
                for push in pushes {
                    for x in &push.parsed.samples {
                        let mut e = sample_event(Vendor::Healthkit, &push.user_id, x, &p, received);
                        e.subject = subject(name);
                        batch.push(e);
                    }
                }
            }
            batches.push(batch);
            i = j;
        }
    } else {
        let vendor = if spec.profile.device == Device::Oura {
            Vendor::Oura
        } else {
            Vendor::Whoop
        };
        let mut i = 0;
        while i < samples.len() {
            let day = samples[i].at.div_euclid(D);
            let mut j = i;
            while j < samples.len() && samples[j].at.div_euclid(D) == day {
                j += 1;
            }
            let received = samples[i..j].iter().map(|x| x.at).max().unwrap_or(0) + 5 * M;
            batches.push(
                samples[i..j]
                    .iter()
                    .map(|x| event(name, vendor, x, received))
                    .collect(),
            );
            i = j;
        }
    }
    match spec.delivery {
        Delivery::Normal => {}
        Delivery::Duplicated => {
            batches = batches.into_iter().flat_map(|b| [b.clone(), b]).collect();
        }
        Delivery::OutOfOrder => {
            let mut k = 0;
            while k + 1 < batches.len() {
                if rng.uniform() < 0.2 {
                    batches.swap(k, k + 1);
                    k += 2;
                } else {
                    k += 1;
                }
            }
        }
    }
    batches.into_iter().flatten().collect()
}

fn labels(spec: &Spec) -> Vec<Label> {
    let day = |d: i64| T0 + d * D;
    let mut l = vec![];
    // Nightly data is in by 07:45 (summaries at 07:00-07:40, the night push at 07:05).
    let ready = |d: i64| day(d) + 7 * H + 45 * M;
    for e in &spec.episodes {
        match *e {
            Episode::Crash(n) => {
                l.push((day(n), ready(n), None, "crash_onset"));
                l.push((
                    ready(n),
                    day(n + 1) + 6 * H,
                    Some(Mode::Reflex),
                    "acute_night_crash",
                ));
                l.push((
                    day(n + 1) + 6 * H,
                    day(n + 1) + 10 * H,
                    None,
                    "crash_resolves",
                ));
            }
            Episode::Illness(n, k) => {
                l.push((day(n), ready(n + 1), None, "illness_onset"));
                l.push((
                    ready(n + 1),
                    day(n + k) + 6 * H,
                    Some(Mode::Guardian),
                    "illness",
                ));
                l.push((
                    day(n + k) + 6 * H,
                    day(n + k + 1) + 12 * H,
                    None,
                    "illness_recovery",
                ));
            }
            Episode::Overreach(a, ramp, plateau) => {
                l.push((day(a), ready(a + ramp + 2), None, "overreaching_onset"));
                l.push((
                    ready(a + ramp + 2),
                    day(a + ramp + plateau) + 6 * H,
                    Some(Mode::Guardian),
                    "overreaching",
                ));
                l.push((
                    day(a + ramp + plateau) + 6 * H,
                    day(a + ramp + plateau + 4) + 12 * H,
                    None,
                    "overreaching_recovery",
                ));
            }
            Episode::DayStress(n, hour, minutes) => {
                let start = day(n) + (hour * H as f64) as i64;
                l.push((start, start + 10 * M, None, "stress_onset"));
                l.push((
                    start + 10 * M,
                    start + minutes * M,
                    Some(Mode::Reflex),
                    "stress_at_rest",
                ));
                l.push((
                    start + minutes * M,
                    start + minutes * M + 40 * M,
                    None,
                    "stress_resolves",
                ));
            }
            Episode::HrSpike(n, hour) => {
                let t = day(n) + (hour * H as f64) as i64;
                l.push((t - M, t + H, None, "artefact"));
            }
            Episode::HrvSpike(n) => {
                l.push((day(n) + 4 * H, day(n) + 10 * H, None, "artefact"));
            }
            Episode::Gap(..) => {}
        }
    }
    l.sort_by_key(|x| x.0);
    l.into_iter()
        .map(|(from, to, mode, why)| Label {
            from,
            to,
            mode,
            why,
        })
        .collect()
}

fn build(spec: Spec) -> Scenario {
    let mut rng = Rng(spec.seed);
    let samples = measure(&spec, &mut rng);
    let events = deliver(&spec, &samples, &mut rng);
    Scenario {
        name: spec.name.to_string(),
        description: spec.description,
        start: T0,
        end: T0 + spec.days * D,
        labels: labels(&spec),
        events,
    }
}

/// The library, in a fixed order.
pub fn library() -> Vec<Scenario> {
    use Device::*;
    use Episode::*;
    use Workout::*;
    let runs = [(1, Run, 18.3, 45), (3, Run, 7.0, 40), (5, Run, 9.5, 75)];
    let mixed = [
        (0, Strength, 18.4, 55),
        (2, Swim, 7.2, 40),
        (4, Ride, 17.5, 90),
        (6, Run, 10.0, 50),
    ];
    let rides = [(1, Ride, 17.8, 70), (3, Ride, 6.5, 60), (5, Ride, 9.0, 150)];
    let whoop_training = [
        (0, Run, 7.0, 60),
        (1, Ride, 17.0, 90),
        (3, Strength, 18.0, 60),
        (5, Run, 8.0, 100),
    ];
    let mut oura_cycle = Profile::new(Oura, 42.0, 0.065, 57.0);
    oura_cycle.cycle = Some(28);
    let mut apple_cycle = Profile::new(Apple, 38.0, 0.07, 62.0);
    apple_cycle.cycle = Some(30);
    let mut whoop_new = Profile::new(Whoop, 55.0, 0.065, 56.0);
    whoop_new.vendor_calibrating_days = 14;
    let spec = |name, description, seed, profile, days, episodes: Vec<Episode>, delivery| Spec {
        name,
        description,
        seed,
        profile,
        days,
        episodes,
        delivery,
    };
    let n = Delivery::Normal;
    let specs = vec![
        spec(
            "rmssd_typical",
            "Oura, RMSSD 45 ms, typical noise; nothing happens",
            1,
            Profile::new(Oura, 45.0, 0.065, 58.0),
            70,
            vec![],
            n,
        ),
        spec(
            "rmssd_stable",
            "Oura, RMSSD 60 ms, low noise",
            2,
            Profile::new(Oura, 60.0, 0.05, 55.0),
            70,
            vec![],
            n,
        ),
        spec(
            "rmssd_noisy",
            "Oura, RMSSD 35 ms, high noise",
            3,
            Profile::new(Oura, 35.0, 0.08, 61.0),
            70,
            vec![],
            n,
        ),
        spec(
            "rmssd_low_hrv",
            "Oura, RMSSD 18 ms (older, less fit)",
            4,
            Profile::new(Oura, 18.0, 0.07, 66.0),
            70,
            vec![],
            n,
        ),
        spec(
            "rmssd_athlete_whoop",
            "WHOOP, RMSSD 110 ms, resting HR 44, trains 4x a week",
            5,
            Profile::new(Whoop, 110.0, 0.05, 44.0).workouts(&whoop_training),
            70,
            vec![],
            n,
        ),
        spec(
            "sdnn_typical",
            "Apple Watch, SDNN 45 ms, daily walks",
            6,
            Profile::new(Apple, 45.0, 0.07, 60.0),
            56,
            vec![],
            n,
        ),
        spec(
            "sdnn_low_hrv",
            "Apple Watch, SDNN 22 ms, resting HR 66",
            7,
            Profile::new(Apple, 22.0, 0.075, 66.0),
            56,
            vec![],
            n,
        ),
        spec(
            "sdnn_athlete_runs",
            "Apple Watch, SDNN 85 ms, runs 3x a week",
            8,
            Profile::new(Apple, 85.0, 0.055, 46.0).workouts(&runs),
            56,
            vec![],
            n,
        ),
        spec(
            "new_user_rmssd",
            "Oura from the first night, RMSSD 30 ms",
            9,
            Profile::new(Oura, 30.0, 0.07, 63.0),
            21,
            vec![],
            n,
        ),
        spec(
            "new_user_sdnn_low",
            "Apple Watch from the first night, SDNN 24 ms",
            10,
            Profile::new(Apple, 24.0, 0.07, 64.0),
            21,
            vec![],
            n,
        ),
        spec(
            "new_user_whoop_calibrating",
            "WHOOP, vendor calibrating for 14 days with erratic scores",
            11,
            whoop_new,
            28,
            vec![],
            n,
        ),
        spec(
            "menstrual_oura",
            "Oura, 28-day cycles: luteal +0.3 °C, +2 bpm",
            12,
            oura_cycle,
            84,
            vec![],
            n,
        ),
        spec(
            "menstrual_apple",
            "Apple Watch, 30-day cycles, wrist temperature",
            13,
            apple_cycle,
            60,
            vec![],
            n,
        ),
        spec(
            "workouts_runs",
            "Apple Watch, runs with steps, spanning pushes",
            14,
            Profile::new(Apple, 50.0, 0.065, 55.0).workouts(&runs),
            42,
            vec![],
            n,
        ),
        spec(
            "workouts_rides",
            "Apple Watch, rides: heart rate 130-160, no steps",
            15,
            Profile::new(Apple, 55.0, 0.065, 54.0).workouts(&rides),
            42,
            vec![],
            n,
        ),
        spec(
            "workouts_mixed",
            "Apple Watch, strength, swims, rides and runs",
            16,
            Profile::new(Apple, 48.0, 0.065, 57.0).workouts(&mixed),
            42,
            vec![],
            n,
        ),
        spec(
            "crash_nightly_summary",
            "Oura, two acute nights (no heart rate during the night)",
            17,
            Profile::new(Oura, 48.0, 0.065, 56.0),
            60,
            vec![Crash(30), Crash(47)],
            n,
        ),
        spec(
            "crash_intranight_hr",
            "Apple Watch, two acute nights with heart rate through the night",
            18,
            Profile::new(Apple, 42.0, 0.07, 60.0),
            56,
            vec![Crash(28), Crash(44)],
            n,
        ),
        spec(
            "crash_whoop",
            "WHOOP, an acute night with red recovery",
            19,
            Profile::new(Whoop, 70.0, 0.06, 52.0),
            50,
            vec![Crash(35)],
            n,
        ),
        spec(
            "crash_low_hrv",
            "Oura, low-HRV user (RMSSD 22 ms), an acute night",
            20,
            Profile::new(Oura, 22.0, 0.07, 64.0),
            50,
            vec![Crash(33)],
            n,
        ),
        spec(
            "stress_at_rest",
            "Apple Watch, three episodes of stress at rest by day",
            21,
            Profile::new(Apple, 40.0, 0.07, 62.0),
            35,
            vec![
                DayStress(18, 14.2, 35),
                DayStress(24, 10.6, 25),
                DayStress(30, 16.1, 45),
            ],
            n,
        ),
        spec(
            "stress_at_rest_athlete",
            "Apple Watch athlete (runs), stress at rest",
            22,
            Profile::new(Apple, 80.0, 0.055, 47.0).workouts(&runs),
            35,
            vec![DayStress(20, 11.3, 30), DayStress(27, 15.4, 40)],
            n,
        ),
        spec(
            "illness_oura",
            "Oura, a four-night fever",
            23,
            Profile::new(Oura, 50.0, 0.065, 57.0),
            60,
            vec![Illness(35, 4)],
            n,
        ),
        spec(
            "illness_apple",
            "Apple Watch, a three-night illness, wrist temperature",
            24,
            Profile::new(Apple, 40.0, 0.07, 61.0),
            56,
            vec![Illness(32, 3)],
            n,
        ),
        spec(
            "illness_whoop",
            "WHOOP, a four-night illness",
            25,
            Profile::new(Whoop, 65.0, 0.06, 53.0),
            60,
            vec![Illness(38, 4)],
            n,
        ),
        spec(
            "overreaching_athlete",
            "WHOOP athlete, a two-week block, HRV −33 %",
            26,
            Profile::new(Whoop, 100.0, 0.05, 45.0).workouts(&whoop_training),
            75,
            vec![Overreach(40, 7, 10)],
            n,
        ),
        spec(
            "overreaching_oura",
            "Oura, a hard training block",
            27,
            Profile::new(Oura, 65.0, 0.055, 50.0),
            75,
            vec![Overreach(38, 6, 9)],
            n,
        ),
        spec(
            "artefacts",
            "Apple Watch, heart-rate spikes and an absurd HRV reading",
            28,
            Profile::new(Apple, 45.0, 0.07, 59.0),
            42,
            vec![HrSpike(20, 15.2), HrSpike(27, 11.4), HrvSpike(31)],
            n,
        ),
        spec(
            "gaps_oura",
            "Oura, ring off for five days then two",
            29,
            Profile::new(Oura, 45.0, 0.065, 58.0),
            60,
            vec![Gap(25, 5), Gap(44, 2)],
            n,
        ),
        spec(
            "gaps_apple",
            "Apple Watch, watch off for four days",
            30,
            Profile::new(Apple, 45.0, 0.07, 59.0),
            42,
            vec![Gap(20, 4)],
            n,
        ),
        spec(
            "out_of_order_apple",
            "Apple Watch, a fifth of pushes swapped, runs",
            31,
            Profile::new(Apple, 50.0, 0.065, 56.0).workouts(&runs),
            42,
            vec![DayStress(30, 13.3, 35)],
            Delivery::OutOfOrder,
        ),
        spec(
            "out_of_order_oura",
            "Oura, a fifth of nights delivered a day late, one crash",
            32,
            Profile::new(Oura, 45.0, 0.065, 58.0),
            56,
            vec![Crash(40)],
            Delivery::OutOfOrder,
        ),
        spec(
            "duplicates_apple",
            "Apple Watch, every push delivered twice, stress at rest",
            33,
            Profile::new(Apple, 45.0, 0.07, 60.0).workouts(&runs),
            35,
            vec![DayStress(25, 15.0, 30)],
            Delivery::Duplicated,
        ),
        spec(
            "duplicates_oura",
            "Oura, every night delivered twice, an illness",
            34,
            Profile::new(Oura, 45.0, 0.065, 58.0),
            56,
            vec![Illness(40, 3)],
            Delivery::Duplicated,
        ),
    ];
    specs.into_iter().map(build).collect()
}
