//! `edgewatch`: the umbrella command. `edgewatch up` runs the whole system in one process; the
//! other subcommands check telemetry against the wire contract and evaluate forecasts.

mod up;

mod forecast_cmd;

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
    Forecast(forecast_cmd::ForecastCommand),
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
        Command::Forecast(command) => forecast_cmd::run(command),
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
