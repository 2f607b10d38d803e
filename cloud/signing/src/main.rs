//! `edgewatch-signing`: runs the signing service. Configuration: defaults, then `--config FILE`,
//! then `EDGEWATCH_*` variables (e.g. `EDGEWATCH_DATABASE_URL`, `EDGEWATCH_CACHE_URL`,
//! `EDGEWATCH_SERVICE_TOKEN`, `EDGEWATCH_HTTP__LISTEN`).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgewatch_common::binary;
use edgewatch_signing::SigningConfig;

#[derive(Parser)]
#[command(
    name = "edgewatch-signing",
    version,
    about = "The edgewatch signing service: accounts, sign-in, tokens"
)]
struct Args {
    /// A TOML file with the service's settings.
    #[arg(long, env = "EDGEWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    binary::run::<SigningConfig, _, _, _>(
        "edgewatch-signing",
        args.config.as_deref(),
        edgewatch_signing::serve,
    )
    .await
}
