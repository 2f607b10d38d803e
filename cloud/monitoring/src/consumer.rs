//! The bus consumer: `monitoring.telemetry` -> telemetry store -> ack -> live push.
//!
//! Deliveries are gathered up to `prefetch` (or for `linger` after the first) and written in one
//! store call, because the store's cost is per call far more than per reading. RabbitMQ may hold
//! twice that many unacked with the consumer, so the next gathering is already delivered when a
//! write ends. A delivery is
//! acked only after the store holds its readings, so a crash or an outage leaves it in RabbitMQ:
//! while the store is down the consumer keeps the batch it holds unacked and retries the write
//! with backoff (readiness red), so the queue waits instead of cycling poison-free messages
//! through redeliveries. Bodies that are not valid batches go to the dead-letter queue at once,
//! counted, and never block the ones behind them. Several replicas may consume: the store's
//! per-(device, seq) dedupe makes any redelivery or overlap harmless.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use edgewatch_common::{
    bus::{Bus, Delivery},
    shutdown::Shutdown,
    telemetry_store::TelemetryStore,
};
use edgewatch_protocol::{
    Batch, DEVICE_EVENTS_QUEUE, DeviceRecord, MONITORING_QUEUE, RoutingKey, StatusEvent, Timestamp,
};

use crate::{config::RetentionConfig, live::Live, registry::Registry};

const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub struct Consumer {
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn TelemetryStore>,
    pub live: Option<Live>,
    pub prefetch: u16,
    pub linger: Duration,
    /// False while the last write failed; read by `/readyz`.
    pub healthy: Arc<AtomicBool>,
    /// The horizons late readings are counted against (see [`crate::retention::count_late`]).
    pub retention: RetentionConfig,
}

impl Consumer {
    /// Consumes until `shutdown`; what it holds unacked then goes back to the queue.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            // Twice the gathering in flight: the next one arrives while this one is written.
            let window = self.prefetch.saturating_mul(2);
            let mut subscription = match self.bus.subscribe(MONITORING_QUEUE, window).await {
                Ok(subscription) => subscription,
                Err(err) => {
                    tracing::warn!(error = %err, "Cannot consume telemetry yet; retrying");
                    sleep_or_stop(&shutdown, &mut backoff).await;
                    continue;
                }
            };
            loop {
                let first = tokio::select! {
                    () = shutdown.cancelled() => return,
                    next = subscription.next() => next,
                };
                let Some(first) = first else { break };
                let mut held = vec![first];
                let deadline = tokio::time::Instant::now() + self.linger;
                while held.len() < usize::from(self.prefetch) {
                    match tokio::time::timeout_at(deadline, subscription.next()).await {
                        Ok(Some(delivery)) => held.push(delivery),
                        Ok(None) | Err(_) => break,
                    }
                }
                if !self.handle(held, &shutdown).await {
                    return;
                }
            }
            tracing::warn!("The telemetry subscription ended; subscribing again");
            sleep_or_stop(&shutdown, &mut backoff).await;
        }
    }

    /// Stores, acks and pushes one gathering of deliveries; false if shutdown came first.
    async fn handle(&self, held: Vec<Delivery>, shutdown: &Shutdown) -> bool {
        let mut deliveries = Vec::with_capacity(held.len());
        let mut batches = Vec::with_capacity(held.len());
        // Late readings are counted on their first delivery only, so a redelivery (stored or
        // not the first time) never counts a reading twice.
        let mut first_deliveries = Vec::new();
        for delivery in held {
            match Batch::from_json(&delivery.message.body) {
                Ok(batch) => {
                    if !delivery.redelivered {
                        first_deliveries.push(batches.len());
                    }
                    batches.push(batch);
                    deliveries.push(delivery);
                }
                Err(err) => {
                    metrics::counter!("edgewatch_monitoring_poison_messages_total").increment(1);
                    tracing::warn!(
                        error = %err,
                        message_id = delivery.message.message_id.as_deref().unwrap_or("-"),
                        routing_key = %delivery.message.routing_key,
                        "Dead-lettering a telemetry message that is not a valid batch"
                    );
                    if let Err(err) = delivery.dead_letter().await {
                        tracing::warn!(error = %err, "Could not dead-letter; it will come back");
                    }
                }
            }
        }
        if batches.is_empty() {
            return true;
        }
        let mut backoff = Duration::from_millis(100);
        let outcome = loop {
            let started = std::time::Instant::now();
            match self.store.write(&batches).await {
                Ok(outcome) => {
                    metrics::histogram!("edgewatch_monitoring_store_write_seconds")
                        .record(started.elapsed().as_secs_f64());
                    break outcome;
                }
                Err(err) => {
                    if self.healthy.swap(false, Ordering::Relaxed) {
                        tracing::error!(error = %err, "The telemetry store refused a write; holding the batch and retrying");
                    }
                    metrics::counter!("edgewatch_monitoring_store_failures_total").increment(1);
                    if !sleep_or_stop(shutdown, &mut backoff).await {
                        return false;
                    }
                }
            }
        };
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("The telemetry store is writable again");
        }
        metrics::counter!("edgewatch_monitoring_readings_stored_total")
            .increment(outcome.accepted as u64);
        metrics::counter!("edgewatch_monitoring_readings_duplicate_total")
            .increment(outcome.duplicates as u64);
        let first: Vec<&Batch> = first_deliveries.iter().map(|&i| &batches[i]).collect();
        crate::retention::count_late(&first, &self.retention, Timestamp::now());
        for delivery in deliveries {
            if let Err(err) = delivery.ack().await {
                // Stored already; the redelivery will be counted as duplicates.
                tracing::warn!(error = %err, "Could not ack a stored message");
            }
        }
        if let Some(live) = &self.live {
            for batch in &batches {
                live.telemetry(batch).await;
            }
        }
        true
    }
}

/// Sleeps the backoff (doubling it up to a bound); false if shutdown came first.
async fn sleep_or_stop(shutdown: &Shutdown, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(wait) => true,
    }
}

/// Follows the registry's `device.*` events: a status change is pushed to live clients, and a
/// device updated or deleted is forgotten by the access cache so a change of owner takes effect
/// at once. Events are only worth acting on while fresh: each is acked once handled, and one
/// that cannot be read is dead-lettered.
pub async fn follow_device_events(
    bus: Arc<dyn Bus>,
    live: Live,
    registry: Arc<dyn Registry>,
    shutdown: Shutdown,
) {
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let mut subscription = match bus.subscribe(DEVICE_EVENTS_QUEUE, 64).await {
            Ok(subscription) => subscription,
            Err(err) => {
                tracing::warn!(error = %err, "Cannot consume device events yet; retrying");
                sleep_or_stop(&shutdown, &mut backoff).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = shutdown.cancelled() => return,
                next = subscription.next() => next,
            };
            let Some(delivery) = next else { break };
            let body = &delivery.message.body;
            let handled = match delivery.message.routing_key.parse::<RoutingKey>() {
                Ok(RoutingKey::DeviceStatus) => match serde_json::from_slice::<StatusEvent>(body) {
                    Ok(event) => {
                        live.status(&event).await;
                        Ok(())
                    }
                    Err(err) => Err(err),
                },
                Ok(RoutingKey::DeviceUpdated | RoutingKey::DeviceDeleted) => {
                    serde_json::from_slice::<DeviceRecord>(body)
                        .map(|device| registry.forget(device.id))
                }
                _ => Ok(()),
            };
            let settled = match handled {
                Ok(()) => delivery.ack().await,
                Err(err) => {
                    tracing::warn!(error = %err, routing_key = %delivery.message.routing_key, "Dead-lettering a device event that cannot be read");
                    delivery.dead_letter().await
                }
            };
            if let Err(err) = settled {
                tracing::warn!(error = %err, "Could not settle a device event");
            }
        }
        sleep_or_stop(&shutdown, &mut backoff).await;
    }
}
