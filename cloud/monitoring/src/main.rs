//! `edgewatch-monitoring`: runs the monitoring service. Configuration: defaults, then
//! `--config FILE`, then `EDGEWATCH_*` variables (e.g. `EDGEWATCH_STORE_URL`,
//! `EDGEWATCH_BUS_URL`, `EDGEWATCH_SERVICE_TOKEN`, `EDGEWATCH_HTTP__LISTEN`).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgewatch_common::binary;
use edgewatch_monitoring::MonitoringConfig;

#[derive(Parser)]
#[command(
    name = "edgewatch-monitoring",
    version,
    about = "The edgewatch monitoring service: telemetry store, queries, live push"
)]
struct Args {
    /// A TOML file with the service's settings.
    #[arg(long, env = "EDGEWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    binary::run::<MonitoringConfig, _, _, _>(
        "edgewatch-monitoring",
        args.config.as_deref(),
        edgewatch_monitoring::serve,
    )
    .await
}
