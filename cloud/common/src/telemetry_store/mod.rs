//! The telemetry store port: where readings end up, exactly once per `(device_id, seq)`, with
//! rollups maintained at write time so that long ranges read buckets, not points.
//!
//! Semantics every adapter keeps (and `testkit::conformance::telemetry_store` checks):
//! - [`TelemetryStore::write`] stores the readings it has not seen and counts the others as
//!   duplicates; a redelivered batch changes nothing, rollups included.
//! - Rollups: 1-minute and 1-hour buckets aligned on the epoch, each with count, sum, min, max.
//! - Ranges are half-open, `[from, to)`. [`aggregate`] widens them to whole steps (`from` rounds
//!   down, `to` rounds up) so a bucket is never cut; with that rule the rollups give exactly the
//!   answer of aggregating the raw points.
//!
//! Adapters: [`sqlite`] (embedded, one transaction per write) and [`mongo`] (distributed,
//! exactly once without transactions; its module doc says how).

pub mod mongo;
pub mod sqlite;

use std::{collections::BTreeMap, fmt, str::FromStr, sync::Arc};

use async_trait::async_trait;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Seq, Timestamp};
use serde::{Serialize, Serializer, ser::SerializeTuple};

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("the telemetry store is unavailable: {0}")]
    Unavailable(String),
    #[error("the telemetry store holds data it cannot read: {0}")]
    Corrupt(String),
    #[error("invalid range: {0}")]
    InvalidRange(String),
    #[error("unsupported telemetry store URL `{0}`: use sqlite:// or mongodb://")]
    UnsupportedUrl(String),
}

/// What a write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriteOutcome {
    /// Readings stored now.
    pub accepted: usize,
    /// Readings the store already had.
    pub duplicates: usize,
}

/// A half-open time range `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl TimeRange {
    pub fn new(from: Timestamp, to: Timestamp) -> Result<Self, StoreError> {
        if from > to {
            return Err(StoreError::InvalidRange(format!("from ({from}) is after to ({to})")));
        }
        Ok(Self { from, to })
    }

    /// Widened to whole buckets of `width_ms`.
    fn widen(self, width_ms: i64) -> Self {
        let from = self.from.truncate(width_ms);
        let to_ms = self.to.as_millis();
        let rounded = to_ms - to_ms.rem_euclid(width_ms);
        let to = if rounded == to_ms { to_ms } else { rounded.saturating_add(width_ms) };
        Self { from, to: Timestamp::from_millis(to).unwrap_or(self.to) }
    }
}

/// A rollup tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    Minute,
    Hour,
}

impl Tier {
    pub const ALL: [Tier; 2] = [Tier::Minute, Tier::Hour];

    pub fn width_ms(self) -> i64 {
        match self {
            Tier::Minute => MINUTE_MS,
            Tier::Hour => HOUR_MS,
        }
    }
}

/// One value of one metric at one time; serialized as `[ts, value]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub ts: Timestamp,
    pub value: f64,
}

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&self.ts)?;
        tuple.serialize_element(&self.value)?;
        tuple.end()
    }
}

/// The summary of a bucket of points.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    pub start: Timestamp,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Bucket {
    fn of(start: Timestamp, value: f64) -> Self {
        Self { start, count: 1, sum: value, min: value, max: value }
    }

    fn merge(&mut self, other: &Bucket) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }
}

/// How a bucket is reduced to one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Avg,
    Min,
    Max,
    Sum,
    Count,
}

impl Agg {
    fn apply(self, bucket: &Bucket) -> f64 {
        match self {
            Agg::Avg => bucket.sum / bucket.count as f64,
            Agg::Min => bucket.min,
            Agg::Max => bucket.max,
            Agg::Sum => bucket.sum,
            Agg::Count => bucket.count as f64,
        }
    }
}

impl FromStr for Agg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "avg" => Ok(Agg::Avg),
            "min" => Ok(Agg::Min),
            "max" => Ok(Agg::Max),
            "sum" => Ok(Agg::Sum),
            "count" => Ok(Agg::Count),
            _ => Err(format!("`{s}` is not one of avg, min, max, sum, count")),
        }
    }
}

impl fmt::Display for Agg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Agg::Avg => "avg",
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Sum => "sum",
            Agg::Count => "count",
        })
    }
}

/// The newest reading of a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatestReading {
    pub device_id: DeviceId,
    pub ts: Timestamp,
    pub seq: Seq,
    pub metrics: BTreeMap<MetricName, f64>,
}

/// A metric a device reports, and over which span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MetricSpan {
    pub name: MetricName,
    pub first_ts: Timestamp,
    pub last_ts: Timestamp,
}

/// What to delete, by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    /// Raw readings older than the cutoff.
    Raw,
    /// Rollup buckets of a tier that start before the cutoff.
    Rollup(Tier),
}

/// The telemetry store port.
#[async_trait]
pub trait TelemetryStore: Send + Sync + 'static {
    /// Stores every reading not stored before; updates rollups, catalogue and latest with them.
    async fn write(&self, batches: &[Batch]) -> Result<WriteOutcome, StoreError>;

    /// The reading with the highest seq.
    async fn latest(&self, device: DeviceId) -> Result<Option<LatestReading>, StoreError>;

    /// Every metric of the device, by name.
    async fn metrics(&self, device: DeviceId) -> Result<Vec<MetricSpan>, StoreError>;

    /// Raw points in `range`, oldest first, at most `limit`.
    async fn raw(
        &self,
        device: DeviceId,
        metric: &MetricName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError>;

    /// Rollup buckets of `tier` whose start is in `range`, oldest first.
    async fn rollups(
        &self,
        device: DeviceId,
        metric: &MetricName,
        tier: Tier,
        range: TimeRange,
    ) -> Result<Vec<Bucket>, StoreError>;

    /// Deletes what is older than `before`; returns how many readings (raw) or buckets (rollup)
    /// went.
    async fn purge(&self, what: Purge, before: Timestamp) -> Result<u64, StoreError>;

    /// Whether the store is reachable now (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Finishes writes a crashed writer left half-done; returns how many readings it settled.
    /// Stores whose writes are atomic have nothing to do.
    async fn repair(&self) -> Result<usize, StoreError> {
        Ok(0)
    }
}

/// Picks the adapter by URL scheme.
pub async fn connect(url: &str) -> Result<Arc<dyn TelemetryStore>, StoreError> {
    match crate::config::url_scheme(url) {
        Some("sqlite") => Ok(Arc::new(sqlite::SqliteStore::open(url).await?)),
        Some("mongodb") => Ok(Arc::new(mongo::MongoStore::open(url).await?)),
        _ => Err(StoreError::UnsupportedUrl(url.chars().take(64).collect())),
    }
}

/// Bucketed values of one metric: one point per non-empty step, at the step's start. Read from
/// the coarsest rollup tier that divides `step_ms`, or from raw points when none does.
pub async fn aggregate(
    store: &dyn TelemetryStore,
    device: DeviceId,
    metric: &MetricName,
    range: TimeRange,
    step_ms: i64,
    agg: Agg,
) -> Result<Vec<Point>, StoreError> {
    if step_ms < 1_000 {
        return Err(StoreError::InvalidRange(format!(
            "step must be at least 1s, got {step_ms} ms"
        )));
    }
    let range = range.widen(step_ms);
    let tier = Tier::ALL.into_iter().rev().find(|tier| step_ms % tier.width_ms() == 0);
    let parts = match tier {
        Some(tier) => store.rollups(device, metric, tier, range).await?,
        None => store
            .raw(device, metric, range, usize::MAX)
            .await?
            .into_iter()
            .map(|p| Bucket::of(p.ts, p.value))
            .collect(),
    };
    Ok(regroup(&parts, step_ms)
        .into_iter()
        .map(|bucket| Point { ts: bucket.start, value: agg.apply(&bucket) })
        .collect())
}

/// Merges time-ordered buckets (or single points) into buckets of `step_ms`.
fn regroup(parts: &[Bucket], step_ms: i64) -> Vec<Bucket> {
    let mut out: Vec<Bucket> = Vec::new();
    for part in parts {
        let start = part.start.truncate(step_ms);
        match out.last_mut() {
            Some(last) if last.start == start => last.merge(part),
            _ => out.push(Bucket { start, ..*part }),
        }
    }
    out
}

/// Rollup deltas of a set of newly stored readings, summed per (tier, metric, bucket), for
/// adapters to upsert in one statement each.
pub fn rollup_deltas<'a>(
    readings: impl IntoIterator<Item = &'a edgewatch_protocol::Reading>,
) -> BTreeMap<(Tier, &'a MetricName, Timestamp), Bucket> {
    let mut deltas: BTreeMap<(Tier, &MetricName, Timestamp), Bucket> = BTreeMap::new();
    for reading in readings {
        for (name, value) in &reading.metrics {
            for tier in Tier::ALL {
                let start = reading.ts.truncate(tier.width_ms());
                deltas
                    .entry((tier, name, start))
                    .and_modify(|b| b.merge(&Bucket::of(start, *value)))
                    .or_insert_with(|| Bucket::of(start, *value));
            }
        }
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millis(ms).unwrap()
    }

    #[test]
    fn widening_rounds_out_to_whole_steps() {
        let range = TimeRange::new(ts(61_000), ts(119_000)).unwrap().widen(MINUTE_MS);
        assert_eq!((range.from, range.to), (ts(60_000), ts(120_000)));
        let aligned = TimeRange::new(ts(60_000), ts(120_000)).unwrap().widen(MINUTE_MS);
        assert_eq!((aligned.from, aligned.to), (ts(60_000), ts(120_000)));
        assert!(TimeRange::new(ts(2), ts(1)).is_err());
    }

    #[test]
    fn regroups_and_reduces() {
        let parts =
            [Bucket::of(ts(0), 1.0), Bucket::of(ts(30_000), 3.0), Bucket::of(ts(60_000), 5.0)];
        let buckets = regroup(&parts, MINUTE_MS);
        assert_eq!(buckets.len(), 2);
        assert_eq!(Agg::Avg.apply(&buckets[0]), 2.0);
        assert_eq!(Agg::Count.apply(&buckets[0]), 2.0);
        assert_eq!(Agg::Max.apply(&buckets[0]), 3.0);
        assert_eq!(Agg::Min.apply(&buckets[1]), 5.0);
        assert_eq!(Agg::Sum.apply(&buckets[0]), 4.0);
        assert_eq!("avg".parse::<Agg>(), Ok(Agg::Avg));
        assert!("median".parse::<Agg>().is_err());
    }

    #[test]
    fn points_serialize_as_pairs() {
        let point = Point { ts: ts(0), value: 1.5 };
        assert_eq!(serde_json::to_string(&point).unwrap(), r#"["1970-01-01T00:00:00.000Z",1.5]"#);
    }
}
