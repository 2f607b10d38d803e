//! `edgewatch-signing`: runs the signing service. Configuration: defaults, then `--config FILE`,
//! then `EDGEWATCH_*` variables (e.g. `EDGEWATCH_DATABASE_URL`, `EDGEWATCH_CACHE_URL`,
//! `EDGEWATCH_SERVICE_TOKEN`, `EDGEWATCH_HTTP__LISTEN`).

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgewatch_common::{config, observability, shutdown};
use edgewatch_signing::SigningConfig;

#[derive(Parser)]
#[command(
    name = "edgewatch-signing",
    version,
    about = "The edgewatch signing service: accounts, sign-in, tokens"
)]
struct Args {
    /// A TOML file with the service's settings (see docs/signing.md).
    #[arg(long, env = "EDGEWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config: SigningConfig = match config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("edgewatch-signing: {err}");
            return ExitCode::from(2);
        }
    };
    observability::init_tracing(&config.log);
    match edgewatch_signing::serve(config, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("edgewatch-signing: {err}");
            ExitCode::FAILURE
        }
    }
}
