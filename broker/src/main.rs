//! `edgewatch-broker`: loads the configuration and runs the broker until Ctrl-C or SIGTERM.

use std::{path::PathBuf, process::ExitCode};

use clap::Parser;
use edgewatch_broker::{BrokerConfig, BrokerError};

/// The edgewatch MQTT broker: rumqttd behind an authorising front that lets each device touch
/// only `edgewatch/v1/devices/{id}/`.
///
/// Configuration: defaults, then --config FILE (TOML), then EDGEWATCH_* variables, e.g.
/// EDGEWATCH_ROLE=edge, EDGEWATCH_MQTT__LISTEN=0.0.0.0:1883,
/// EDGEWATCH_DEVICES_URL=http://devices:8080. See broker/README.md for every key.
#[derive(Parser)]
#[command(name = "edgewatch-broker", version)]
struct Args {
    /// A TOML configuration file.
    #[arg(long, env = "EDGEWATCH_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    edgewatch_common::binary::run("edgewatch-broker", args.config.as_deref(), serve).await
}

async fn serve(
    config: BrokerConfig,
    shutdown: edgewatch_common::shutdown::Shutdown,
) -> Result<(), BrokerError> {
    let auth = edgewatch_broker::authenticator(&config)?;
    let ingest = edgewatch_broker::ingest(&config)?;
    let broker = edgewatch_broker::start(config, auth, ingest, shutdown.clone()).await?;
    shutdown.cancelled().await;
    broker.stopped().await;
    Ok(())
}
