//! `edgewatch-agent`: parses the command line and calls the library; nothing else lives here.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use edgewatch_agent::{
    buffer::{Buffer, BufferOptions, DropPolicy, NewReading},
    config::RuntimeConfig,
    enroll::{self, Credentials},
    run::{self, RunOptions, UplinkKind},
};

/// The edgewatch edge agent: collects host metrics, keeps them in a crash-safe local buffer and
/// ships them to the edgewatch cloud over HTTP or MQTT.
///
/// First enroll the device with the token from the dashboard, then run the agent:
///
///   edgewatch-agent enroll --server https://edgewatch.example --token TOKEN
///
///   edgewatch-agent run --interval 10
#[derive(Parser, Debug)]
#[command(name = "edgewatch-agent", version, verbatim_doc_comment)]
struct Cli {
    /// Where the buffer and the credentials live.
    #[arg(
        long,
        global = true,
        env = "EDGEWATCH_AGENT_DATA_DIR",
        default_value = "/var/lib/edgewatch-agent"
    )]
    data_dir: PathBuf,
    /// The credentials file [default: DATA_DIR/credentials.json].
    #[arg(long, global = true, env = "EDGEWATCH_AGENT_CREDENTIALS")]
    credentials: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Collect, buffer and upload until stopped (SIGTERM or Ctrl-C).
    Run(RunArgs),
    /// Trade an enrollment token for this device's credentials (saved with mode 0600).
    Enroll {
        /// The edgewatch server (gateway or devices service), e.g. https://edgewatch.example
        #[arg(long, env = "EDGEWATCH_SERVER")]
        server: String,
        /// The one-time enrollment token shown when the device was created.
        #[arg(long, env = "EDGEWATCH_ENROLLMENT_TOKEN")]
        token: String,
    },
    /// Show the buffer depth, oldest pending reading, last upload, drops, quarantine and link.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Inspect the buffer.
    Buffer {
        #[command(subcommand)]
        command: BufferCommand,
    },
    /// Test helper: append (and ack) readings in a loop, printing each commit.
    #[command(hide = true)]
    DebugFill {
        /// Readings per append.
        #[arg(long, default_value_t = 50)]
        batch: usize,
        /// Also peek and ack the oldest readings, like an uplink.
        #[arg(long)]
        ack: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BufferCommand {
    /// Write every pending reading to stdout, oldest first.
    Export {
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Format {
    /// `seq,ts,metric,value`, one line per metric.
    Csv,
    /// One reading per line, as in a batch.
    Jsonl,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// How readings reach the cloud (until a remote config's `uplink` says otherwise).
    #[arg(long, value_enum, default_value_t = UplinkKind::Http)]
    uplink: UplinkKind,
    /// Seconds between collections (until a remote config says otherwise).
    #[arg(long, default_value_t = 10.0)]
    interval: f64,
    /// The most pending readings kept.
    #[arg(long, default_value_t = BufferOptions::default().max_rows)]
    max_readings: u64,
    /// The most bytes of pending readings kept.
    #[arg(long, default_value_t = BufferOptions::default().max_bytes)]
    max_bytes: u64,
    /// Which readings give way when the buffer is full.
    #[arg(long, value_enum, default_value_t = Policy::Oldest)]
    drop: Policy,
    /// The most readings per second sent while draining a backlog.
    #[arg(long, default_value_t = RuntimeConfig::default().drain_rate)]
    drain_rate: u32,
    /// Seconds between config polls (HTTP uplink).
    #[arg(long, default_value_t = 60.0)]
    config_poll: f64,
    /// Use this server instead of the one in the credentials file.
    #[arg(long)]
    server: Option<String>,
    /// Take sensor readings from this local broker (`sensors/{id}/{metric}`), e.g.
    /// mqtt://127.0.0.1:1883, or mqtt://user:password@127.0.0.1:1883 when it asks for a login.
    #[arg(long, env = "EDGEWATCH_AGENT_SENSORS")]
    sensors: Option<String>,
    /// The CA certificate file (PEM) of a private MQTT broker with TLS; the system's CA store
    /// is used otherwise.
    #[arg(long, env = "EDGEWATCH_AGENT_MQTT_CA", value_name = "FILE")]
    mqtt_ca: Option<PathBuf>,
    /// Serve the agent's counters for Prometheus at http://ADDR/metrics (e.g. 127.0.0.1:9464);
    /// off unless given.
    #[arg(long, value_name = "ADDR", env = "EDGEWATCH_AGENT_METRICS")]
    metrics: Option<std::net::SocketAddr>,
    /// The client id of the agent's persistent session at the sensor broker.
    #[arg(long, default_value = "edgewatch-agent-sensors")]
    sensors_client_id: String,
    /// Log JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Policy {
    /// Drop the oldest pending readings.
    Oldest,
    /// Refuse new readings.
    Newest,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let credentials =
        cli.credentials.clone().unwrap_or_else(|| cli.data_dir.join("credentials.json"));
    let json_logs = matches!(&cli.command, Command::Run(args) if args.log_json);
    init_logging(json_logs);
    match cli.command {
        Command::Run(args) => run_agent(args, cli.data_dir, credentials),
        Command::Enroll { server, token } => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let creds = runtime.block_on(async {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
                anyhow::Ok(enroll::enroll(&client, &server, &token, &credentials).await?)
            })?;
            print_enrolled(&creds, &credentials);
            Ok(())
        }
        Command::Status { json } => status(&cli.data_dir, &credentials, json),
        Command::Buffer { command: BufferCommand::Export { format } } => {
            export(&cli.data_dir, format)
        }
        Command::DebugFill { batch, ack } => debug_fill(&cli.data_dir, batch, ack),
    }
}

/// Logs to stderr at `RUST_LOG` (`info` by default; `debug`, or per module as in
/// `info,edgewatch_agent::uplink=debug`). Plain target filters, not `EnvFilter`: its regex engine
/// would cost the binary about half a megabyte of its size budget.
fn init_logging(json: bool) {
    use tracing_subscriber::{filter::Targets, prelude::*};
    let filter = match std::env::var("RUST_LOG") {
        Ok(text) => text.parse::<Targets>().unwrap_or_else(|err| {
            eprintln!("RUST_LOG={text:?} is not understood ({err}); logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        }),
        Err(_) => Targets::new().with_default(tracing::Level::INFO),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
}

fn run_agent(args: RunArgs, data_dir: PathBuf, credentials: PathBuf) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.interval.is_finite() && (0.1..=86_400.0).contains(&args.interval),
        "--interval must be 0.1 to 86400 seconds"
    );
    anyhow::ensure!(
        args.config_poll.is_finite() && args.config_poll >= 0.1,
        "--config-poll must be at least 0.1"
    );
    let options = RunOptions {
        data_dir,
        credentials,
        uplink: args.uplink,
        buffer: BufferOptions {
            max_rows: args.max_readings,
            max_bytes: args.max_bytes,
            policy: match args.drop {
                Policy::Oldest => DropPolicy::DropOldest,
                Policy::Newest => DropPolicy::DropNewest,
            },
            ..BufferOptions::default()
        },
        config: RuntimeConfig {
            interval: Duration::from_secs_f64(args.interval),
            drain_rate: args.drain_rate.max(1),
            ..RuntimeConfig::default()
        },
        config_poll: Duration::from_secs_f64(args.config_poll),
        server: args.server,
        sensors: args.sensors.map(|url| edgewatch_agent::collect::sensors::SensorSource {
            url,
            client_id: args.sensors_client_id,
        }),
        mqtt_ca: args.mqtt_ca,
        metrics: args.metrics,
    };
    // Two threads: one for the tasks, one spare; SQLite and sysinfo run on the blocking pool.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => None } } => {}
            }
            tracing::info!("Stopping");
            trigger.cancel();
        });
        run::run(options, shutdown).await
    })?;
    Ok(())
}

#[allow(clippy::print_stdout)]
fn print_enrolled(credentials: &Credentials, path: &Path) {
    println!("Enrolled as device {}", credentials.device_id);
    println!("Credentials saved to {} (mode 0600)", path.display());
    println!("Start the agent with: edgewatch-agent run");
}

fn open_existing(data_dir: &Path) -> anyhow::Result<Buffer> {
    let path = run::buffer_path(data_dir);
    anyhow::ensure!(path.exists(), "no buffer at {}: has the agent run here?", path.display());
    Buffer::open(&path, BufferOptions::default())
        .with_context(|| format!("opening {}", path.display()))
}

#[allow(clippy::print_stdout)]
fn status(data_dir: &Path, credentials: &Path, json: bool) -> anyhow::Result<()> {
    let buffer = open_existing(data_dir)?;
    let stats = buffer.stats()?;
    let device = Credentials::load(credentials).ok().map(|c| c.device_id.to_string());
    if json {
        let mut value = serde_json::to_value(&stats)?;
        value["device_id"] = serde_json::json!(device);
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let or_never =
        |t: Option<edgewatch_protocol::Timestamp>| t.map_or("never".into(), |t| t.to_string());
    println!("device:               {}", device.as_deref().unwrap_or("not enrolled"));
    println!("link:                 {}", stats.link_state.as_deref().unwrap_or("unknown"));
    println!("pending readings:     {} ({} bytes)", stats.pending_readings, stats.pending_bytes);
    println!(
        "oldest pending:       {}",
        stats.oldest_pending.map_or("-".into(), |t| t.to_string())
    );
    println!("last upload:          {}", or_never(stats.last_upload));
    println!("uploaded readings:    {}", stats.uploaded_readings);
    println!("dropped (oldest):     {}", stats.dropped_oldest);
    println!("dropped (newest):     {}", stats.dropped_newest);
    println!(
        "quarantined:          {} batches, {} readings ({} evicted)",
        stats.quarantined_batches, stats.quarantined_readings, stats.quarantine_evicted
    );
    println!(
        "config version:       {}",
        stats.config_version.map_or("none".into(), |v| v.to_string())
    );
    println!("next seq:             {}", stats.next_seq);
    if let Some(error) = stats.last_error {
        println!("last error:           {error}");
    }
    Ok(())
}

fn export(data_dir: &Path, format: Format) -> anyhow::Result<()> {
    let buffer = open_existing(data_dir)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| edgewatch_agent::AgentError::Io {
        context: "writing",
        path: PathBuf::from("stdout"),
        source: e,
    };
    if let Format::Csv = format {
        writeln!(out, "seq,ts,metric,value")?;
    }
    buffer.for_each_pending(|reading| {
        match format {
            Format::Jsonl => {
                serde_json::to_writer(&mut out, reading)?;
                writeln!(out).map_err(io)?;
            }
            Format::Csv => {
                for (name, value) in &reading.metrics {
                    // Metric names are [a-z0-9_.] and times RFC 3339: nothing needs quoting.
                    writeln!(out, "{},{},{},{}", reading.seq, reading.ts, name, value)
                        .map_err(io)?;
                }
            }
        }
        Ok(())
    })?;
    out.flush()?;
    Ok(())
}

/// Appends forever (and acks, with `--ack`), printing `append FIRST LAST` / `ack FIRST LAST`
/// after each commit, so a test can SIGKILL it at any moment and check what survived.
#[allow(clippy::print_stdout)]
fn debug_fill(data_dir: &Path, batch: usize, ack: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let mut buffer = Buffer::open(&run::buffer_path(data_dir), BufferOptions::default())?;
    let name = edgewatch_protocol::MetricName::parse("debug.value")?;
    let mut out = std::io::stdout().lock();
    for round in 0u64.. {
        let readings = (0..batch)
            .map(|i| NewReading {
                ts: edgewatch_protocol::Timestamp::now(),
                metrics: [(name.clone(), (round * batch as u64 + i as u64) as f64)].into(),
                tags: Default::default(),
            })
            .collect();
        let appended = buffer.append(readings)?;
        if let Some((first, last)) = appended.seqs {
            writeln!(out, "append {first} {last}")?;
            out.flush()?;
        }
        if ack
            && round % 2 == 1
            && let Some(pending) = buffer.peek(batch, u64::MAX)?
        {
            buffer.ack(pending.first, pending.last)?;
            writeln!(out, "ack {} {}", pending.first, pending.last)?;
            out.flush()?;
        }
    }
    Ok(())
}
