//! The agent's one error type. Every failure the agent meets at run time (a full disk, a cloud
//! that is down, a refused batch) is a value of it, so the run loop can log it and carry on
//! instead of dying on a device nobody can reach.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The buffer's file system (or its configured size ceiling) is full. Nothing was written;
    /// the agent keeps running and writes again once space returns.
    #[error("the buffer is out of disk space; new readings are refused until space returns")]
    DiskFull,
    #[error("buffer database: {0}")]
    Sqlite(rusqlite::Error),
    #[error("the buffer file is damaged ({0}); move it aside and restart to begin a new one")]
    Corrupt(String),
    #[error("a reading cannot be stored: {0}")]
    InvalidReading(String),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{context} {}: {source}", path.display())]
    Io { context: &'static str, path: PathBuf, source: std::io::Error },
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("not enrolled: {0} is missing; run `edgewatch-agent enroll --server URL --token T`")]
    NotEnrolled(PathBuf),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("an internal task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for AgentError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::DiskFull,
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                Self::Corrupt(err.to_string())
            }
            _ => Self::Sqlite(err),
        }
    }
}

impl From<rusqlite::types::FromSqlError> for AgentError {
    fn from(err: rusqlite::types::FromSqlError) -> Self {
        Self::Corrupt(format!("unexpected value in the buffer: {err}"))
    }
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;
