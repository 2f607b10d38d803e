//! Uplinks ship the buffer to the cloud, oldest batch first. One loop ([`drain`]) serves every
//! transport: peek the oldest batch, send it, and only then delete it (acknowledged) or move it
//! to quarantine (refused for good). Anything else (no connection, 5xx, 503, 429, no PUBACK) is
//! retried with exponential backoff and full jitter, so a fleet that lost the cloud together
//! does not come back in lockstep. The drain rate is bounded; live readings queue up behind the
//! backlog in seq order and flow as soon as it is through.

pub mod backoff;
pub mod http;
pub mod mqtt;

use std::{future::Future, sync::Arc, time::Duration};

use edgewatch_protocol::{Batch, DeviceId};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    buffer::{Note, SharedBuffer},
    config::RuntimeConfig,
};
use backoff::Backoff;

/// The most JSON bytes of readings in one batch: half the contract's 1 MiB, leaving room for
/// the envelope and any difference in float formatting.
pub const BATCH_BYTES: u64 = 512 * 1024;

/// How long a stopping agent waits for the answer to the batch in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the cloud did with one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Durably accepted (HTTP 2xx, MQTT PUBACK): delete it.
    Accepted,
    /// Not now: keep it and try again later (`after`: what the server asked for).
    Retry { reason: String, after: Option<Duration> },
    /// Refused for good (a 4xx about the batch): quarantine it.
    Refused { status: u16, reason: String },
}

/// A transport that delivers one batch and says what became of it.
pub trait Uplink: Send + Sync + 'static {
    fn send(&self, batch: &Batch) -> impl Future<Output = Delivery> + Send;
}

/// Drains `buffer` through `uplink` until `shutdown`. `wake` is notified when readings arrive.
pub async fn drain<U: Uplink>(
    buffer: SharedBuffer,
    uplink: Arc<U>,
    device_id: DeviceId,
    config: watch::Receiver<RuntimeConfig>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    let mut link_up: Option<bool> = None;
    let mut note = |buffer: &SharedBuffer, up: bool, detail: String| {
        let changed = link_up != Some(up);
        link_up = Some(up);
        let buffer = buffer.clone();
        async move {
            if changed {
                let state = if up { "up".to_owned() } else { format!("down: {detail}") };
                let _ = buffer.with(move |b| b.set_note(Note::LinkState, &state)).await;
            }
        }
    };
    while !shutdown.is_cancelled() {
        let (max_readings, rate) = {
            let c = config.borrow();
            (c.batch_max_readings, c.drain_rate.max(1))
        };
        let notified = wake.notified();
        let pending = match buffer.with(move |b| b.peek(max_readings, BATCH_BYTES)).await {
            Ok(pending) => pending,
            Err(err) => {
                tracing::error!(%err, "Cannot read the buffer");
                sleep_or_stop(Duration::from_secs(1), &shutdown).await;
                continue;
            }
        };
        let Some(pending) = pending else {
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                () = shutdown.cancelled() => return,
            }
            continue;
        };
        let (first, last, count) = (pending.first, pending.last, pending.readings.len());
        let started = Instant::now();
        let delivery = match Batch::new(device_id, pending.readings) {
            Ok(batch) => {
                let send = uplink.send(&batch);
                tokio::pin!(send);
                tokio::select! {
                    delivery = &mut send => delivery,
                    // Stopping: give the batch in flight a moment to be answered, so it is not
                    // sent twice after the restart.
                    () = shutdown.cancelled() => {
                        match tokio::time::timeout(SHUTDOWN_GRACE, &mut send).await {
                            Ok(delivery) => delivery,
                            Err(_) => return,
                        }
                    }
                }
            }
            // Cannot happen for readings this agent stored; if it does, retrying forever would
            // block everything behind it.
            Err(err) => Delivery::Refused { status: 0, reason: format!("invalid locally: {err}") },
        };
        match delivery {
            Delivery::Accepted => {
                if let Err(err) = buffer.with(move |b| b.ack(first, last)).await {
                    tracing::error!(%err, "Cannot delete an acknowledged batch; it will be resent");
                }
                backoff.reset();
                note(&buffer, true, String::new()).await;
                tracing::debug!(readings = count, first = %first, "Batch acknowledged");
                // The bounded drain rate: `count` readings may take no less than count/rate s.
                let budget = Duration::from_secs_f64(count as f64 / f64::from(rate));
                let elapsed = started.elapsed();
                if budget > elapsed {
                    sleep_or_stop(budget - elapsed, &shutdown).await;
                }
            }
            Delivery::Refused { status, reason } => {
                if let Err(err) =
                    buffer.with(move |b| b.quarantine(first, last, status, &reason)).await
                {
                    tracing::error!(%err, "Cannot quarantine a refused batch");
                    sleep_or_stop(Duration::from_secs(1), &shutdown).await;
                }
                // The link works: the server answered.
                note(&buffer, true, String::new()).await;
            }
            Delivery::Retry { reason, after } => {
                let wait = backoff.next_delay().max(after.unwrap_or_default().min(backoff.cap()));
                tracing::warn!(%reason, retry_in_ms = wait.as_millis() as u64, first = %first, "Upload failed; will retry");
                let detail = reason.clone();
                let _ = buffer.with(move |b| b.set_note(Note::LastError, &detail)).await;
                note(&buffer, false, reason).await;
                sleep_or_stop(wait, &shutdown).await;
            }
        }
    }
}

async fn sleep_or_stop(wait: Duration, shutdown: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = shutdown.cancelled() => {}
    }
}
