//! `auren replay FILE`: a JSON-lines file of events (log events or HealthKit pushes) through the
//! engine offline, printing the mode timeline with its reasons. The work is
//! `auren_core::engine::replay`; this is the file and the output format.

use anyhow::Context;
use auren_core::engine::replay;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// JSON lines: BiometricEvent objects as `auren log read` prints under "event", or HealthKit
    /// pushes ({user_id, samples}); `-` reads standard input.
    pub file: PathBuf,
    /// `text`: the timeline with its reasons, for a person; `json`: the whole result as one
    /// JSON document, for a program.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub thresholds: crate::settings::ThresholdsSettings,
}

pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    // The thresholds in force for the service, validated the same way.
    let cfg =
        crate::reload::ConfigHandle::load(args.thresholds.biometric_config.clone())?.current();
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let events = replay::parse_lines(&text)?;
    let r = replay::run(&cfg, &events);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Text => out.write_all(replay::render_text(&r).as_bytes())?,
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
    }
    Ok(())
}
