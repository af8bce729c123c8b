//! The `auren` command: parses flags and environment into the settings groups each subcommand
//! needs, overlays the settings file, opens the backends through the composition root and runs.

use crate::log::{LoggedRecord, StartAt};
use crate::root::Backends;
use crate::settings::{
    self, BackendSettings, BridgeSettings, DataSettings, LogSettings, MetricsSettings,
    SecretSettings, Settings, StoreSettings, TelemetrySettings, TracesSettings, VendorSettings,
};
use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "auren",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AUREN_GIT_REVISION"), ")"),
    about = "AUREN Bridge: wearable webhooks to cognitive context for AI agents"
)]
struct Cli {
    /// Settings file (YAML, one mapping per group; see `auren config show`). Flags and
    /// environment variables win over it.
    #[arg(long, env = settings::env::CONFIG_FILE, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (webhook ingest API, metrics, and the bridge unless --no-bridge).
    Serve(Box<ServeArgs>),
    /// Manage the log's topics (Kafka, or the embedded log when KAFKA_BOOTSTRAP_SERVERS is unset).
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Manage per-user API keys for HealthKit and Health Auto Export pushes.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Read the event log.
    Log {
        #[command(subcommand)]
        command: LogCommand,
    },
    /// Run the database migrations (PostgreSQL when POSTGRES_URL is set, else SQLite).
    Migrate(MigrateArgs),
    /// Run the bridge alone (instances on Kafka share the consumer group and split partitions).
    Bridge(Box<BridgeArgs>),
    /// Dead-letter topic tools.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// The app's Oura webhook subscriptions.
    Subscriptions {
        #[command(subcommand)]
        command: SubscriptionsCommand,
    },
    /// Send realistic signed traffic for simulated users to a running service.
    Simulate(crate::simulate::SimulateCommand),
    /// Inspect the settings.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run a JSON-lines file of events through the mode engine offline; print the timeline.
    Replay(crate::replay::ReplayArgs),
    /// Tools for a local setup without vendor accounts.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Print a shell completion script (e.g. `auren completions bash > /etc/bash_completion.d/auren`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Run fake WHOOP and Oura APIs (OAuth2 with rotating refresh tokens, data, Oura webhook
    /// subscriptions, signed notifications, seeded history, failure injection under /_fake) on
    /// one local port; point WHOOP_API_BASE_URL / OURA_API_BASE_URL at it.
    FakeVendors(crate::vendors_fake::FakeVendorsArgs),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct ServeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    settings: Settings,
    /// Run ingest only, without the bridge (for separate `auren bridge` instances on Kafka).
    #[arg(long, env = "AUREN_NO_BRIDGE", value_parser = settings::parse_flag, default_value = "0")]
    no_bridge: bool,
}

#[derive(clap::Args, Serialize, Deserialize)]
struct BridgeArgs {
    #[command(flatten)]
    #[serde(flatten)]
    backends: BackendSettings,
    #[command(flatten)]
    bridge: BridgeSettings,
    #[command(flatten)]
    token_key: settings::TokenKeySettings,
    #[command(flatten)]
    metrics: MetricsSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
    #[command(flatten)]
    traces: TracesSettings,
}

#[derive(clap::Args, Serialize, Deserialize)]
struct MigrateArgs {
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    store: StoreSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Send dead-lettered events back through the bridge (each entry once).
    Replay(DlqReplayArgs),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct DlqReplayArgs {
    /// Replay at most this many entries.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    #[serde(flatten)]
    backends: BackendSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(Subcommand)]
enum SubscriptionsCommand {
    /// Create the Oura subscriptions that are missing (every data type we read, create, update
    /// and delete, calling AUREN_PUBLIC_URL/webhooks/oura) and renew those expiring within 14
    /// days. The service must be reachable at AUREN_PUBLIC_URL: Oura calls it to verify.
    Sync(SubscriptionsSyncArgs),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct SubscriptionsSyncArgs {
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    secrets: SecretSettings,
    #[command(flatten)]
    vendors: VendorSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create the events, dead-letter and mode-switch topics.
    Create(TopicsCreateArgs),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct TopicsCreateArgs {
    /// Partitions of each topic: the most bridge instances that can share the work.
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Copies of each partition (Kafka only).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    log: LogSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key for a user. The key is printed once, alone on the last line of stdout.
    Create(KeysCreateArgs),
    /// List a user's keys: id (not the key), created, revoked; tab-separated, oldest first.
    List(KeysListArgs),
    /// Revoke a key by its id (as `keys list` shows it). Running instances refuse it within
    /// AUREN_KEY_CACHE_TTL_SECONDS.
    Revoke(KeysRevokeArgs),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct KeysListArgs {
    /// The user whose keys to list.
    #[arg(long)]
    user: String,
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    store: StoreSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(clap::Args, Serialize, Deserialize)]
struct KeysRevokeArgs {
    /// The key's id: the first 16 hex characters of its hash, as `keys list` shows it.
    key_id: String,
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    store: StoreSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(clap::Args, Serialize, Deserialize)]
struct KeysCreateArgs {
    /// The user the key may push data for.
    #[arg(long)]
    user: String,
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    store: StoreSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print logged records as JSON lines: {topic, partition, offset, key, timestamp_ms, event}.
    Read(LogReadArgs),
    /// Accept the event log in use as the state store's log after the old one was lost or
    /// replaced: forgets every stored offset in the events topic (users' states stay) and
    /// records the log's identity, so the bridge starts again from the log's beginning.
    Adopt(LogAdoptArgs),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct LogAdoptArgs {
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    log: LogSettings,
    #[command(flatten)]
    store: StoreSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(clap::Args, Serialize, Deserialize)]
struct LogReadArgs {
    /// Start at the beginning of the log (else at its end, waiting for new records).
    #[arg(long)]
    from_beginning: bool,
    /// Stop after this many records.
    #[arg(long)]
    limit: Option<usize>,
    /// Keep waiting for new records after reaching the end.
    #[arg(long)]
    follow: bool,
    /// The topic to read (default: the events topic).
    #[arg(long)]
    topic: Option<String>,
    #[command(flatten)]
    data: DataSettings,
    #[command(flatten)]
    log: LogSettings,
    #[command(flatten)]
    telemetry: TelemetrySettings,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective settings as JSON, every secret redacted.
    Show(Box<ConfigShowArgs>),
}

#[derive(clap::Args, Serialize, Deserialize)]
struct ConfigShowArgs {
    #[command(flatten)]
    #[serde(flatten)]
    settings: Settings,
}

/// Flags of a shared settings group that a command takes but has no use for: accepted (and
/// read from the environment) like the others, so a shared environment stays valid, but not
/// listed in its `--help`.
const UNLISTED: [(&str, &str, &[&str]); 3] = [
    ("log", "read", &LOG_UNUSED_BY_READERS),
    ("log", "adopt", &LOG_UNUSED_BY_READERS),
    (
        "topics",
        "create",
        &[
            "log_timeout_ms",
            "kafka_session_timeout_ms",
            "embedded_partitions",
        ],
    ),
];
const LOG_UNUSED_BY_READERS: [&str; 5] = [
    "switches_topic",
    "dlq_topic",
    "embedded_partitions",
    "log_timeout_ms",
    "kafka_session_timeout_ms",
];

/// The command line `auren` parses: the derived commands, with each command's `--help` listing
/// only the flags that concern it.
pub fn command() -> clap::Command {
    UNLISTED
        .iter()
        .fold(Cli::command(), |cmd, &(group, name, ids)| {
            cmd.mut_subcommand(group, |g| {
                g.mut_subcommand(name, |c| {
                    ids.iter().fold(c, |c, id| c.mut_arg(*id, |a| a.hide(true)))
                })
            })
        })
}

/// The matches of the innermost subcommand, where a command's own flags are.
fn leaf(m: &ArgMatches) -> &ArgMatches {
    match m.subcommand() {
        Some((_, sub)) => leaf(sub),
        None => m,
    }
}

pub fn main() -> ExitCode {
    let result = run_cli();
    crate::telemetry::shutdown_tracing();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_cli() -> anyhow::Result<()> {
    let matches = command()
        .try_get_matches()
        .unwrap_or_else(|e| settings::name_the_variable(e, command()).exit());
    let cli = Cli::from_arg_matches(&matches)?;
    let file = cli.config.as_deref().map(settings::read_file).transpose()?;
    let (file, m) = (file.as_ref(), leaf(&matches));
    let rt = tokio::runtime::Runtime::new().context("starting the runtime")?;
    match cli.command {
        Command::Serve(_) => {
            let a: ServeArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing_with_traces(&a.settings.telemetry, &a.settings.traces);
            rt.block_on(crate::app::serve(a.settings, a.no_bridge))
        }
        Command::Bridge(_) => {
            let a: BridgeArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing_with_traces(&a.telemetry, &a.traces);
            let backends = Backends::new(a.backends);
            rt.block_on(crate::app::run_bridge(
                backends,
                &a.bridge,
                a.token_key
                    .token_key
                    .as_deref()
                    .filter(|k| !k.trim().is_empty()),
                a.metrics.metrics_addr,
            ))
        }
        Command::Topics { .. } => {
            let a: TopicsCreateArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            anyhow::ensure!(a.partitions >= 1, "--partitions must be at least 1");
            anyhow::ensure!(
                a.replication_factor >= 1,
                "--replication-factor must be at least 1"
            );
            let backends = backends_of(a.data, Some(a.log), None);
            rt.block_on(async {
                let log = backends.log().await?;
                let topics = backends.settings().log.topics();
                let results = log
                    .create_topics(&topics, a.partitions, a.replication_factor)
                    .await?;
                for (t, created) in results {
                    println!("{t}\t{}", if created { "created" } else { "exists" });
                }
                backends.close().await;
                Ok(())
            })
        }
        Command::Keys {
            command: KeysCommand::List(_),
        } => {
            let a: KeysListArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            auren_core::model::validate_user_id(&a.user).context("--user")?;
            let backends = backends_of(a.data, None, Some(a.store));
            rt.block_on(async {
                let keys = backends.keys().await?.list(&a.user).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "key_id\tcreated_at\trevoked_at")?;
                for k in keys {
                    let revoked = k.revoked_at.map_or("-".to_string(), |t| t.to_rfc3339());
                    writeln!(
                        out,
                        "{}\t{}\t{revoked}",
                        k.key_id,
                        k.created_at.to_rfc3339()
                    )?;
                }
                Ok(())
            })
        }
        Command::Keys {
            command: KeysCommand::Revoke(_),
        } => {
            let a: KeysRevokeArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            anyhow::ensure!(
                crate::store::valid_key_id(&a.key_id),
                "KEY_ID must be {} lower-case hex characters, as `auren keys list` shows it",
                crate::store::KEY_ID_LEN
            );
            let backends = backends_of(a.data, None, Some(a.store));
            rt.block_on(async {
                use crate::store::Revocation;
                match backends.keys().await?.revoke(&a.key_id).await? {
                    Revocation::Revoked(k) => println!(
                        "revoked {} at {}; running instances refuse it within their key cache TTL (AUREN_KEY_CACHE_TTL_SECONDS)",
                        k.key_id,
                        k.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                    ),
                    Revocation::AlreadyRevoked(k) => println!(
                        "{} was already revoked at {}",
                        k.key_id,
                        k.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default()
                    ),
                    Revocation::NotFound => anyhow::bail!("no key has the id {}", a.key_id),
                    Revocation::Ambiguous => {
                        anyhow::bail!("more than one key has the id {}; none was revoked", a.key_id)
                    }
                }
                Ok(())
            })
        }
        Command::Keys {
            command: KeysCommand::Create(_),
        } => {
            let a: KeysCreateArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            auren_core::model::validate_user_id(&a.user).context("--user")?;
            let backends = backends_of(a.data, None, Some(a.store));
            rt.block_on(async {
                let store = backends.keys().await?;
                let key = crate::store::issue_key(store.as_ref(), &a.user).await?;
                eprintln!("Issued a key. It is shown once and stored only hashed:");
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", key.0)?;
                Ok(())
            })
        }
        Command::Log {
            command: LogCommand::Adopt(_),
        } => {
            let a: LogAdoptArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            let topic = a.log.events_topic.clone();
            let backends = backends_of(a.data, Some(a.log), Some(a.store));
            rt.block_on(async {
                let identity = backends.log().await?.identity().await?;
                backends
                    .state_store()
                    .await?
                    .adopt_log(&topic, &identity, true)
                    .await?;
                backends.close().await;
                println!("adopted {identity} for {topic}; stored offsets forgotten");
                Ok(())
            })
        }
        Command::Log {
            command: LogCommand::Read(_),
        } => {
            let a: LogReadArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            let topic = a
                .topic
                .clone()
                .unwrap_or_else(|| a.log.events_topic.clone());
            let from = if a.from_beginning {
                StartAt::Beginning
            } else {
                StartAt::End
            };
            // Reading from the end has nothing to show but what comes next: it waits.
            let follow = a.follow || !a.from_beginning;
            let backends = backends_of(a.data, Some(a.log), None);
            rt.block_on(read_log(&backends, &topic, from, follow, a.limit))
        }
        Command::Migrate(_) => {
            let a: MigrateArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            let backends = backends_of(a.data, None, Some(a.store));
            rt.block_on(async {
                let store = backends.keys().await?;
                println!("migrations applied ({})", store.backend());
                Ok(())
            })
        }
        Command::Subscriptions { .. } => {
            let a: SubscriptionsSyncArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            let secrets = a.secrets.resolve(&a.data.data_dir)?;
            rt.block_on(async {
                let lines = crate::connect::subscriptions::sync(&a.vendors, &secrets).await?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "event_type\tdata_type\toutcome")?;
                for l in &lines {
                    writeln!(out, "{}\t{}\t{}", l.event_type, l.data_type, l.outcome)?;
                }
                let failed = lines
                    .iter()
                    .filter(|l| l.outcome.starts_with("failed"))
                    .count();
                anyhow::ensure!(
                    failed == 0,
                    "{failed} subscriptions could not be made or renewed"
                );
                Ok(())
            })
        }
        Command::Dlq { .. } => {
            let a: DlqReplayArgs = settings::resolve(m, file)?;
            crate::telemetry::init_tracing(&a.telemetry);
            let backends = Backends::new(a.backends);
            rt.block_on(async {
                let r = crate::dlq::replay(&backends, a.limit).await?;
                backends.close().await;
                println!(
                    "replayed {} dead-lettered events into {}",
                    r.replayed,
                    backends.settings().log.events_topic
                );
                if r.unreadable > 0 {
                    println!(
                        "passed over {} entries that are not readable dead letters (see the log)",
                        r.unreadable
                    );
                }
                Ok(())
            })
        }
        Command::Simulate(c) => {
            crate::telemetry::init_tracing(&c.args.telemetry);
            rt.block_on(crate::simulate::run_command(c))
        }
        Command::Config { .. } => {
            let a: ConfigShowArgs = settings::resolve(m, file)?;
            println!("{}", serde_json::to_string_pretty(&a.settings.redacted())?);
            Ok(())
        }
        Command::Replay(args) => crate::replay::run(args),
        Command::Dev {
            command: DevCommand::FakeVendors(args),
        } => rt.block_on(crate::vendors_fake::run(args)),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "auren", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// A root over the given groups; the others keep their defaults and are never opened.
fn backends_of(
    data: DataSettings,
    log: Option<LogSettings>,
    store: Option<StoreSettings>,
) -> Backends {
    let d = settings::defaults::<BackendSettings>();
    Backends::new(BackendSettings {
        data,
        log: log.unwrap_or(d.log),
        store: store.unwrap_or(d.store),
        cache: d.cache,
    })
}

fn print_record(out: &mut impl Write, r: LoggedRecord) -> anyhow::Result<()> {
    let event: serde_json::Value = serde_json::from_slice(&r.value).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(&r.value).into_owned())
    });
    let mut line = serde_json::to_value(&r)?;
    line["event"] = event;
    writeln!(out, "{line}")?;
    Ok(())
}

async fn read_log(
    backends: &Backends,
    topic: &str,
    from: StartAt,
    follow: bool,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let log = backends.log().await?;
    if follow {
        // Said on stderr, so stdout stays JSON lines only.
        eprintln!(
            "waiting for new records in {topic} (Ctrl-C stops){}",
            if from == StartAt::End {
                "; --from-beginning reads what is already there"
            } else {
                ""
            }
        );
    }
    let records = log.read(topic, from, follow);
    let mut records = match limit {
        Some(l) => records.take(l).boxed(),
        None => records,
    };
    let stdout = std::io::stdout();
    while let Some(r) = records.next().await {
        let r = match r {
            // A topic nothing was ever written to holds no records: an empty read, as
            // `dlq replay` reports 0, not an error.
            Err(crate::log::LogError::UnknownTopic(t)) => {
                eprintln!("{t}: nothing was ever written to this topic");
                return Ok(());
            }
            r => r?,
        };
        let mut out = stdout.lock();
        print_record(&mut out, r)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own consistency checks over every subcommand: no two args share an id, every
    /// default parses, and so on. A mistake here would otherwise surface only when run.
    #[test]
    fn the_command_line_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn commands_take_only_the_groups_they_need() {
        let cmd = Cli::command();
        let flags = |path: &[&str]| -> Vec<String> {
            let mut c = &cmd;
            for p in path {
                c = c.find_subcommand(p).unwrap();
            }
            c.get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        };
        let keys = flags(&["keys", "create"]);
        assert!(keys.contains(&"postgres-url".to_string()));
        for unrelated in [
            "kafka-bootstrap-servers",
            "redis-url",
            "http-addr",
            "metrics-addr",
        ] {
            assert!(
                !keys.contains(&unrelated.to_string()),
                "keys create has --{unrelated}"
            );
        }
        let read = flags(&["log", "read"]);
        assert!(read.contains(&"kafka-bootstrap-servers".to_string()));
        assert!(!read.contains(&"postgres-url".to_string()));
        assert!(flags(&["serve"]).contains(&"oura-client-secret".to_string()));
        assert!(!flags(&["bridge"]).contains(&"oura-client-secret".to_string()));
    }
}
