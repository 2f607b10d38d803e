//! `edgewatch-sim`: parses the command line and runs sensors, devices, the load mode, idle
//! connections, or prints the generator's values.

#![allow(clippy::print_stdout)]

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::{Parser, Subcommand};
use edgewatch_protocol::DeviceId;
use edgewatch_simulator::{
    Broker, Clock, DeviceCredential, DeviceTarget, SensorPayload, SimError, SimOptions, Stats,
    generator,
    load::{self, LoadOptions},
};
use rumqttc::QoS;
use tokio_util::sync::CancellationToken;

/// Simulated edgewatch sensors and devices: realistic, seeded telemetry (diurnal temperature
/// and humidity, noise, drift, spikes, dropouts) over MQTT or HTTP, and a broker load mode.
#[derive(Parser)]
#[command(name = "edgewatch-sim", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// How many sensors or devices.
    #[arg(long, short = 'n', default_value_t = 10)]
    count: u64,
    /// Seconds between two samples of one sensor or device.
    #[arg(long, default_value_t = 5.0)]
    interval_s: f64,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<f64>,
    /// The seed: the same seed gives the same values.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Replay from this Unix millisecond instead of the wall clock (identical runs).
    #[arg(long)]
    start_ms: Option<i64>,
}

#[derive(Subcommand)]
enum Command {
    /// Local sensors publishing sensors/sim-NNNN/temp_c|humidity_pct to an edge broker.
    Sensors {
        #[command(flatten)]
        common: Common,
        /// The edge broker, mqtt://host:port.
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        #[arg(long, env = "EDGEWATCH_SIM_USERNAME")]
        username: Option<String>,
        #[arg(long, env = "EDGEWATCH_SIM_PASSWORD")]
        password: Option<String>,
        /// A bare number, or {"value", "ts"}.
        #[arg(long, value_enum, default_value_t = SensorPayload::Number)]
        payload: SensorPayload,
    },
    /// Enrolled devices sending batches straight to the cloud (MQTT or HTTP).
    Devices {
        #[command(flatten)]
        common: Common,
        /// A file of `device_id secret` lines (one per device; --count of them are used).
        #[arg(long)]
        credentials: PathBuf,
        /// The cloud broker, mqtt://host:port ...
        #[arg(long, conflicts_with = "http")]
        broker: Option<String>,
        /// ... or the devices service's base URL (POST /api/v1/devices/{id}/telemetry).
        #[arg(long)]
        http: Option<String>,
    },
    /// N publishers -> 1 subscriber through a broker: achieved, acknowledged and delivered
    /// rates and latency percentiles.
    Load {
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        #[arg(long, env = "EDGEWATCH_SIM_USERNAME")]
        username: Option<String>,
        #[arg(long, env = "EDGEWATCH_SIM_PASSWORD")]
        password: Option<String>,
        #[arg(long, default_value_t = 100)]
        publishers: usize,
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
        /// 0 or 1.
        #[arg(long, default_value_t = 1)]
        qos: u8,
        #[arg(long, default_value_t = 10.0)]
        duration_s: f64,
        /// Messages a second per publisher (default: as fast as acknowledged).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value = "bench")]
        topic_prefix: String,
        /// Unacknowledged messages per publisher.
        #[arg(long, default_value_t = 100)]
        inflight: u16,
    },
    /// Opens N idle connections and holds them (for memory per connection); prints
    /// `connected=N` once they are up.
    Idle {
        #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
        broker: String,
        #[arg(long, env = "EDGEWATCH_SIM_USERNAME")]
        username: Option<String>,
        #[arg(long, env = "EDGEWATCH_SIM_PASSWORD")]
        password: Option<String>,
        #[arg(long, short = 'n', default_value_t = 1000)]
        count: usize,
        /// Hold for this many seconds (default: until Ctrl-C).
        #[arg(long)]
        hold_s: Option<f64>,
    },
    /// Prints the generator's values (CSV: t_ms,index,temp_c,humidity_pct; empty in a dropout).
    Print {
        #[arg(long, short = 'n', default_value_t = 1)]
        count: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        start_ms: i64,
        #[arg(long, default_value_t = 60_000)]
        step_ms: i64,
        #[arg(long, default_value_t = 10)]
        samples: u64,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber_init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edgewatch-sim: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Warnings (lost connections, refused requests) go to stderr; `RUST_LOG` overrides.
fn tracing_subscriber_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn ctrl_c() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        trigger.cancel();
    });
    token
}

fn with_login(
    url: &str,
    username: Option<String>,
    password: Option<String>,
) -> Result<Broker, SimError> {
    Ok(Broker { username, password, ..Broker::parse(url)? })
}

fn sim_options(common: &Common, payload: SensorPayload) -> Result<SimOptions, SimError> {
    if !common.interval_s.is_finite() || common.interval_s <= 0.0 {
        return Err(SimError::Options("--interval-s must be positive".into()));
    }
    Ok(SimOptions {
        seed: common.seed,
        interval: Duration::from_secs_f64(common.interval_s),
        duration: common.duration_s.map(Duration::from_secs_f64),
        clock: common.start_ms.map_or(Clock::Real, Clock::From),
        payload,
    })
}

/// Prints a progress line every 5 s while `tasks` run; returns the total.
async fn supervise(
    tasks: Vec<tokio::task::JoinHandle<Result<(), SimError>>>,
    stats: Arc<Stats>,
) -> Result<(), SimError> {
    let started = std::time::Instant::now();
    let progress = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            every.tick().await;
            loop {
                every.tick().await;
                let (sent, acked, dropouts, errors) = stats.get();
                let t = started.elapsed().as_secs_f64();
                eprintln!(
                    "[{t:>6.0} s] sent={sent} acked={acked} dropouts={dropouts} errors={errors} rate={:.1}/s",
                    sent as f64 / t
                );
            }
        })
    };
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => first_error = first_error.or(Some(err)),
            Err(err) => first_error = first_error.or(Some(SimError::Options(err.to_string()))),
        }
    }
    progress.abort();
    let (sent, acked, dropouts, errors) = stats.get();
    println!("sent={sent} acked={acked} dropouts={dropouts} errors={errors}");
    first_error.map_or(Ok(()), Err)
}

async fn run(args: Args) -> Result<(), SimError> {
    match args.command {
        Command::Sensors { common, broker, username, password, payload } => {
            let options = sim_options(&common, payload)?;
            let broker = with_login(&broker, username, password)?;
            let (stats, shutdown) = (Arc::new(Stats::default()), ctrl_c());
            let tasks = (0..common.count)
                .map(|index| {
                    let (broker, options, stats, shutdown) =
                        (broker.clone(), options.clone(), stats.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        edgewatch_simulator::run_sensor(&broker, index, &options, stats, shutdown)
                            .await
                    })
                })
                .collect();
            supervise(tasks, stats).await
        }
        Command::Devices { common, credentials, broker, http } => {
            let options = sim_options(&common, SensorPayload::Number)?;
            let target = match (broker, http) {
                (Some(url), None) => DeviceTarget::Mqtt(Broker::parse(&url)?),
                (None, Some(base)) => DeviceTarget::Http(base),
                _ => {
                    return Err(SimError::Options(
                        "give --broker mqtt://... or --http http://...".into(),
                    ));
                }
            };
            let text = std::fs::read_to_string(&credentials).map_err(|e| {
                SimError::Options(format!("cannot read {}: {e}", credentials.display()))
            })?;
            let devices = parse_credentials(&text)?;
            if (devices.len() as u64) < common.count {
                return Err(SimError::Options(format!(
                    "{} holds {} credentials; --count is {}",
                    credentials.display(),
                    devices.len(),
                    common.count
                )));
            }
            let (stats, shutdown) = (Arc::new(Stats::default()), ctrl_c());
            let tasks = devices
                .into_iter()
                .take(common.count as usize)
                .enumerate()
                .map(|(index, device)| {
                    let (target, options, stats, shutdown) =
                        (target.clone(), options.clone(), stats.clone(), shutdown.clone());
                    tokio::spawn(async move {
                        edgewatch_simulator::run_device(
                            &target,
                            &device,
                            index as u64,
                            &options,
                            stats,
                            shutdown,
                        )
                        .await
                    })
                })
                .collect();
            supervise(tasks, stats).await
        }
        Command::Load {
            broker,
            username,
            password,
            publishers,
            payload_bytes,
            qos,
            duration_s,
            rate,
            topic_prefix,
            inflight,
        } => {
            let qos = match qos {
                0 => QoS::AtMostOnce,
                1 => QoS::AtLeastOnce,
                _ => return Err(SimError::Options("--qos must be 0 or 1".into())),
            };
            let opts = LoadOptions {
                broker: with_login(&broker, username, password)?,
                publishers,
                payload_bytes,
                qos,
                duration: Duration::from_secs_f64(duration_s),
                rate_per_publisher: rate,
                topic_prefix,
                inflight,
            };
            let report = load::run_load(&opts, |t, sent, received| {
                eprintln!("[{:>5.0} s] sent={sent} delivered={received}", t.as_secs_f64());
            })
            .await?;
            println!("{}", report.summary());
            Ok(())
        }
        Command::Idle { broker, username, password, count, hold_s } => {
            let broker = with_login(&broker, username, password)?;
            let shutdown = ctrl_c();
            if let Some(hold) = hold_s {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
                    stop.cancel();
                });
            }
            load::hold_idle(&broker, count, |ok| println!("connected={ok}"), shutdown).await?;
            Ok(())
        }
        Command::Print { count, seed, start_ms, step_ms, samples } => {
            println!("t_ms,index,temp_c,humidity_pct");
            for k in 0..samples {
                let t = start_ms + k as i64 * step_ms;
                for index in 0..count {
                    match generator::sample(seed, index, t) {
                        Some(s) => println!("{t},{index},{},{}", s.temp_c, s.humidity_pct),
                        None => println!("{t},{index},,"),
                    }
                }
            }
            Ok(())
        }
    }
}

fn parse_credentials(text: &str) -> Result<Vec<DeviceCredential>, SimError> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .enumerate()
        .map(|(n, line)| {
            let (id, secret) = line.split_once(char::is_whitespace).ok_or_else(|| {
                SimError::Options(format!(
                    "credentials line {}: expected `device_id secret`",
                    n + 1
                ))
            })?;
            let id = DeviceId::parse(id.trim())
                .map_err(|e| SimError::Options(format!("credentials line {}: {e}", n + 1)))?;
            Ok(DeviceCredential { id, secret: secret.trim().to_owned() })
        })
        .collect()
}
