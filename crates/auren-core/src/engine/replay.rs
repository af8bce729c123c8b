//! Offline replay: a JSON-lines file of events through the engine, and the mode timeline it gives.
//!
//! Each line is either a [`BiometricEvent`] as the log carries it, or a HealthKit push as our iOS
//! app sends it (`{user_id, samples:[…]}`, or a batch), read by the same parser as the webhook.
//! A push may carry `"received_at"` (RFC 3339); without it the push counts as received at its
//! newest sample. Nothing here does IO: the caller hands in the text, so `auren replay FILE`, the
//! scenario library and tests share one path and decide exactly as the bridge would.

use super::config::EngineConfig;
use super::{Mode, ModeSwitch, Reason, UserState};
use crate::ingest::sample_event;
use crate::model::{BiometricEvent, Vendor};
use crate::pseudonym::Pseudonymizer;
use crate::vendors::healthkit;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {problem}")]
    Line { line: usize, problem: String },
}

/// Pseudonyms in a replay are keyed with a fixed, public key: a replay file is test data, and the
/// same file must give the same pseudonyms (and switch ids) on every machine.
const REPLAY_KEY: &[u8] = b"auren-replay-pseudonym-key";

/// Reads the events of a JSON-lines text, in file order.
pub fn parse_lines(text: &str) -> Result<Vec<BiometricEvent>, ReplayError> {
    let p = Pseudonymizer::new(REPLAY_KEY).map_err(|e| ReplayError::Line {
        line: 0,
        problem: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |problem: String| ReplayError::Line {
            line: i + 1,
            problem,
        };
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| err(format!("not JSON: {e}")))?;
        if v.get("payload").is_some() {
            let e: BiometricEvent = serde_json::from_value(v)
                .map_err(|e| err(format!("not a biometric event: {e}")))?;
            out.push(e);
            continue;
        }
        let received: Option<DateTime<Utc>> = match v.get("received_at").and_then(|r| r.as_str()) {
            Some(s) => Some(
                s.parse()
                    .map_err(|_| err("received_at is not RFC 3339".into()))?,
            ),
            None => None,
        };
        // Offline, a file may hold years-old history: only the time limits relative to when the
        // push was received (or now) apply, widened to a century back.
        let limits = crate::ingest::IngestLimits {
            max_age: chrono::TimeDelta::days(36_500),
            ..Default::default()
        };
        let now = received.unwrap_or_else(Utc::now);
        let pushes = healthkit::parse(line.as_bytes(), &limits, now)
            .map_err(|e| err(format!("not a push: {e}")))?;
        for push in pushes {
            let at = received.unwrap_or_else(|| {
                push.parsed
                    .samples
                    .iter()
                    .map(|s| s.occurred_at)
                    .max()
                    .unwrap_or_default()
            });
            for s in &push.parsed.samples {
                out.push(sample_event(Vendor::Healthkit, &push.user_id, s, &p, at));
            }
        }
    }
    Ok(out)
}

/// One switch on the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub user_pseudonym: String,
    /// Event time of the event that switched.
    pub at: DateTime<Utc>,
    pub from: Mode,
    pub to: Mode,
    pub confidence: f64,
    pub calibrating: bool,
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Replay {
    pub events: usize,
    pub applied: usize,
    pub duplicates: usize,
    pub refused: usize,
    pub artefacts: usize,
    pub timeline: Vec<Entry>,
    /// Each user's mode at the end.
    pub final_modes: BTreeMap<String, Mode>,
}

/// Runs `events` in order through fresh per-user states.
pub fn run(cfg: &EngineConfig, events: &[BiometricEvent]) -> Replay {
    let mut users: BTreeMap<String, UserState> = BTreeMap::new();
    let mut r = Replay {
        events: events.len(),
        ..Replay::default()
    };
    for e in events {
        let p = &e.subject.pseudonym;
        let s = users.entry(p.clone()).or_default();
        let out = s.apply(cfg, p, e);
        r.applied += usize::from(out.applied);
        r.duplicates += usize::from(out.duplicate);
        r.refused += usize::from(out.refused);
        r.artefacts += usize::from(out.artefact);
        if let Some(ModeSwitch {
            from,
            to,
            at,
            confidence,
            reasons,
            calibrating,
            ..
        }) = out.switch
        {
            r.timeline.push(Entry {
                user_pseudonym: p.clone(),
                at,
                from,
                to,
                confidence,
                calibrating,
                reasons,
            });
        }
    }
    r.final_modes = users.into_iter().map(|(k, v)| (k, v.mode)).collect();
    r
}

/// The timeline as text, one switch a line with its reasons.
pub fn render_text(r: &Replay) -> String {
    let mut s = String::new();
    for e in &r.timeline {
        let _ = write!(
            s,
            "{}  {}  {} -> {}  confidence {:.2}{}  ",
            e.at.format("%Y-%m-%dT%H:%M:%SZ"),
            e.user_pseudonym,
            e.from,
            e.to,
            e.confidence,
            if e.calibrating { " (calibrating)" } else { "" },
        );
        let reasons: Vec<String> = e
            .reasons
            .iter()
            .map(|x| {
                let mut t = x.rule.to_string();
                if let Some(m) = x.metric {
                    let _ = write!(t, " {m}={}", x.value);
                } else {
                    let _ = write!(t, " {}", x.value);
                }
                if let Some(b) = x.baseline {
                    let _ = write!(t, " baseline={b}");
                }
                let _ = write!(t, " threshold={}", x.threshold);
                t
            })
            .collect();
        s.push_str(&reasons.join("; "));
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "{} events: {} applied, {} duplicates, {} refused, {} artefacts; {} switches",
        r.events,
        r.applied,
        r.duplicates,
        r.refused,
        r.artefacts,
        r.timeline.len()
    );
    for (u, m) in &r.final_modes {
        let _ = writeln!(s, "final  {u}  {m}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_and_events_replay_alike_and_bad_lines_say_where() {
        let mut text = String::new();
        for i in 0..3 {
            text.push_str(&format!(
                "{{\"user_id\":\"u1\",\"samples\":[{{\"type\":\"heartRate\",\"value\":112,\"timestamp\":\"2025-03-01T15:0{i}:00Z\",\"source\":\"Apple Watch\"}}]}}\n"
            ));
        }
        let events = parse_lines(&text).unwrap();
        assert_eq!(events.len(), 3);
        let cfg = EngineConfig::default();
        let a = run(&cfg, &events);
        assert_eq!(a.timeline.len(), 1);
        assert_eq!(a.timeline[0].to, Mode::Reflex);
        assert_eq!(
            a.timeline[0].at,
            "2025-03-01T15:01:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // The same events as log lines give the same timeline.
        let lines: String = events
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect();
        let b = run(&cfg, &parse_lines(&lines).unwrap());
        assert_eq!(a, b);
        assert!(render_text(&a).contains("PATTERN -> REFLEX"));
        assert!(render_text(&a).contains("heart_rate_elevated heart_rate=112"));

        let e = parse_lines("\n{\"nope\": 1}\n").unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        assert!(parse_lines("{not json").is_err());
    }
}
