//! `edgewatch`: the umbrella command. Today it checks telemetry against the wire contract and
//! evaluates forecasts; the one-command embedded stack (`edgewatch up`) and the per-service
//! subcommands join it as their crates land.

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
        Command::Protocol(ProtocolCommand::Validate { file }) => validate(&file),
        Command::Forecast(command) => forecast_cmd::run(command),
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
