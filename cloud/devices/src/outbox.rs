//! The outbox relay: publishes the `device_outbox` rows (written in the same transaction as the
//! registry change they describe) to the bus in id order, and deletes each row only after the
//! bus confirmed it. When the bus cannot take an event the relay backs off and tries the same
//! event again, so an outage delays events and never drops or reorders them.
//!
//! One relay per deployment: every replica runs this loop, but only the one that holds the
//! store's [`RelayLock`] relays (PostgreSQL: a session-level advisory lock on a connection of
//! its own; SQLite: one process, always held). The others check every [`POLL`] and take over
//! when the holder stops or dies — PostgreSQL releases the lock with its session. Two replicas
//! relaying at once would publish the same rows twice and interleave their batches out of
//! order; with the lock, events leave in id order, which for one device is the order of its
//! writes (they lock its row in turn). The holder checks the lock before every round, so after
//! a lost session at most the round in flight overlaps with the next holder's.
//!
//! Delivery is at least once: a crash between the confirm and the delete, or that overlap,
//! republishes an event with the same `message_id`, by which consumers recognise it. A write on
//! a standby replica wakes only its own (idle) loop: the holder sees the row within [`POLL`].

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use edgewatch_common::{
    bus::{Bus, Message},
    shutdown::Shutdown,
};
use tokio::sync::Notify;

use crate::repository::{DeviceRepository, RelayLock};

/// Rows read per round.
const BATCH: usize = 200;
/// How often the relay looks without being woken (rows written by other replicas, missed wakes).
const POLL: Duration = Duration::from_secs(1);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Wakes the relay after a write, and tells whether this replica is the relay; cheap to clone.
#[derive(Clone, Default)]
pub struct Wake {
    notify: Arc<Notify>,
    relaying: Arc<AtomicBool>,
}

impl Wake {
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Whether this replica's relay holds the lock (is the deployment's relay) now.
    pub fn relaying(&self) -> bool {
        self.relaying.load(Ordering::Acquire)
    }

    fn set_relaying(&self, yes: bool) {
        if self.relaying.swap(yes, Ordering::AcqRel) != yes {
            tracing::info!(
                relaying = yes,
                "Outbox relay {}",
                if yes { "took over" } else { "stood down" }
            );
        }
        metrics::gauge!("edgewatch_devices_outbox_relaying").set(if yes { 1.0 } else { 0.0 });
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Every pending row (at most [`BATCH`]) went out; `n` of them.
    Relayed(usize),
    /// The bus or the database refused; `n` rows went out before that.
    Stalled(usize),
}

/// Publishes pending rows until one fails; deletes the ones the bus confirmed.
pub async fn relay_once(repo: &dyn DeviceRepository, bus: &dyn Bus) -> Round {
    let pending = match repo.outbox_pending(BATCH).await {
        Ok(pending) => pending,
        Err(err) => {
            tracing::warn!(%err, "Cannot read the event outbox");
            return Round::Stalled(0);
        }
    };
    let mut done = Vec::with_capacity(pending.len());
    let mut stalled = false;
    for event in pending {
        let mut message = Message::new(&event.routing_key, event.body.into_bytes());
        message.message_id = Some(event.message_id);
        match bus.publish(message).await {
            Ok(()) => done.push(event.id),
            Err(err) => {
                tracing::warn!(%err, routing_key = %event.routing_key, "Cannot relay a device event; will retry");
                metrics::counter!("edgewatch_devices_outbox_publish_failures_total").increment(1);
                stalled = true;
                break;
            }
        }
    }
    let relayed = done.len();
    if relayed > 0 {
        metrics::counter!("edgewatch_devices_outbox_relayed_total").increment(relayed as u64);
        if let Err(err) = repo.outbox_delete(&done).await {
            // Published but still in the outbox: they go out again (same message ids).
            tracing::warn!(%err, relayed, "Cannot delete relayed events from the outbox");
            return Round::Stalled(relayed);
        }
    }
    if stalled { Round::Stalled(relayed) } else { Round::Relayed(relayed) }
}

/// Runs the relay until `shutdown`: waits to hold the store's relay lock, then relays while it
/// holds it.
pub fn spawn(
    repo: Arc<dyn DeviceRepository>,
    bus: Arc<dyn Bus>,
    wake: Wake,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut lock = repo.relay_lock();
        let mut failures = 0u32;
        loop {
            let wait = match hold(lock.as_mut(), &wake).await {
                false => Some(POLL),
                true => match relay_once(repo.as_ref(), bus.as_ref()).await {
                    Round::Relayed(n) if n >= BATCH => {
                        failures = 0;
                        continue;
                    }
                    Round::Relayed(_) => {
                        failures = 0;
                        None
                    }
                    Round::Stalled(_) => {
                        failures = failures.saturating_add(1);
                        Some(BACKOFF_MIN.saturating_mul(1 << failures.min(6)).min(BACKOFF_MAX))
                    }
                },
            };
            match wait {
                // Backing off or standing by: a wake does not cut it short.
                Some(wait) => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                },
                None => tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = wake.notify.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                },
            }
        }
        // Dropping the lock's connection releases it: a standby takes over within its poll.
        drop(lock);
        wake.set_relaying(false);
        tracing::debug!("Outbox relay stopped");
    })
}

/// Whether this replica may relay now (see [`RelayLock::hold`]).
async fn hold(lock: &mut dyn RelayLock, wake: &Wake) -> bool {
    let held = match lock.hold().await {
        Ok(held) => held,
        Err(err) => {
            tracing::warn!(%err, "Cannot take or check the outbox relay lock");
            false
        }
    };
    wake.set_relaying(held);
    held
}
