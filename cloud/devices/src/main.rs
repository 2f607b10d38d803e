//! `edgewatch-devices`: runs the devices service. Configuration: defaults, then `--config FILE`,
//! then `EDGEWATCH_*` variables (e.g. `EDGEWATCH_DATABASE_URL`, `EDGEWATCH_BUS_URL`,
//! `EDGEWATCH_SIGNING_URL`, `EDGEWATCH_SERVICE_TOKEN`, `EDGEWATCH_HTTP__LISTEN`).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgewatch_common::binary;
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
    binary::run::<DevicesConfig, _, _, _>(
        "edgewatch-devices",
        args.config.as_deref(),
        edgewatch_devices::serve,
    )
    .await
}
