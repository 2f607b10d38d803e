//! Database pools as every service opens them: SQLite in WAL mode with a busy timeout (the
//! embedded shape), PostgreSQL with a bounded acquire time (so an outage turns into errors, not
//! hung requests). Each crate runs its own migrations on the pool.

use std::{str::FromStr, time::Duration};

use sqlx::{
    PgPool, SqlitePool,
    postgres::PgPoolOptions,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};

/// Opens (creating if needed) the SQLite database at `url` (`sqlite://path`).
pub async fn sqlite(url: &str, max_connections: u32) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new().max_connections(max_connections).connect_with(options).await
}

/// Connects to PostgreSQL at `url`.
pub async fn postgres(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
}
