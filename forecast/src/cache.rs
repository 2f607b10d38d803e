//! SQLite cache of open-meteo answers, so a device that loses its link keeps forecasting from the
//! last good answer.
//!
//! On-disk format: one table `weather_answers(request TEXT PRIMARY KEY, body TEXT, fetched_at
//! INTEGER)`. `request` is the path and query of the request (base URL excluded, so a changed
//! mirror still hits the cache), `body` the answer exactly as received (it parsed when stored),
//! `fetched_at` Unix seconds. Writes replace the row: only the newest answer is kept.

use std::{path::Path, sync::Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
#[error("weather cache: {0}")]
pub struct CacheError(String);

impl From<rusqlite::Error> for CacheError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// The cache; cheap operations under a mutex (one row per request).
pub struct Cache {
    connection: Mutex<Connection>,
}

impl Cache {
    /// Opens (creating if needed) the cache file.
    pub fn open(path: &Path) -> Result<Self, CacheError> {
        let connection = Connection::open(path)
            .map_err(|e| CacheError(format!("cannot open {}: {e}", path.display())))?;
        Self::init(connection)
    }

    /// A cache that lives as long as the process (tests, one-shot commands).
    pub fn in_memory() -> Result<Self, CacheError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(connection: Connection) -> Result<Self, CacheError> {
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS weather_answers (
                request TEXT PRIMARY KEY,
                body TEXT NOT NULL,
                fetched_at INTEGER NOT NULL
            );",
        )?;
        Ok(Self { connection: Mutex::new(connection) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, CacheError> {
        self.connection.lock().map_err(|_| CacheError("the cache lock is poisoned".into()))
    }

    pub fn put(
        &self,
        request: &str,
        body: &str,
        fetched_at: OffsetDateTime,
    ) -> Result<(), CacheError> {
        self.lock()?.execute(
            "INSERT INTO weather_answers (request, body, fetched_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (request) DO UPDATE SET body = excluded.body, fetched_at = excluded.fetched_at",
            params![request, body, fetched_at.unix_timestamp()],
        )?;
        Ok(())
    }

    /// The last answer stored for `request` and when it was fetched.
    pub fn get(&self, request: &str) -> Result<Option<(String, OffsetDateTime)>, CacheError> {
        let row: Option<(String, i64)> = self
            .lock()?
            .query_row(
                "SELECT body, fetched_at FROM weather_answers WHERE request = ?1",
                params![request],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(body, at)| {
            OffsetDateTime::from_unix_timestamp(at)
                .map(|at| (body, at))
                .map_err(|e| CacheError(format!("bad fetched_at {at}: {e}")))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_answer_per_request() {
        let cache = Cache::in_memory().unwrap();
        assert!(cache.get("/a").unwrap().is_none());
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        cache.put("/a", "one", t).unwrap();
        cache.put("/a", "two", t + time::Duration::hours(1)).unwrap();
        let (body, at) = cache.get("/a").unwrap().unwrap();
        assert_eq!(body, "two");
        assert_eq!(at, t + time::Duration::hours(1));
    }
}
