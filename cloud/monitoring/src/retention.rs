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
