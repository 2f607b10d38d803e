//! The embedded telemetry store on SQLite (sqlx), schema in `migrations/telemetry-sqlite`.
//!
//! Layout: a row per reading (`readings`: the `(device_id, seq)` exactly-once key, `ts`, and the
//! reading's metrics as one JSON object), 1-minute and 1-hour `rollups`, a `catalogue` of metric
//! spans and the `latest` reading per device. A row per reading rather than per point keeps a
//! reading of 10 metrics at one row and three index entries; the raw range query of one metric
//! scans the device's readings in the range and picks the metric out of each object.
//!
//! A write is one transaction for the whole store call (every batch of a consumer gathering):
//! insert the readings with `ON CONFLICT DO NOTHING RETURNING` to learn which are new, then add
//! only those to the rollups (summed in memory first: one upsert row per tier, device, metric and
//! bucket per call), the catalogue and the latest row. A redelivered batch therefore finds every
//! key present and changes nothing. Statements are multi-row (hundreds of rows each) because
//! per-row round trips would cap the store far below the consumer's rate. Writes are serialized
//! in-process (SQLite has one writer anyway); reads run concurrently thanks to WAL.
//!
//! Durability: WAL with `synchronous = NORMAL` (see `crate::db`). A commit survives the process
//! crashing at any point, so the consumer's "commit, then ack" holds against crashes and kills.
//! A power cut or kernel crash can roll back the transactions committed since the last WAL sync
//! (at most the last checkpoint interval, typically well under a second of writes); RabbitMQ has
//! already forgotten those messages, so they would be lost unless the devices resend. That is
//! the embedded shape's trade (one disk flush per checkpoint instead of per gathering); a
//! deployment that cannot accept it runs the distributed shape.

use std::collections::{BTreeMap, HashMap, HashSet};

use async_trait::async_trait;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Timestamp};
use futures_util::TryStreamExt;
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::Mutex;

use super::{
    Bucket, LatestReading, MetricSpan, Point, Purge, StoreError, TelemetryStore, Tier, TimeRange,
    WriteOutcome, rollup_deltas,
};

/// Rows per multi-row statement: well under SQLite's 32,766 bound variables (8 per row at most).
const CHUNK: usize = 2_000;

pub struct SqliteStore {
    pool: SqlitePool,
    writer: Mutex<()>,
}

fn unavailable(err: sqlx::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn metric(name: String) -> Result<MetricName, StoreError> {
    MetricName::parse(name).map_err(|e| StoreError::Corrupt(format!("metric name {e}")))
}

/// A reading the store did not have, with its device's key.
struct Fresh<'a> {
    device: &'a str,
    reading: &'a Reading,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path/to/file.db`) and brings
    /// its schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = crate::db::sqlite(url, 4).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations/telemetry-sqlite").run(&pool).await.map_err(|e| {
            StoreError::Unavailable(format!("cannot migrate the telemetry database: {e}"))
        })?;
        Ok(Self { pool, writer: Mutex::new(()) })
    }

    /// Inserts the readings of every batch; returns those that were new, in batch order, each
    /// once even when the same key came twice in one call.
    async fn insert_readings<'a>(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        rows: &[(&'a str, &'a Reading, String)],
    ) -> Result<Vec<Fresh<'a>>, StoreError> {
        let mut new_keys: HashSet<(String, i64)> = HashSet::new();
        for chunk in rows.chunks(CHUNK) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO readings (device_id, seq, ts, metrics) ");
            insert.push_values(chunk, |mut row, (device, reading, metrics)| {
                row.push_bind(*device)
                    .push_bind(reading.seq.get() as i64)
                    .push_bind(reading.ts.as_millis())
                    .push_bind(metrics.as_str());
            });
            insert.push(" ON CONFLICT DO NOTHING RETURNING device_id, seq");
            let returned = insert.build().fetch_all(&mut **tx).await.map_err(unavailable)?;
            for row in returned {
                new_keys.insert((
                    row.try_get::<String, _>(0).map_err(unavailable)?,
                    row.try_get::<i64, _>(1).map_err(unavailable)?,
                ));
            }
        }
        Ok(rows
            .iter()
            .filter(|(device, reading, _)| {
                new_keys.remove(&((*device).to_owned(), reading.seq.get() as i64))
            })
            .map(|(device, reading, _)| Fresh { device, reading })
            .collect())
    }

    async fn upsert_rollups(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        fresh: &[Fresh<'_>],
    ) -> Result<(), StoreError> {
        let mut by_device: BTreeMap<&str, Vec<&Reading>> = BTreeMap::new();
        for f in fresh {
            by_device.entry(f.device).or_default().push(f.reading);
        }
        let deltas: Vec<_> = by_device
            .iter()
            .flat_map(|(device, readings)| {
                rollup_deltas(readings.iter().copied())
                    .into_iter()
                    .map(move |((tier, name, _), bucket)| (*device, tier, name, bucket))
            })
            .collect();
        for chunk in deltas.chunks(CHUNK) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO rollups (tier, device_id, metric, bucket, count, sum, min, max) ",
            );
            upsert.push_values(chunk, |mut row, (device, tier, name, bucket)| {
                row.push_bind(tier.width_ms())
                    .push_bind(*device)
                    .push_bind(name.as_str())
                    .push_bind(bucket.start.as_millis())
                    .push_bind(bucket.count as i64)
                    .push_bind(bucket.sum)
                    .push_bind(bucket.min)
                    .push_bind(bucket.max);
            });
            upsert.push(
                " ON CONFLICT (tier, device_id, metric, bucket) DO UPDATE SET \
                 count = count + excluded.count, sum = sum + excluded.sum, \
                 min = min(min, excluded.min), max = max(max, excluded.max)",
            );
            upsert.build().execute(&mut **tx).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn upsert_catalogue(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        fresh: &[Fresh<'_>],
    ) -> Result<(), StoreError> {
        let mut spans: BTreeMap<(&str, &MetricName), (i64, i64)> = BTreeMap::new();
        for f in fresh {
            let ts = f.reading.ts.as_millis();
            for name in f.reading.metrics.keys() {
                spans
                    .entry((f.device, name))
                    .and_modify(|(lo, hi)| (*lo, *hi) = ((*lo).min(ts), (*hi).max(ts)))
                    .or_insert((ts, ts));
            }
        }
        let spans: Vec<_> = spans.into_iter().collect();
        for chunk in spans.chunks(CHUNK) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO catalogue (device_id, metric, first_ts, last_ts) ",
            );
            upsert.push_values(chunk, |mut row, ((device, name), (first, last))| {
                row.push_bind(*device).push_bind(name.as_str()).push_bind(*first).push_bind(*last);
            });
            upsert.push(
                " ON CONFLICT (device_id, metric) DO UPDATE SET \
                 first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts)",
            );
            upsert.build().execute(&mut **tx).await.map_err(unavailable)?;
        }
        Ok(())
    }

    async fn upsert_latest(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        fresh: &[Fresh<'_>],
        encoded: &HashMap<(&str, u64), &str>,
    ) -> Result<(), StoreError> {
        let mut newest: BTreeMap<&str, &Reading> = BTreeMap::new();
        for f in fresh {
            newest
                .entry(f.device)
                .and_modify(|r| {
                    if f.reading.seq > r.seq {
                        *r = f.reading;
                    }
                })
                .or_insert(f.reading);
        }
        let newest: Vec<_> = newest.into_iter().collect();
        for chunk in newest.chunks(CHUNK) {
            let mut upsert =
                QueryBuilder::<Sqlite>::new("INSERT INTO latest (device_id, seq, ts, metrics) ");
            upsert.push_values(chunk, |mut row, (device, reading)| {
                let metrics = encoded.get(&(*device, reading.seq.get())).copied().unwrap_or("{}");
                row.push_bind(*device)
                    .push_bind(reading.seq.get() as i64)
                    .push_bind(reading.ts.as_millis())
                    .push_bind(metrics);
            });
            upsert.push(
                " ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, \
                 metrics = excluded.metrics WHERE excluded.seq > latest.seq",
            );
            upsert.build().execute(&mut **tx).await.map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn write(&self, batches: &[Batch]) -> Result<WriteOutcome, StoreError> {
        let devices: Vec<String> = batches.iter().map(|b| b.device_id().to_string()).collect();
        let mut rows = Vec::with_capacity(batches.iter().map(|b| b.readings().len()).sum());
        for (batch, device) in batches.iter().zip(&devices) {
            for reading in batch.readings() {
                let metrics = serde_json::to_string(&reading.metrics)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                rows.push((device.as_str(), reading, metrics));
            }
        }
        let encoded: HashMap<(&str, u64), &str> = rows
            .iter()
            .map(|(device, reading, metrics)| ((*device, reading.seq.get()), metrics.as_str()))
            .collect();

        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let fresh = Self::insert_readings(&mut tx, &rows).await?;
        if !fresh.is_empty() {
            Self::upsert_rollups(&mut tx, &fresh).await?;
            Self::upsert_catalogue(&mut tx, &fresh).await?;
            Self::upsert_latest(&mut tx, &fresh, &encoded).await?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(WriteOutcome { accepted: fresh.len(), duplicates: rows.len() - fresh.len() })
    }

    async fn latest(&self, device: DeviceId) -> Result<Option<LatestReading>, StoreError> {
        let row = sqlx::query("SELECT seq, ts, metrics FROM latest WHERE device_id = ?")
            .bind(device.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let seq: i64 = row.try_get(0).map_err(unavailable)?;
        let ts: i64 = row.try_get(1).map_err(unavailable)?;
        let metrics: String = row.try_get(2).map_err(unavailable)?;
        Ok(Some(LatestReading {
            device_id: device,
            ts: timestamp(ts)?,
            seq: u64::try_from(seq)
                .ok()
                .and_then(|s| Seq::new(s).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("seq {seq}")))?,
            metrics: serde_json::from_str(&metrics)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        }))
    }

    async fn metrics(&self, device: DeviceId) -> Result<Vec<MetricSpan>, StoreError> {
        let rows = sqlx::query(
            "SELECT metric, first_ts, last_ts FROM catalogue WHERE device_id = ? ORDER BY metric",
        )
        .bind(device.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                Ok(MetricSpan {
                    name: metric(row.try_get(0).map_err(unavailable)?)?,
                    first_ts: timestamp(row.try_get(1).map_err(unavailable)?)?,
                    last_ts: timestamp(row.try_get(2).map_err(unavailable)?)?,
                })
            })
            .collect()
    }

    async fn raw(
        &self,
        device: DeviceId,
        metric: &MetricName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        // The pattern pre-filters rows in SQLite (both writers of `metrics`, serde_json and the
        // 0002 migration, print `"name":value` without spaces); the parse below decides.
        let pattern = format!("{}:", serde_json::Value::from(metric.as_str()));
        let mut rows = sqlx::query(
            "SELECT ts, metrics FROM readings WHERE device_id = ? AND ts >= ? AND ts < ? \
             AND instr(metrics, ?) > 0 ORDER BY ts, seq",
        )
        .bind(device.to_string())
        .bind(range.from.as_millis())
        .bind(range.to.as_millis())
        .bind(pattern)
        .fetch(&self.pool);
        let mut points = Vec::new();
        while points.len() < limit {
            let Some(row) = rows.try_next().await.map_err(unavailable)? else { break };
            let metrics: HashMap<String, f64> =
                serde_json::from_str(row.try_get(1).map_err(unavailable)?)
                    .map_err(|e| StoreError::Corrupt(format!("reading metrics: {e}")))?;
            if let Some(value) = metrics.get(metric.as_str()) {
                points.push(Point {
                    ts: timestamp(row.try_get(0).map_err(unavailable)?)?,
                    value: *value,
                });
            }
        }
        Ok(points)
    }

    async fn rollups(
        &self,
        device: DeviceId,
        metric: &MetricName,
        tier: Tier,
        range: TimeRange,
    ) -> Result<Vec<Bucket>, StoreError> {
        let rows = sqlx::query(
            "SELECT bucket, count, sum, min, max FROM rollups \
             WHERE tier = ? AND device_id = ? AND metric = ? AND bucket >= ? AND bucket < ? ORDER BY bucket",
        )
        .bind(tier.width_ms())
        .bind(device.to_string())
        .bind(metric.as_str())
        .bind(range.from.as_millis())
        .bind(range.to.as_millis())
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let count: i64 = row.try_get(1).map_err(unavailable)?;
                Ok(Bucket {
                    start: timestamp(row.try_get(0).map_err(unavailable)?)?,
                    count: u64::try_from(count)
                        .map_err(|_| StoreError::Corrupt(format!("count {count}")))?,
                    sum: row.try_get(2).map_err(unavailable)?,
                    min: row.try_get(3).map_err(unavailable)?,
                    max: row.try_get(4).map_err(unavailable)?,
                })
            })
            .collect()
    }

    async fn purge(&self, what: Purge, before: Timestamp) -> Result<u64, StoreError> {
        let _writer = self.writer.lock().await;
        let cutoff = before.as_millis();
        let deleted = match what {
            Purge::Raw => sqlx::query("DELETE FROM readings WHERE ts < ?")
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?
                .rows_affected(),
            Purge::Rollup(tier) => sqlx::query("DELETE FROM rollups WHERE tier = ? AND bucket < ?")
                .bind(tier.width_ms())
                .bind(cutoff)
                .execute(&self.pool)
                .await
                .map_err(unavailable)?
                .rows_affected(),
        };
        Ok(deleted)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(unavailable)
    }
}
