//! `edgewatch-devices`: runs the devices service. Configuration: defaults, then `--config FILE`,
//! then `EDGEWATCH_*` variables (e.g. `EDGEWATCH_DATABASE_URL`, `EDGEWATCH_BUS_URL`,
//! `EDGEWATCH_SIGNING_URL`, `EDGEWATCH_SERVICE_TOKEN`, `EDGEWATCH_HTTP__LISTEN`).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgewatch_common::{config, observability, shutdown};
use edgewatch_devices::DevicesConfig;

#[derive(Parser)]
#[command(
    name = "edgewatch-devices",
    version,
    about = "The edgewatch devices service: registry, enrollment, ingest"
)]
struct Args {
    /// A TOML file with the service's settings.
    #[arg(long, env = "EDGEWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config: DevicesConfig = match config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("edgewatch-devices: {err}");
            return ExitCode::from(2);
        }
    };
    observability::init_tracing(&config.log);
    match edgewatch_devices::serve(config, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edgewatch-devices: {err}");
            ExitCode::FAILURE
        }
    }
}
