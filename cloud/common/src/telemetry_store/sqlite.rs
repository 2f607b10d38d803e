//! The embedded telemetry store on SQLite (sqlx), schema in `migrations/telemetry-sqlite`.
//!
//! A write is one transaction: insert the readings' keys with `ON CONFLICT DO NOTHING RETURNING`
//! to learn which are new, then insert only those readings' points and add only their values to
//! the rollups, catalogue and latest row. A redelivered batch therefore finds every key present
//! and changes nothing. Statements are multi-row (hundreds of rows each) because per-row round
//! trips would cap the store far below the consumer's rate. Writes are serialized in-process
//! (SQLite has one writer anyway); reads run concurrently thanks to WAL.

use std::collections::{BTreeMap, HashSet};

use async_trait::async_trait;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Timestamp};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::Mutex;

use super::{
    Bucket, LatestReading, MetricSpan, Point, Purge, StoreError, TelemetryStore, Tier, TimeRange,
    WriteOutcome, rollup_deltas,
};

/// Rows per multi-row statement: well under SQLite's 32,766 bound variables.
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

    async fn write_batch(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        batch: &Batch,
    ) -> Result<usize, StoreError> {
        let device = batch.device_id().to_string();
        let mut new_seqs = HashSet::new();
        for chunk in batch.readings().chunks(CHUNK) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO readings (device_id, seq, ts) ");
            insert.push_values(chunk, |mut row, reading| {
                row.push_bind(&device)
                    .push_bind(reading.seq.get() as i64)
                    .push_bind(reading.ts.as_millis());
            });
            insert.push(" ON CONFLICT DO NOTHING RETURNING seq");
            let rows = insert.build().fetch_all(&mut **tx).await.map_err(unavailable)?;
            for row in rows {
                new_seqs.insert(row.try_get::<i64, _>(0).map_err(unavailable)?);
            }
        }
        let fresh: Vec<&Reading> =
            batch.readings().iter().filter(|r| new_seqs.contains(&(r.seq.get() as i64))).collect();
        if fresh.is_empty() {
            return Ok(0);
        }

        let points: Vec<(&Reading, &MetricName, f64)> = fresh
            .iter()
            .flat_map(|r| r.metrics.iter().map(move |(name, value)| (*r, name, *value)))
            .collect();
        for chunk in points.chunks(CHUNK) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO points (device_id, metric, ts, seq, value) ",
            );
            insert.push_values(chunk, |mut row, (reading, name, value)| {
                row.push_bind(&device)
                    .push_bind(name.as_str())
                    .push_bind(reading.ts.as_millis())
                    .push_bind(reading.seq.get() as i64)
                    .push_bind(*value);
            });
            insert.push(" ON CONFLICT DO NOTHING");
            insert.build().execute(&mut **tx).await.map_err(unavailable)?;
        }

        let deltas: Vec<_> = rollup_deltas(fresh.iter().copied()).into_iter().collect();
        for chunk in deltas.chunks(CHUNK) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO rollups (tier, device_id, metric, bucket, count, sum, min, max) ",
            );
            upsert.push_values(chunk, |mut row, ((tier, name, _), bucket)| {
                row.push_bind(tier.width_ms())
                    .push_bind(&device)
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

        let mut spans: BTreeMap<&MetricName, (i64, i64)> = BTreeMap::new();
        for (reading, name, _) in &points {
            let ts = reading.ts.as_millis();
            spans
                .entry(name)
                .and_modify(|(lo, hi)| (*lo, *hi) = ((*lo).min(ts), (*hi).max(ts)))
                .or_insert((ts, ts));
        }
        let spans: Vec<_> = spans.into_iter().collect();
        for chunk in spans.chunks(CHUNK) {
            let mut upsert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO catalogue (device_id, metric, first_ts, last_ts) ",
            );
            upsert.push_values(chunk, |mut row, (name, (first, last))| {
                row.push_bind(&device).push_bind(name.as_str()).push_bind(*first).push_bind(*last);
            });
            upsert.push(
                " ON CONFLICT (device_id, metric) DO UPDATE SET \
                 first_ts = min(first_ts, excluded.first_ts), last_ts = max(last_ts, excluded.last_ts)",
            );
            upsert.build().execute(&mut **tx).await.map_err(unavailable)?;
        }

        if let Some(newest) = fresh.iter().max_by_key(|r| r.seq) {
            let metrics = serde_json::to_string(&newest.metrics)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO latest (device_id, seq, ts, metrics) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (device_id) DO UPDATE SET seq = excluded.seq, ts = excluded.ts, \
                 metrics = excluded.metrics WHERE excluded.seq > latest.seq",
            )
            .bind(&device)
            .bind(newest.seq.get() as i64)
            .bind(newest.ts.as_millis())
            .bind(metrics)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        }
        Ok(fresh.len())
    }
}

#[async_trait]
impl TelemetryStore for SqliteStore {
    async fn write(&self, batches: &[Batch]) -> Result<WriteOutcome, StoreError> {
        let _writer = self.writer.lock().await;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mut outcome = WriteOutcome::default();
        for batch in batches {
            let accepted = Self::write_batch(&mut tx, batch).await?;
            outcome.accepted += accepted;
            outcome.duplicates += batch.readings().len() - accepted;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(outcome)
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
        let rows = sqlx::query(
            "SELECT ts, value FROM points WHERE device_id = ? AND metric = ? AND ts >= ? AND ts < ? \
             ORDER BY ts, seq LIMIT ?",
        )
        .bind(device.to_string())
        .bind(metric.as_str())
        .bind(range.from.as_millis())
        .bind(range.to.as_millis())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                Ok(Point {
                    ts: timestamp(row.try_get(0).map_err(unavailable)?)?,
                    value: row.try_get(1).map_err(unavailable)?,
                })
            })
            .collect()
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
            Purge::Raw => {
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                let points = sqlx::query("DELETE FROM points WHERE ts < ?")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                sqlx::query("DELETE FROM readings WHERE ts < ?")
                    .bind(cutoff)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                points.rows_affected()
            }
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
