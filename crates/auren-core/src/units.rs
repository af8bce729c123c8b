//! Conversion of vendor-supplied units into each metric's canonical unit.
//!
//! Health Auto Export and HealthKit report the same metric in different units depending on the
//! phone's locale and app version (`bpm` or `count/min`, `degF` or `degC`, SpO2 as 97 or 0.97).
//! The unit string is parsed, never assumed; an unknown unit is an error, not a guess.

use crate::model::{Metric, Unit};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("unit '{unit}' is not a unit of {metric}")]
    Unknown { unit: String, metric: Metric },
    #[error("value is not a finite number")]
    NotFinite,
    #[error("{metric} value {} {unit} is outside the plausible range {lo}..={hi}", Short(*.value))]
    OutOfRange {
        metric: Metric,
        value: f64,
        unit: &'static str,
        lo: f64,
        hi: f64,
    },
}

/// A number as a few characters: `f64`'s `Display` writes 1e300 as 301 digits, and the value
/// is client input echoed in the answer. Found by the `health_auto_export_normalise` fuzz target.
struct Short(f64);

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = self.0;
        if v == 0.0 || (1e-6..1e9).contains(&v.abs()) {
            write!(f, "{v}")
        } else {
            write!(f, "{v:e}")
        }
    }
}

impl UnitError {
    pub fn reason(&self) -> &'static str {
        match self {
            UnitError::Unknown { .. } => "unknown_unit",
            UnitError::NotFinite => "not_a_number",
            UnitError::OutOfRange { .. } => "out_of_range",
        }
    }
}

/// Longest unit string looked at; the longest known one (`ml/(kg.min)` spelled out) is far
/// shorter.
const MAX_UNIT_BYTES: usize = 32;

/// Converts `value` given in `unit` (None: the canonical unit) into `metric`'s canonical unit,
/// then checks it against the metric's plausible range.
pub fn normalise(metric: Metric, value: f64, unit: Option<&str>) -> Result<f64, UnitError> {
    if !value.is_finite() {
        return Err(UnitError::NotFinite);
    }
    let converted = convert(metric, value, unit)?;
    let (lo, hi) = metric.plausible_range();
    if !(lo..=hi).contains(&converted) {
        return Err(UnitError::OutOfRange {
            metric,
            value: converted,
            unit: metric.unit().ucum(),
            lo,
            hi,
        });
    }
    Ok(converted)
}

fn convert(metric: Metric, value: f64, unit: Option<&str>) -> Result<f64, UnitError> {
    let raw = unit.map(str::trim).unwrap_or("");
    // No unit we know is longer; a longer one need not be lower-cased to be refused.
    if raw.len() > MAX_UNIT_BYTES {
        return Err(UnitError::Unknown {
            unit: crate::vendors::clip(raw, crate::vendors::MAX_ECHO_CHARS),
            metric,
        });
    }
    // Apple writes kilocalories as "Cal"; a lower-case "cal" is a small calorie.
    if raw == "Cal" && metric.unit() == Unit::Kilocalorie {
        return Ok(value);
    }
    let u: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase()
        .replace(['·', '*'], ".");
    // The unit is client text and ends up in the answer: cut it.
    let unknown = || UnitError::Unknown {
        unit: crate::vendors::clip(raw, crate::vendors::MAX_ECHO_CHARS),
        metric,
    };
    let factor = match metric.unit() {
        Unit::PerMinute => match u.as_str() {
            "" | "count/min" | "bpm" | "beats/min" | "/min" | "breaths/min" | "{beats}/min"
            | "{breaths}/min" | "1/min" => 1.0,
            "count/s" | "hz" | "/s" => 60.0,
            _ => return Err(unknown()),
        },
        Unit::Millisecond => match u.as_str() {
            "" | "ms" => 1.0,
            "s" => 1000.0,
            _ => return Err(unknown()),
        },
        Unit::Percent => match u.as_str() {
            // HealthKit's percent is a fraction 0.0-1.0, and exports show both forms under "%":
            // a plausible saturation is never at or below 1 %, so such a value is a fraction.
            "" | "%" | "percent" | "fraction" => {
                return Ok(if value > 0.0 && value <= 1.0 {
                    value * 100.0
                } else {
                    value
                });
            }
            _ => return Err(unknown()),
        },
        Unit::Celsius => match u.as_str() {
            "" | "degc" | "°c" | "c" | "cel" | "celsius" => 1.0,
            "degf" | "°f" | "f" | "[degf]" | "fahrenheit" => {
                return Ok(if metric == Metric::TemperatureDeviation {
                    value * 5.0 / 9.0
                } else {
                    (value - 32.0) * 5.0 / 9.0
                });
            }
            _ => return Err(unknown()),
        },
        Unit::Steps | Unit::Count => match u.as_str() {
            "" | "count" | "steps" | "{steps}" | "{count}" | "1" | "flights" => 1.0,
            _ => return Err(unknown()),
        },
        Unit::Kilocalorie => match u.as_str() {
            "" | "kcal" => 1.0,
            "kj" => 1.0 / 4.184,
            "cal" => 1.0 / 1000.0,
            _ => return Err(unknown()),
        },
        Unit::Metre => match u.as_str() {
            "" | "m" => 1.0,
            "km" => 1000.0,
            "mi" => 1609.344,
            "ft" => 0.3048,
            "yd" => 0.9144,
            "cm" => 0.01,
            _ => return Err(unknown()),
        },
        Unit::Kilogram => match u.as_str() {
            "" | "kg" => 1.0,
            "lb" | "lbs" | "[lb_av]" => 0.453_592_37,
            "g" => 0.001,
            "st" => 6.350_293_18,
            _ => return Err(unknown()),
        },
        Unit::MlPerKgMin => match u.as_str() {
            "" | "ml/(kg.min)" | "ml/kg/min" | "ml/kg.min" | "ml/(min.kg)" | "ml/min/kg" => 1.0,
            _ => return Err(unknown()),
        },
        Unit::MillimetreMercury => match u.as_str() {
            "" | "mmhg" | "mm[hg]" => 1.0,
            _ => return Err(unknown()),
        },
        Unit::Minute => match u.as_str() {
            "" | "min" => 1.0,
            "h" | "hr" | "hours" => 60.0,
            "s" => 1.0 / 60.0,
            _ => return Err(unknown()),
        },
        Unit::Score => match u.as_str() {
            "" | "1" | "%" | "score" => 1.0,
            _ => return Err(unknown()),
        },
    };
    Ok(value * factor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn table_of_unit_variants() {
        let cases: &[(Metric, f64, Option<&str>, f64)] = &[
            (Metric::HeartRate, 72.0, Some("bpm"), 72.0),
            (Metric::HeartRate, 72.0, Some("count/min"), 72.0),
            (Metric::HeartRate, 1.2, Some("count/s"), 72.0),
            (Metric::RespiratoryRate, 15.0, Some("breaths/min"), 15.0),
            (Metric::HrvSdnn, 0.045, Some("s"), 45.0),
            (Metric::OxygenSaturation, 0.97, Some("%"), 97.0),
            (Metric::OxygenSaturation, 97.0, Some("%"), 97.0),
            (Metric::OxygenSaturation, 0.97, None, 97.0),
            (Metric::BodyTemperature, 98.6, Some("degF"), 37.0),
            (Metric::BodyTemperature, 36.6, Some("degC"), 36.6),
            (Metric::TemperatureDeviation, 0.9, Some("degF"), 0.5),
            (Metric::ActiveEnergy, 418.4, Some("kJ"), 100.0),
            (Metric::ActiveEnergy, 100.0, Some("Cal"), 100.0),
            (Metric::ActiveEnergy, 100_000.0, Some("cal"), 100.0),
            (Metric::Distance, 1.0, Some("mi"), 1609.344),
            (Metric::Distance, 2.5, Some("km"), 2500.0),
            (Metric::BodyMass, 150.0, Some("lb"), 68.038_855_5),
            (Metric::Vo2Max, 45.0, Some("ml/(kg·min)"), 45.0),
            (Metric::BloodPressureSystolic, 120.0, Some("mmHg"), 120.0),
            (Metric::SleepTotal, 7.5, Some("hr"), 450.0),
            (Metric::Steps, 1000.0, Some("count"), 1000.0),
        ];
        for (m, v, u, want) in cases {
            let got = normalise(*m, *v, *u).unwrap_or_else(|e| panic!("{m} {v} {u:?}: {e}"));
            assert!(
                (got - want).abs() < 1e-6,
                "{m} {v} {u:?}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn refuses_unknown_units_and_implausible_values() {
        assert!(matches!(
            normalise(Metric::HeartRate, 72.0, Some("furlongs")),
            Err(UnitError::Unknown { .. })
        ));
        // 98.6 with no unit is not silently taken for Fahrenheit.
        assert!(matches!(
            normalise(Metric::BodyTemperature, 98.6, None),
            Err(UnitError::OutOfRange { .. })
        ));
        assert!(matches!(
            normalise(Metric::HeartRate, 400.0, None),
            Err(UnitError::OutOfRange { .. })
        ));
        assert!(matches!(
            normalise(Metric::HrvSdnn, -3.0, Some("ms")),
            Err(UnitError::OutOfRange { .. })
        ));
        assert_eq!(
            normalise(Metric::HeartRate, f64::NAN, None),
            Err(UnitError::NotFinite)
        );
        assert!(normalise(Metric::TemperatureDeviation, -0.4, Some("degC")).is_ok());
    }

    #[test]
    fn out_of_range_values_are_written_short() {
        for (v, shown) in [
            (6.538_675_761_320_285e295, "6.538675761320285e295"),
            (-1e300, "-1e300"),
            (1e-300, "1e-300"),
            (400.0, "400"),
            (0.5, "0.5"),
        ] {
            let e = normalise(Metric::HeartRate, v, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("value {shown} /min")), "{e}");
            assert!(e.len() < 100, "{e}");
        }
    }

    #[test]
    fn an_unknown_unit_is_echoed_cut() {
        let long = "x".repeat(1_000_000);
        let e = normalise(Metric::HeartRate, 72.0, Some(&long)).unwrap_err();
        assert_eq!(e.reason(), "unknown_unit");
        assert!(e.to_string().len() < 200, "{}", e.to_string().len());
        let e = normalise(Metric::HeartRate, 72.0, Some("furlongs")).unwrap_err();
        assert_eq!(e.to_string(), "unit 'furlongs' is not a unit of heart_rate");
    }

    proptest! {
        #[test]
        fn normalised_values_are_always_in_range(v in proptest::num::f64::ANY, i in 0usize..Metric::ALL.len()) {
            let m = Metric::ALL[i];
            if let Ok(x) = normalise(m, v, None) {
                let (lo, hi) = m.plausible_range();
                prop_assert!(x.is_finite() && x >= lo && x <= hi);
            }
        }
    }
}
