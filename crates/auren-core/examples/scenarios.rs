//! Writes the labelled scenario library: `DIR/<name>.jsonl` (events in delivery order, as the log
//! carries them; `auren replay` reads them) and `DIR/index.json` (names, descriptions, labels).
//! Run: `cargo run -p auren-core --example scenarios -- scenarios` (index only: add `--index-only`).

use auren_core::scenarios::library;
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "scenarios".into()));
    let index_only = args.any(|a| a == "--index-only");
    std::fs::create_dir_all(&dir)?;
    let lib = library();
    let mut index = vec![];
    for sc in &lib {
        if !index_only {
            let mut f = std::io::BufWriter::new(std::fs::File::create(
                dir.join(format!("{}.jsonl", sc.name)),
            )?);
            for e in &sc.events {
                writeln!(f, "{}", serde_json::to_string(e)?)?;
            }
        }
        index.push(serde_json::json!({
            "name": sc.name,
            "description": sc.description,
            "events": sc.events.len(),
            "start": chrono::DateTime::from_timestamp(sc.start, 0),
            "end": chrono::DateTime::from_timestamp(sc.end, 0),
            "labels": sc.labels.iter().map(|l| serde_json::json!({
                "from": chrono::DateTime::from_timestamp(l.from, 0),
                "to": chrono::DateTime::from_timestamp(l.to, 0),
                "mode": l.mode.map(|m| m.as_str()).unwrap_or("not scored"),
                "why": l.why,
            })).collect::<Vec<_>>(),
            "default": "PATTERN",
        }));
    }
    std::fs::write(
        dir.join("index.json"),
        serde_json::to_string_pretty(&index)? + "\n",
    )?;
    println!("{} scenarios written to {}", lib.len(), dir.display());
    Ok(())
}
