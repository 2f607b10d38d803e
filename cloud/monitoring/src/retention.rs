//! Retention: every `interval_s`, delete raw readings and rollups older than their horizons,
//! and let the store settle writes a crashed writer left half-done.
//!
//! Retention goes by a reading's own time, not by when it arrived. A late reading (a device back
//! after days offline) is stored like any other, so it still feeds the 1-minute and 1-hour
//! rollups that cover it, and the raw row keeps its `(device, seq)` key for exactly-once; the
//! next pass then drops whatever of it is already past a tier's horizon. [`count_late`] counts
//! those drops per tier on arrival (`edgewatch_monitoring_late_readings_total{tier}`), so a
//! policy never loses data silently.

use std::{sync::Arc, time::Duration};

use edgewatch_common::{
    shutdown::Shutdown,
    telemetry_store::{Purge, StoreError, TelemetryStore, Tier},
};
use edgewatch_protocol::{Batch, Timestamp};

use crate::config::RetentionConfig;

/// What each tier keeps at `now`: data older than its cutoff goes (tiers kept forever are absent).
fn cutoffs(config: &RetentionConfig, now: Timestamp) -> Vec<(Purge, Timestamp)> {
    [
        (Purge::Raw, config.raw_hours),
        (Purge::Rollup(Tier::Minute), config.minute_hours),
        (Purge::Rollup(Tier::Hour), config.hour_hours),
    ]
    .into_iter()
    .filter(|(_, hours)| *hours > 0)
    .filter_map(|(what, hours)| {
        let horizon_ms = i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000) * 3_600_000;
        Timestamp::from_millis(now.as_millis().saturating_sub(horizon_ms)).ok().map(|c| (what, c))
    })
    .collect()
}

/// One pass; returns how many rows or documents went.
pub async fn purge_once(
    store: &dyn TelemetryStore,
    config: &RetentionConfig,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for (what, cutoff) in cutoffs(config, now) {
        deleted += store.purge(what, cutoff).await?;
    }
    Ok(deleted)
}

/// Counts, per tier, the readings of `batches` that arrive already past that tier's horizon:
/// what the next pass will drop of them. Returns the counts (raw, minute, hour) for tests.
pub fn count_late(batches: &[&Batch], config: &RetentionConfig, now: Timestamp) -> [u64; 3] {
    let mut late = [0u64; 3];
    for (what, cutoff) in cutoffs(config, now) {
        let (slot, tier) = match what {
            Purge::Raw => (0, "raw"),
            Purge::Rollup(Tier::Minute) => (1, "minute"),
            Purge::Rollup(Tier::Hour) => (2, "hour"),
        };
        late[slot] = batches
            .iter()
            .flat_map(|batch| batch.readings())
            .filter(|reading| reading.ts < cutoff)
            .count() as u64;
        if late[slot] > 0 {
            metrics::counter!("edgewatch_monitoring_late_readings_total", "tier" => tier)
                .increment(late[slot]);
        }
    }
    late
}

pub async fn run(store: Arc<dyn TelemetryStore>, config: RetentionConfig, shutdown: Shutdown) {
    let mut tick = tokio::time::interval(Duration::from_secs(config.interval_s.max(1)));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.repair().await {
            Ok(0) => {}
            Ok(settled) => tracing::warn!(settled, "Settled half-done telemetry writes"),
            Err(err) => tracing::warn!(error = %err, "Telemetry repair sweep failed"),
        }
        match purge_once(store.as_ref(), &config, Timestamp::now()).await {
            Ok(deleted) => {
                metrics::counter!("edgewatch_monitoring_retention_deleted_total")
                    .increment(deleted);
            }
            Err(err) => tracing::warn!(error = %err, "Retention pass failed; next pass retries"),
        }
    }
}

#[cfg(test)]
mod tests {
    use edgewatch_common::{
        telemetry_store::{TimeRange, sqlite::SqliteStore},
        testkit::services,
    };
    use edgewatch_protocol::{DeviceId, MetricName};

    use super::*;

    #[tokio::test]
    async fn each_tier_goes_at_its_own_horizon() {
        let store = SqliteStore::open(&services::sqlite_url("retention.db")).await.unwrap();
        let device = DeviceId::new();
        let now = Timestamp::parse("2026-11-26T12:00:00Z").unwrap();
        // One reading 10 days, 2 days and 1 hour before `now`.
        let readings: Vec<String> = [240, 48, 1]
            .iter()
            .enumerate()
            .map(|(i, hours)| {
                let ts = Timestamp::from_millis(now.as_millis() - hours * 3_600_000).unwrap();
                format!(r#"{{"seq":{},"ts":"{ts}","metrics":{{"x":1}}}}"#, i + 1)
            })
            .collect();
        let json = format!(r#"{{"device_id":"{device}","readings":[{}]}}"#, readings.join(","));
        store.write(&[Batch::from_json(json.as_bytes()).unwrap()]).await.unwrap();

        let config =
            RetentionConfig { raw_hours: 24, minute_hours: 72, hour_hours: 0, interval_s: 1 };
        let batch = Batch::from_json(json.as_bytes()).unwrap();
        // Had they arrived only now: two are past the raw horizon, one past the minute one.
        assert_eq!(count_late(&[&batch], &config, now), [2, 1, 0]);
        let deleted = purge_once(&store, &config, now).await.unwrap();
        // Raw: two readings; 1m rollups: one bucket (10 days); 1h rollups kept forever.
        assert_eq!(deleted, 3);
        let x = MetricName::parse("x").unwrap();
        let all = TimeRange::new(Timestamp::from_millis(0).unwrap(), now).unwrap();
        assert_eq!(store.raw(device, &x, all, 10).await.unwrap().len(), 1);
        assert_eq!(store.rollups(device, &x, Tier::Minute, all).await.unwrap().len(), 2);
        assert_eq!(store.rollups(device, &x, Tier::Hour, all).await.unwrap().len(), 3);
    }
}
