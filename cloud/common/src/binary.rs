//! The shared body of every service binary: load the configuration (defaults, `--config` file,
//! `EDGEWATCH_*`), set up logs, serve until Ctrl-C or SIGTERM, and turn failures into a one-line
//! message and a non-zero exit code.

use std::{fmt::Display, future::Future, path::Path, process::ExitCode};

use serde::{Serialize, de::DeserializeOwned};

use crate::{
    config::{self, LogConfig},
    observability, shutdown,
};

/// A service configuration with the parts every service has.
pub trait ServiceConfig: Serialize + DeserializeOwned + Default {
    fn log(&self) -> &LogConfig;
}

/// Runs `serve` with the loaded configuration; `name` prefixes error messages.
pub async fn run<C, F, Fut, E>(name: &str, config_file: Option<&Path>, serve: F) -> ExitCode
where
    C: ServiceConfig,
    F: FnOnce(C, shutdown::Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let config: C = match config::load(config_file) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(2);
        }
    };
    observability::init_tracing(config.log());
    match serve(config, shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err}");
            ExitCode::FAILURE
        }
    }
}
