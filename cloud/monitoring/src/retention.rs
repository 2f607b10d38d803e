//! Retention: every `interval_s`, delete raw readings and rollups older than their horizons,
//! and let the store settle writes a crashed writer left half-done.

use std::{sync::Arc, time::Duration};

use edgewatch_common::{
    shutdown::Shutdown,
    telemetry_store::{Purge, StoreError, TelemetryStore, Tier},
};
use edgewatch_protocol::Timestamp;

use crate::config::RetentionConfig;

/// One pass; returns how many rows or documents went.
pub async fn purge_once(
    store: &dyn TelemetryStore,
    config: &RetentionConfig,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let mut deleted = 0;
    for (what, hours) in [
        (Purge::Raw, config.raw_hours),
        (Purge::Rollup(Tier::Minute), config.minute_hours),
        (Purge::Rollup(Tier::Hour), config.hour_hours),
    ] {
        if hours == 0 {
            continue;
        }
        let horizon_ms = i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000) * 3_600_000;
        let Ok(cutoff) = Timestamp::from_millis(now.as_millis().saturating_sub(horizon_ms)) else {
            continue;
        };
        deleted += store.purge(what, cutoff).await?;
    }
    Ok(deleted)
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
    use edgewatch_protocol::{Batch, DeviceId, MetricName};

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
