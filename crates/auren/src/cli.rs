//! The `auren` command.

use crate::config::{BackendArgs, ServiceArgs};
use crate::log::{embedded::EmbeddedLog, embedded::EmbeddedReader, kafka, topics, LoggedRecord};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "auren",
    version,
    about = "AUREN Bridge: wearable webhooks to cognitive context for AI agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (webhook ingest API and metrics).
    Serve(Box<ServiceArgs>),
    /// Manage Kafka topics (or the embedded log's topics when KAFKA_BOOTSTRAP_SERVERS is unset).
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
    Migrate(BackendArgs),
    /// Run the bridge alone (instances on Kafka share the consumer group and split partitions).
    Bridge(Box<BridgeCommand>),
    /// Dead-letter topic tools.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Send realistic signed traffic for simulated users to a running service.
    Simulate(crate::simulate::SimulateArgs),
    /// Run a JSON-lines file of events through the mode engine offline; print the timeline.
    Replay(crate::replay::ReplayArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct BridgeCommand {
    #[command(flatten)]
    pub backends: BackendArgs,
    #[command(flatten)]
    pub bridge: crate::bridge::BridgeArgs,
    /// The thresholds YAML.
    #[arg(long, env = "BIOMETRIC_CONFIG")]
    pub biometric_config: Option<std::path::PathBuf>,
    #[arg(long, env = "AUREN_METRICS_ADDR", default_value = "0.0.0.0:9000")]
    pub metrics_addr: std::net::SocketAddr,
    #[arg(long, env = "AUREN_LOG_TIMEOUT_MS", default_value_t = 5000)]
    pub log_timeout_ms: u64,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// Send dead-lettered events back through the bridge (each entry once).
    Replay {
        /// Replay at most this many entries.
        #[arg(long)]
        limit: Option<usize>,
        #[command(flatten)]
        backends: BackendArgs,
        #[arg(long, env = "AUREN_DLQ_TOPIC", default_value = topics::DLQ)]
        dlq_topic: String,
    },
}

#[derive(Subcommand)]
enum TopicsCommand {
    /// Create biometric-events, biometric-events.dlq and cognitive-mode-switches.
    Create {
        #[arg(long, default_value_t = 3)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        #[command(flatten)]
        backends: BackendArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a key for a user. The key is printed once, alone on the last line of stdout.
    Create {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        backends: BackendArgs,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Print logged events as JSON lines: {topic, partition, offset, key, timestamp_ms, event}.
    Read {
        /// Start at the beginning of the log (else at its end, waiting for new events).
        #[arg(long)]
        from_beginning: bool,
        /// Stop after this many events.
        #[arg(long)]
        limit: Option<usize>,
        /// Keep waiting for new events after reaching the end.
        #[arg(long)]
        follow: bool,
        #[arg(long, default_value = topics::EVENTS)]
        topic: String,
        #[command(flatten)]
        backends: BackendArgs,
    },
}

pub fn main() -> ExitCode {
    crate::telemetry::init_tracing();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => crate::app::serve(*args).await,
        Command::Topics {
            command:
                TopicsCommand::Create {
                    partitions,
                    replication_factor,
                    backends,
                },
        } => {
            anyhow::ensure!(partitions >= 1, "--partitions must be at least 1");
            anyhow::ensure!(
                replication_factor >= 1,
                "--replication-factor must be at least 1"
            );
            let results = match &backends.kafka_bootstrap_servers {
                Some(servers) => {
                    kafka::create_topics(servers, &topics::ALL, partitions, replication_factor)
                        .await?
                }
                None => topics::ALL
                    .iter()
                    .map(|t| {
                        Ok((
                            t.to_string(),
                            EmbeddedLog::create_topic(&backends.data_dir, t, partitions as u32)?,
                        ))
                    })
                    .collect::<anyhow::Result<_>>()?,
            };
            for (t, created) in results {
                println!("{t}\t{}", if created { "created" } else { "exists" });
            }
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Create { user, backends },
        } => {
            anyhow::ensure!(!user.trim().is_empty(), "--user must not be empty");
            let store = crate::app::key_store(&backends).await?;
            let key = crate::store::issue_key(store.as_ref(), &user).await?;
            eprintln!("Issued a key. It is shown once and stored only hashed:");
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", key.0)?;
            Ok(())
        }
        Command::Log {
            command:
                LogCommand::Read {
                    from_beginning,
                    limit,
                    follow,
                    topic,
                    backends,
                },
        } => {
            tokio::task::spawn_blocking(move || {
                read_log(&backends, &topic, from_beginning, follow, limit)
            })
            .await?
        }
        Command::Migrate(backends) => {
            let store = crate::app::key_store(&backends).await?;
            println!("migrations applied ({})", store.backend());
            Ok(())
        }
        Command::Bridge(args) => crate::app::run_bridge(*args).await,
        Command::Dlq {
            command:
                DlqCommand::Replay {
                    limit,
                    backends,
                    dlq_topic,
                },
        } => {
            let n = crate::dlq::replay(&backends, &dlq_topic, limit).await?;
            println!(
                "replayed {n} dead-lettered events into {}",
                backends.events_topic
            );
            Ok(())
        }
        Command::Simulate(args) => crate::simulate::run(args).await,
        Command::Replay(args) => crate::replay::run(args),
    }
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

fn read_log(
    b: &BackendArgs,
    topic: &str,
    from_beginning: bool,
    follow: bool,
    limit: Option<usize>,
) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if let Some(servers) = &b.kafka_bootstrap_servers {
        return kafka::read(servers, topic, from_beginning, follow, limit, |r| {
            print_record(&mut out, r)
        });
    }
    let reader = EmbeddedReader::open(&b.data_dir).context("reading the embedded log")?;
    let parts = reader
        .partitions(topic)?
        .with_context(|| format!("topic {topic} does not exist"))?;
    let mut next: Vec<i64> = if from_beginning {
        vec![0; parts as usize]
    } else {
        reader.end_offsets(topic)?
    };
    let mut n = 0usize;
    loop {
        // Interleave partitions by time, like a consumer of all partitions would see them.
        let mut batch = Vec::new();
        for p in 0..parts as i32 {
            batch.extend(reader.fetch(topic, p, next[p as usize], 500)?);
        }
        batch.sort_by_key(|r| (r.timestamp_ms, r.partition, r.offset));
        let empty = batch.is_empty();
        for r in batch {
            if limit.is_some_and(|l| n >= l) {
                return Ok(());
            }
            next[r.partition as usize] = r.offset + 1;
            print_record(&mut out, r)?;
            n += 1;
        }
        out.flush()?;
        if limit.is_some_and(|l| n >= l) {
            return Ok(());
        }
        if empty {
            if !follow && from_beginning {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}
