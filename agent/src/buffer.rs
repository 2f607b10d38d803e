//! The store-and-forward buffer: every reading is committed to one SQLite file before anything
//! else happens to it, and leaves that file only when the cloud acknowledged it, when a cap
//! forces a (counted) drop, or when the cloud refused its batch (then it moves to quarantine).
//!
//! # On-disk format (schema version 1)
//!
//! One SQLite database in WAL mode with `synchronous=FULL`:
//!
//! - `readings(seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, body BLOB NOT NULL)`: the pending
//!   readings; `body` is the reading's JSON exactly as it goes into a batch
//!   (`{"seq":..,"ts":..,"metrics":{..},"tags":{..}}`). `seq` is the rowid, so "oldest first" is
//!   a walk of the primary key.
//! - `quarantine(id INTEGER PRIMARY KEY AUTOINCREMENT, first_seq, last_seq, readings, status,
//!   reason, at_ms, body)`: batches the cloud refused with a 4xx, kept for an operator (the
//!   newest `quarantine_max` of them); `body` is the JSON array of the readings.
//! - `meta(key TEXT PRIMARY KEY, value)`: `schema_version`, `next_seq`, the counters
//!   `dropped_oldest`, `dropped_newest`, `quarantined_batches`, `quarantined_readings`,
//!   `quarantine_evicted`, `uploaded_readings`, and what `status` shows: `last_upload_ms`,
//!   `link_state`, `config_version`, `last_error`.
//!
//! # Invariants
//!
//! 1. `next_seq` is greater than every seq ever handed out. It is advanced in the same
//!    transaction that inserts the readings, so a crash either keeps both or neither: a seq is
//!    never reused, and (device_id, seq) stays a unique key in the cloud across restarts.
//! 2. A new file starts `next_seq` at `unix_ms * 1000`, not at 1: a device whose buffer was wiped
//!    (reinstall, new SD card) still counts upwards from any seq it sent before, unless it once
//!    averaged more than 1,000 readings per millisecond. 2^53 is reached in the year 2255.
//! 3. Rows are deleted only by [`Buffer::ack`] (the cloud has them), [`Buffer::quarantine`] (moved
//!    in the same transaction), or the cap, whose drops are counted in `meta` in that transaction.
//! 4. Every change is one transaction, so `kill -9` or a power cut at any moment leaves the file
//!    consistent: WAL with `synchronous=FULL` fsyncs each commit.
//!
//! `synchronous=FULL` rather than `NORMAL`: with `NORMAL` a power cut may roll back the last
//! commits. If those commits advanced `next_seq` and their readings were already uploaded and
//! deleted, the rolled-back counter would hand the same seqs out again and the cloud would drop
//! the new readings as duplicates: silent loss. An fsync per commit is affordable because the
//! agent commits once per collection cycle, with the whole cycle's readings in it.
//!
//! A full disk (or the optional `max_file_bytes` ceiling) makes writes fail with
//! [`AgentError::DiskFull`]; the transaction rolls back, the file stays intact, and the next
//! write succeeds once there is room again.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use edgewatch_protocol::{MetricName, Reading, Seq, Tags, Timestamp, limits};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::error::{AgentError, Result};

const SCHEMA_VERSION: i64 = 1;

/// What happens when a cap is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropPolicy {
    /// Keep the newest readings: the oldest pending ones make room (the default; a monitoring
    /// system cares most about now).
    #[default]
    DropOldest,
    /// Keep the oldest: new readings are refused while the buffer is full.
    DropNewest,
}

#[derive(Debug, Clone)]
pub struct BufferOptions {
    /// The most pending readings kept.
    pub max_rows: u64,
    /// The most bytes of pending reading bodies kept.
    pub max_bytes: u64,
    pub policy: DropPolicy,
    /// A hard ceiling on the database file's size; writes beyond it fail like a full disk.
    pub max_file_bytes: Option<u64>,
    /// Refused batches kept in quarantine; older ones are evicted (and counted).
    pub quarantine_max: u64,
}

impl Default for BufferOptions {
    fn default() -> Self {
        Self {
            max_rows: 2_000_000,
            max_bytes: 256 << 20,
            policy: DropPolicy::DropOldest,
            max_file_bytes: None,
            quarantine_max: 1_000,
        }
    }
}

/// A reading before the buffer gave it a seq.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReading {
    pub ts: Timestamp,
    pub metrics: BTreeMap<MetricName, f64>,
    pub tags: Tags,
}

/// The result of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    /// The seqs given to the stored readings: `first..=last`.
    pub seqs: Option<(Seq, Seq)>,
    pub stored: u64,
    /// Older pending readings dropped to make room (drop-oldest).
    pub dropped_oldest: u64,
    /// Readings of this append refused because the buffer was full (drop-newest).
    pub dropped_newest: u64,
}

/// The oldest pending readings, ready to be sent as one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub readings: Vec<Reading>,
    pub first: Seq,
    pub last: Seq,
    /// Bytes of the readings' JSON.
    pub bytes: u64,
}

/// What `edgewatch-agent status` shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stats {
    pub pending_readings: u64,
    pub pending_bytes: u64,
    pub oldest_pending: Option<Timestamp>,
    pub next_seq: u64,
    pub dropped_oldest: u64,
    pub dropped_newest: u64,
    pub quarantined_batches: u64,
    pub quarantined_readings: u64,
    pub quarantine_evicted: u64,
    pub uploaded_readings: u64,
    pub last_upload: Option<Timestamp>,
    pub link_state: Option<String>,
    pub config_version: Option<u64>,
    pub last_error: Option<String>,
}

/// One quarantined batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Quarantined {
    pub first: Seq,
    pub last: Seq,
    pub readings: u64,
    pub status: u16,
    pub reason: String,
}

pub struct Buffer {
    conn: Connection,
    options: BufferOptions,
    rows: u64,
    bytes: u64,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer").field("rows", &self.rows).field("bytes", &self.bytes).finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn first_seq_of_new_file() -> u64 {
    (now_ms().max(0) as u64).saturating_mul(1000).clamp(1, limits::MAX_SEQ / 2)
}

/// A write transaction that takes the write lock at BEGIN. A deferred one reads first and
/// upgrades later; if another connection (`status`, an export) wrote in between, SQLite refuses
/// the upgrade at once (SQLITE_BUSY, no busy wait) and the write fails for this turn. Taking the
/// lock up front lets the busy timeout apply instead.
fn write(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

impl Buffer {
    /// Opens (or creates) the buffer at `path`.
    pub fn open(path: &Path, options: BufferOptions) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(AgentError::Corrupt(format!("cannot switch to WAL (journal_mode {mode})")));
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        if let Some(max) = options.max_file_bytes {
            let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = (max / page.max(512) as u64).max(8);
            conn.query_row(&format!("PRAGMA max_page_count={pages}"), [], |_| Ok(()))?;
        }
        let mut buffer = Self { conn, options, rows: 0, bytes: 0 };
        buffer.migrate()?;
        let (rows, bytes): (i64, i64) = buffer.conn.query_row(
            "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        buffer.rows = rows as u64;
        buffer.bytes = bytes as u64;
        Ok(buffer)
    }

    fn migrate(&mut self) -> Result<()> {
        // IMMEDIATE: take the write lock at BEGIN, where the busy timeout applies, instead of
        // upgrading a read lock later, which SQLite refuses at once while another process (the
        // running agent, when `status` opens the file) writes.
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS readings (
                 seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS quarantine (
                 id INTEGER PRIMARY KEY AUTOINCREMENT, first_seq INTEGER NOT NULL,
                 last_seq INTEGER NOT NULL, readings INTEGER NOT NULL, status INTEGER NOT NULL,
                 reason TEXT NOT NULL, at_ms INTEGER NOT NULL, body BLOB NOT NULL);",
        )?;
        let version: Option<i64> = meta_get(&tx, "schema_version")?;
        match version {
            None => {
                meta_set(&tx, "schema_version", SCHEMA_VERSION)?;
                meta_set(&tx, "next_seq", first_seq_of_new_file() as i64)?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(AgentError::Corrupt(format!(
                    "schema version {other}, this agent knows {SCHEMA_VERSION}"
                )));
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn options(&self) -> &BufferOptions {
        &self.options
    }

    /// Pending readings and their bytes.
    pub fn depth(&self) -> (u64, u64) {
        (self.rows, self.bytes)
    }

    /// Gives the readings their seqs and stores them, in one transaction, applying the cap.
    pub fn append(&mut self, readings: Vec<NewReading>) -> Result<Appended> {
        if readings.is_empty() {
            return Ok(Appended::default());
        }
        let mut bodies = Vec::with_capacity(readings.len());
        let tx = write(&mut self.conn)?;
        let mut next: u64 = meta_get::<i64>(&tx, "next_seq")?
            .ok_or_else(|| AgentError::Corrupt("meta.next_seq is missing".into()))?
            as u64;
        for reading in readings {
            check(&reading)?;
            let seq = Seq::new(next).map_err(|e| AgentError::Corrupt(format!("seq: {e}")))?;
            next += 1;
            let ts = reading.ts;
            let body = serde_json::to_vec(&Reading {
                seq,
                ts: reading.ts,
                metrics: reading.metrics,
                tags: reading.tags,
            })?;
            bodies.push((seq, ts, body));
        }
        let mut outcome = Appended::default();
        if self.options.policy == DropPolicy::DropNewest {
            let (mut rows, mut bytes) = (self.rows, self.bytes);
            let fits = bodies
                .iter()
                .take_while(|(_, _, body)| {
                    rows += 1;
                    bytes += body.len() as u64;
                    rows <= self.options.max_rows && bytes <= self.options.max_bytes
                })
                .count();
            outcome.dropped_newest = (bodies.len() - fits) as u64;
            bodies.truncate(fits);
            // Refused readings never got a seq that anyone saw: hand the same numbers out again.
            next -= outcome.dropped_newest;
            if outcome.dropped_newest > 0 {
                meta_add(&tx, "dropped_newest", outcome.dropped_newest)?;
            }
        }
        let mut added_bytes = 0;
        {
            let mut insert =
                tx.prepare_cached("INSERT INTO readings (seq, ts_ms, body) VALUES (?1, ?2, ?3)")?;
            for (seq, ts, body) in &bodies {
                insert.execute(params![seq.get() as i64, ts.as_millis(), body])?;
                added_bytes += body.len() as u64;
            }
        }
        meta_set(&tx, "next_seq", next as i64)?;
        let (mut rows, mut bytes) = (self.rows + bodies.len() as u64, self.bytes + added_bytes);
        if rows > self.options.max_rows || bytes > self.options.max_bytes {
            let (dropped, freed) = trim_oldest(&tx, rows, bytes, &self.options)?;
            rows -= dropped;
            bytes -= freed;
            outcome.dropped_oldest = dropped;
            meta_add(&tx, "dropped_oldest", dropped)?;
        }
        tx.commit()?;
        self.rows = rows;
        self.bytes = bytes;
        outcome.stored = bodies.len() as u64;
        outcome.seqs = bodies.first().zip(bodies.last()).map(|(a, b)| (a.0, b.0));
        if outcome.dropped_oldest + outcome.dropped_newest > 0 {
            tracing::warn!(
                dropped_oldest = outcome.dropped_oldest,
                dropped_newest = outcome.dropped_newest,
                "Buffer full: readings dropped"
            );
        }
        Ok(outcome)
    }

    /// The oldest pending readings, at most `max_readings` of them and about `max_bytes` of JSON
    /// (always at least one reading when any is pending). Nothing is removed.
    pub fn peek(&self, max_readings: usize, max_bytes: u64) -> Result<Option<Pending>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT body FROM readings ORDER BY seq LIMIT ?1")?;
        let mut rows = stmt.query([max_readings.clamp(1, limits::MAX_READINGS) as i64])?;
        let mut readings = Vec::new();
        let mut bytes = 0;
        while let Some(row) = rows.next()? {
            let body = row.get_ref(0)?.as_blob()?;
            if !readings.is_empty() && bytes + body.len() as u64 > max_bytes {
                break;
            }
            bytes += body.len() as u64;
            readings.push(serde_json::from_slice::<Reading>(body)?);
        }
        let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
            return Ok(None);
        };
        let (first, last) = (first.seq, last.seq);
        Ok(Some(Pending { readings, first, last, bytes }))
    }

    /// The cloud has `first..=last`: delete them and note the upload.
    pub fn ack(&mut self, first: Seq, last: Seq) -> Result<u64> {
        let tx = write(&mut self.conn)?;
        let (count, bytes) = delete_range(&tx, first, last)?;
        meta_add(&tx, "uploaded_readings", count)?;
        meta_set(&tx, "last_upload_ms", now_ms())?;
        tx.commit()?;
        self.rows -= count;
        self.bytes -= bytes;
        Ok(count)
    }

    /// The cloud refused `first..=last` for good: move them to quarantine.
    pub fn quarantine(&mut self, first: Seq, last: Seq, status: u16, reason: &str) -> Result<u64> {
        let tx = write(&mut self.conn)?;
        let bodies: Vec<Vec<u8>> = {
            let mut stmt = tx.prepare_cached(
                "SELECT body FROM readings WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq",
            )?;
            stmt.query_map(params![first.get() as i64, last.get() as i64], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut array = Vec::with_capacity(bodies.iter().map(Vec::len).sum::<usize>() + 2);
        array.push(b'[');
        for (i, body) in bodies.iter().enumerate() {
            if i > 0 {
                array.push(b',');
            }
            array.extend_from_slice(body);
        }
        array.push(b']');
        let reason: String = reason.chars().take(1000).collect();
        tx.execute(
            "INSERT INTO quarantine (first_seq, last_seq, readings, status, reason, at_ms, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                first.get() as i64,
                last.get() as i64,
                bodies.len() as i64,
                status,
                reason,
                now_ms(),
                array
            ],
        )?;
        let (count, bytes) = delete_range(&tx, first, last)?;
        meta_add(&tx, "quarantined_batches", 1)?;
        meta_add(&tx, "quarantined_readings", count)?;
        let evicted = tx.execute(
            "DELETE FROM quarantine WHERE id <= (SELECT max(id) FROM quarantine) - ?1",
            [self.options.quarantine_max as i64],
        )?;
        if evicted > 0 {
            meta_add(&tx, "quarantine_evicted", evicted as u64)?;
        }
        tx.commit()?;
        self.rows -= count;
        self.bytes -= bytes;
        tracing::warn!(first = %first, last = %last, status, reason, "Batch quarantined");
        Ok(count)
    }

    /// The quarantined batches, oldest first.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let mut stmt = self.conn.prepare(
            "SELECT first_seq, last_seq, readings, status, reason FROM quarantine ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, u16>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (first, last, readings, status, reason) = row?;
            out.push(Quarantined {
                first: seq_of(first)?,
                last: seq_of(last)?,
                readings: readings as u64,
                status,
                reason,
            });
        }
        Ok(out)
    }

    /// Calls `each` with every pending reading, oldest first (for `buffer export`).
    pub fn for_each_pending(&self, mut each: impl FnMut(&Reading) -> Result<()>) -> Result<u64> {
        let mut stmt = self.conn.prepare("SELECT body FROM readings ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let reading: Reading = serde_json::from_slice(row.get_ref(0)?.as_blob()?)?;
            each(&reading)?;
            count += 1;
        }
        Ok(count)
    }

    /// Records something `status` shows (`link_state`, `last_error`, `config_version`).
    pub fn set_note(&mut self, key: Note, value: &str) -> Result<()> {
        let tx = write(&mut self.conn)?;
        match key {
            Note::ConfigVersion => {
                let version: i64 = value
                    .parse()
                    .map_err(|_| AgentError::Config(format!("config version {value:?}")))?;
                meta_set(&tx, key.key(), version)?;
            }
            _ => meta_set(&tx, key.key(), value)?,
        }
        tx.commit()?;
        Ok(())
    }

    /// Keeps the remote config in force (and its version, which `status` shows).
    pub fn save_remote_config(
        &mut self,
        message: &edgewatch_protocol::ConfigMessage,
    ) -> Result<()> {
        let tx = write(&mut self.conn)?;
        meta_set(&tx, "remote_config", serde_json::to_string(message)?)?;
        meta_set(&tx, Note::ConfigVersion.key(), message.version as i64)?;
        tx.commit()?;
        Ok(())
    }

    /// The remote config last saved, if any.
    pub fn remote_config(&self) -> Result<Option<edgewatch_protocol::ConfigMessage>> {
        let saved: Option<String> = meta_get(&self.conn, "remote_config")?;
        Ok(saved.map(|text| serde_json::from_str(&text)).transpose()?)
    }

    pub fn stats(&self) -> Result<Stats> {
        let conn = &self.conn;
        let count =
            |key: &str| -> Result<u64> { Ok(meta_get::<i64>(conn, key)?.unwrap_or(0) as u64) };
        let oldest: Option<i64> = conn
            .query_row("SELECT ts_ms FROM readings ORDER BY seq LIMIT 1", [], |r| r.get(0))
            .optional()?;
        Ok(Stats {
            pending_readings: self.rows,
            pending_bytes: self.bytes,
            oldest_pending: oldest.and_then(|ms| Timestamp::from_millis(ms).ok()),
            next_seq: count("next_seq")?,
            dropped_oldest: count("dropped_oldest")?,
            dropped_newest: count("dropped_newest")?,
            quarantined_batches: count("quarantined_batches")?,
            quarantined_readings: count("quarantined_readings")?,
            quarantine_evicted: count("quarantine_evicted")?,
            uploaded_readings: count("uploaded_readings")?,
            last_upload: meta_get::<i64>(conn, "last_upload_ms")?
                .and_then(|ms| Timestamp::from_millis(ms).ok()),
            link_state: meta_get(conn, Note::LinkState.key())?,
            config_version: meta_get::<i64>(conn, Note::ConfigVersion.key())?.map(|v| v as u64),
            last_error: meta_get(conn, Note::LastError.key())?,
        })
    }

    /// SQLite's own check of the file, plus this module's invariants: `next_seq` above every
    /// pending and quarantined seq. Returns the problems found (empty when sound).
    pub fn check_integrity(&self) -> Result<Vec<String>> {
        let mut problems: Vec<String> = {
            let mut stmt = self.conn.prepare("PRAGMA integrity_check")?;
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .filter(|line| line != "ok")
                .collect()
        };
        let next: i64 = meta_get(&self.conn, "next_seq")?.unwrap_or(0);
        let max: Option<i64> = self.conn.query_row(
            "SELECT max(m) FROM (SELECT max(seq) AS m FROM readings
                                 UNION ALL SELECT max(last_seq) FROM quarantine)",
            [],
            |r| r.get(0),
        )?;
        if let Some(max) = max
            && max >= next
        {
            problems.push(format!("next_seq {next} is not above the stored seq {max}"));
        }
        Ok(problems)
    }
}

/// The notes `status` shows, kept in `meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    LinkState,
    LastError,
    ConfigVersion,
}

impl Note {
    fn key(self) -> &'static str {
        match self {
            Self::LinkState => "link_state",
            Self::LastError => "last_error",
            Self::ConfigVersion => "config_version",
        }
    }
}

fn check(reading: &NewReading) -> Result<()> {
    if reading.metrics.is_empty() || reading.metrics.len() > limits::MAX_METRICS {
        return Err(AgentError::InvalidReading(format!(
            "{} metrics; 1 to {} are allowed",
            reading.metrics.len(),
            limits::MAX_METRICS
        )));
    }
    if let Some((name, value)) = reading.metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(AgentError::InvalidReading(format!("{name} is {value}, not a finite number")));
    }
    Ok(())
}

fn seq_of(raw: i64) -> Result<Seq> {
    Seq::new(raw as u64).map_err(|e| AgentError::Corrupt(format!("stored seq: {e}")))
}

/// Deletes the oldest pending readings until both caps hold; returns (rows, bytes) dropped.
fn trim_oldest(
    tx: &Transaction<'_>,
    rows: u64,
    bytes: u64,
    options: &BufferOptions,
) -> Result<(u64, u64)> {
    let (mut dropped, mut freed, mut cut) = (0u64, 0u64, None);
    {
        let mut stmt = tx.prepare_cached("SELECT seq, length(body) FROM readings ORDER BY seq")?;
        let mut cursor = stmt.query([])?;
        while rows - dropped > options.max_rows || bytes - freed > options.max_bytes {
            let Some(row) = cursor.next()? else { break };
            cut = Some(row.get::<_, i64>(0)?);
            freed += row.get::<_, i64>(1)? as u64;
            dropped += 1;
        }
    }
    if let Some(cut) = cut {
        tx.execute("DELETE FROM readings WHERE seq <= ?1", [cut])?;
    }
    Ok((dropped, freed))
}

fn delete_range(tx: &Transaction<'_>, first: Seq, last: Seq) -> Result<(u64, u64)> {
    let (count, bytes): (i64, i64) = tx.query_row(
        "SELECT count(*), coalesce(sum(length(body)), 0) FROM readings WHERE seq BETWEEN ?1 AND ?2",
        params![first.get() as i64, last.get() as i64],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    tx.execute(
        "DELETE FROM readings WHERE seq BETWEEN ?1 AND ?2",
        params![first.get() as i64, last.get() as i64],
    )?;
    Ok((count as u64, bytes as u64))
}

fn meta_get<T: rusqlite::types::FromSql>(conn: &Connection, key: &str) -> Result<Option<T>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

fn meta_set(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn meta_add(conn: &Connection, key: &str, by: u64) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
        params![key, by as i64],
    )?;
    Ok(())
}

mod shared;
pub use shared::SharedBuffer;

#[cfg(test)]
mod tests;
