//! Why `edgewatch up` stopped. Every message is one line that says what to do about it; the
//! command prints it and exits non-zero.

use std::{net::SocketAddr, path::PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error(transparent)]
    Config(#[from] edgewatch_common::config::ConfigError),
    #[error(
        "cannot use the data directory {path}: {cause} (pick a writable one with --data-dir or fix its permissions)"
    )]
    DataDir { path: PathBuf, cause: std::io::Error },
    #[error(
        "{what} address {addr} is in use (another edgewatch?): stop that process or pass {flag} with a free port"
    )]
    PortInUse { what: &'static str, addr: SocketAddr, flag: &'static str },
    #[error("cannot listen on {addr}: {cause}")]
    Listen { addr: SocketAddr, cause: std::io::Error },
    #[error(
        "the {service} service cannot start: {cause} (if a database under {data_dir} is damaged, restore it from a backup or move it aside to start afresh)"
    )]
    Service { service: &'static str, cause: String, data_dir: PathBuf },
    #[error("cannot create the administrator account {0}")]
    Admin(String),
    #[error("cannot start the local agent: {0}")]
    Agent(String),
    #[error("cannot start the MQTT broker: {0}")]
    Broker(String),
    #[error("cannot start the simulated devices: {0}")]
    Sim(String),
}

impl UpError {
    pub fn listen(
        what: &'static str,
        flag: &'static str,
        addr: SocketAddr,
        cause: std::io::Error,
    ) -> Self {
        if cause.kind() == std::io::ErrorKind::AddrInUse {
            UpError::PortInUse { what, addr, flag }
        } else {
            UpError::Listen { addr, cause }
        }
    }
}
