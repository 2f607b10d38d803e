//! `edgewatch`: the umbrella command. `edgewatch up` runs the whole system in one process; the
//! other subcommands check telemetry against the wire contract and evaluate forecasts.

mod up;

use std::{io::Read, path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use edgewatch_protocol::{Batch, BatchError};

#[derive(Parser)]
#[command(name = "edgewatch", version, about = "Edge-first IoT monitoring", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole system in one process: API, dashboard and MQTT broker on embedded storage,
    /// an agent for this host and a few simulated devices. Prints the URL and, on first start,
    /// the administrator's password.
    Up(up::UpArgs),
    /// Work with the wire contract (API.md "Readings and batches").
    #[command(subcommand)]
    Protocol(ProtocolCommand),
    /// Forecasting tools.
    #[command(subcommand)]
    Forecast(ForecastCommand),
}

#[derive(Subcommand)]
enum ForecastCommand {
    /// Walk-forward evaluation of next-day maximum temperature on a daily weather CSV
    /// (`date,precipitation,temp_max,temp_min,wind,weather`, e.g. forecast/data/seattle-weather.csv):
    /// the model against persistence and climatology, MAE in °C.
    Eval {
        /// The daily weather CSV.
        #[arg(long)]
        data: PathBuf,
        /// Days at the end of the file to test on (the same number before them choose the model).
        #[arg(long, default_value_t = 365)]
        test_days: usize,
    },
}

#[derive(Subcommand)]
enum ProtocolCommand {
    /// Check a telemetry batch (JSON) exactly as the cloud will; prints a summary or the first
    /// problem with the field it is in. Exit code 0 when valid, 1 when not.
    Validate {
        /// The batch file; `-` reads standard input.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => run_up(&args),
        Command::Protocol(ProtocolCommand::Validate { file }) => validate(&file),
        Command::Forecast(ForecastCommand::Eval { data, test_days }) => {
            forecast_eval(&data, test_days)
        }
    }
}

fn run_up(args: &up::UpArgs) -> ExitCode {
    let result = up::UpArgs::load(args).map_err(up::UpError::from).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|cause| up::UpError::Listen { addr: config.http_listen, cause })?;
        runtime.block_on(up::run(config))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edgewatch up: {err}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn forecast_eval(data: &std::path::Path, test_days: usize) -> ExitCode {
    use edgewatch_forecast::{daily, eval};
    let days = match daily::load(data) {
        Ok(days) => days,
        Err(err) => {
            eprintln!("error: {}: {err}", data.display());
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "Fitting {} models (walk-forward, refitted daily)...",
        test_days * (eval::ALPHAS.len() + 1)
    );
    let report = match eval::walk_forward(&days, test_days) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "next-day temp_max, walk-forward over {} days ({} .. {})",
        report.test_days, report.first_test_day, report.last_test_day
    );
    println!("  persistence            MAE {:.3} °C", report.persistence_mae);
    println!("  climatology            MAE {:.3} °C", report.climatology_mae);
    println!("  ridge (alpha {:<4})      MAE {:.3} °C", report.alpha, report.ridge_mae);
    let tried: Vec<String> =
        report.validation.iter().map(|(a, m)| format!("{a}: {m:.3}")).collect();
    println!(
        "  alpha chosen on the {} days before the test (validation MAE {})",
        report.test_days,
        tried.join(", ")
    );
    println!(
        "  training: median {:.2} ms per fit ({} rows x {} features at the test start)",
        report.median_fit.as_secs_f64() * 1e3,
        report.training_rows,
        edgewatch_forecast::features::WIDTH
    );
    ExitCode::SUCCESS
}

#[allow(clippy::print_stdout)]
fn validate(file: &PathBuf) -> ExitCode {
    let bytes = match read_input(file) {
        Ok(bytes) => bytes,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", file.display());
            return ExitCode::from(2);
        }
    };
    match Batch::from_json(&bytes) {
        Ok(batch) => {
            let metrics: usize = batch.readings().iter().map(|r| r.metrics.len()).sum();
            println!(
                "valid: device {} with {} readings ({} values), first seq {}",
                batch.device_id(),
                batch.readings().len(),
                metrics,
                batch.first_seq()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            let status = match err {
                BatchError::TooLarge { .. } | BatchError::TooManyReadings { .. } => 413,
                BatchError::Malformed { .. } => 400,
                BatchError::Invalid { .. } => 422,
            };
            eprintln!("invalid ({}, HTTP {status}): {err}", err.code());
            ExitCode::FAILURE
        }
    }
}

fn read_input(file: &PathBuf) -> std::io::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin().read_to_end(&mut bytes)?;
        Ok(bytes)
    } else {
        std::fs::read(file)
    }
}
