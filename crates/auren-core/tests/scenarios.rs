//! The engine against two reference methods on the labelled scenario library (docs/physiology.md).
//! Run: `cargo test -p auren-core --release --test scenarios -- --nocapture`.

use auren_core::engine::config::EngineConfig;
use auren_core::scenarios::reference::{Engine, Hrv4Training, Method, SeedLiteral};
use auren_core::scenarios::score::{score, Figures};
use auren_core::scenarios::{library, Scenario};

fn table(figs: &[Figures]) -> String {
    let mut s =
        String::from("| method | agreement | REFLEX on normal days | flaps |\n|---|---|---|---|\n");
    for f in figs {
        s.push_str(&format!(
            "| {} | {:.1} % ({}/{}) | {:.2} % ({}/{}) | {} |\n",
            f.method,
            100.0 * f.agreement(),
            f.agree,
            f.scored,
            100.0 * f.false_reflex_rate(),
            f.reflex_normal_days,
            f.normal_days,
            f.flaps
        ));
    }
    s
}

#[test]
fn the_engine_beats_both_references_on_every_figure() {
    let cfg = EngineConfig::default();
    let lib: Vec<Scenario> = library();
    assert!(lib.len() >= 30, "{} scenarios", lib.len());
    let methods: [&dyn Method; 3] = [&Engine, &SeedLiteral, &Hrv4Training];
    let figs: Vec<Figures> = methods.iter().map(|m| score(*m, &cfg, &lib)).collect();
    println!("{}", table(&figs));
    println!("| scenario | engine | seed_literal | hrv4training |\n|---|---|---|---|");
    for i in 0..lib.len() {
        println!(
            "| {} | {:.1} % | {:.1} % | {:.1} % |",
            figs[0].per_scenario[i].0,
            100.0 * figs[0].per_scenario[i].1,
            100.0 * figs[1].per_scenario[i].1,
            100.0 * figs[2].per_scenario[i].1
        );
    }
    let (e, refs) = (&figs[0], &figs[1..]);
    assert!(e.agreement() >= 0.95, "agreement {:.3}", e.agreement());
    assert!(
        e.false_reflex_rate() <= 0.01,
        "REFLEX on {:.2} % of normal days",
        100.0 * e.false_reflex_rate()
    );
    assert_eq!(e.flaps, 0, "flaps");
    for r in refs {
        assert!(e.agreement() > r.agreement(), "agreement vs {}", r.method);
        assert!(
            e.false_reflex_rate() <= r.false_reflex_rate(),
            "false REFLEX vs {}",
            r.method
        );
        assert!(e.flaps <= r.flaps, "flaps vs {}", r.method);
    }
}

#[test]
fn the_library_is_deterministic_and_labelled_sanely() {
    let a = library();
    let b = library();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.events, y.events, "{}", x.name);
        assert_eq!(x.labels, y.labels, "{}", x.name);
        assert!(!x.events.is_empty(), "{}", x.name);
        for w in x.labels.windows(2) {
            assert!(w[0].to <= w[1].from, "{}: overlapping labels", x.name);
        }
    }
}
