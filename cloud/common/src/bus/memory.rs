//! The in-process bus of the embedded shape: a topic exchange over bounded in-memory queues with
//! RabbitMQ's settle semantics (manual ack, requeue on retry, on drop and when a subscription
//! ends; dead-lettering into `<queue>.dead`; prefetch per subscription).
//!
//! Invariants: a message is in exactly one place — a queue's `ready` list or its `unacked` map —
//! from publish until it is acked; `unacked` entries remember their subscription so that ending
//! one requeues them in their original order. A full queue refuses the publish (the publisher
//! answers 503 and its sender keeps the data), so nothing is dropped silently.
//!
//! Not durable by itself: a process crash loses what is queued. Given a [`Journal`] (the
//! [`sqlite`](super::sqlite) adapter), every message is written there before `publish` returns and
//! forgotten there when acked, so the queues here are a cache of the journal's rows; the
//! dispatching (prefetch, requeue order, dead-lettering) stays in this one place.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use async_trait::async_trait;
use futures_util::future::{self, BoxFuture};
use tokio::sync::Notify;

use super::{
    Acker, Bus, BusError, Delivery, Message, Settle, Source, Subscription, Topology,
    dead_letter_queue, topic_matches,
};

/// Messages a queue holds (ready + unacked) before publishes are refused.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Where a journaled bus keeps its messages until they are acked. Ids are the journal's, unique
/// among its live messages and increasing in order of arrival.
pub(crate) trait Journal: Send + Sync + 'static {
    /// Stores one copy of `message` per queue; resolves, with one id per queue, once it is durable.
    fn append(
        &self,
        queues: Vec<String>,
        message: Message,
    ) -> BoxFuture<'static, Result<Vec<u64>, BusError>>;

    /// The copy `id` was acked. Not awaited: losing it to a crash means one harmless redelivery.
    fn remove(&self, id: u64);

    /// The copy `id` now belongs to `queue` (dead-lettered). Not awaited, like [`Self::remove`].
    fn relocate(&self, id: u64, queue: &str);
}

/// A message a journal held when the bus was opened, for the queue it belongs to.
pub(crate) struct Recovered {
    pub queue: String,
    pub id: u64,
    pub message: Message,
}

/// The in-process bus.
#[derive(Clone)]
pub struct MemoryBus {
    queues: Arc<HashMap<String, Arc<Queue>>>,
    bindings: Arc<Vec<(String, Arc<Queue>)>>,
    next_consumer: Arc<AtomicU64>,
    journal: Option<Arc<dyn Journal>>,
}

struct Queue {
    name: String,
    capacity: usize,
    dead: Option<Arc<Queue>>,
    journal: Option<Arc<dyn Journal>>,
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Envelope>,
    /// delivery tag -> (consumer id, envelope)
    unacked: HashMap<u64, (u64, Envelope)>,
    /// Room promised to publishes that are being journaled.
    reserved: usize,
    next_tag: u64,
}

#[derive(Clone)]
struct Envelope {
    message: Message,
    redelivered: bool,
    /// Order of arrival, to requeue in the original order; the journal's id when journaled.
    order: u64,
}

impl Queue {
    fn new(
        name: String,
        capacity: usize,
        dead: Option<Arc<Queue>>,
        journal: Option<Arc<dyn Journal>>,
    ) -> Self {
        Self { name, capacity, dead, journal, state: Mutex::default(), notify: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than losing the bus; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes room for one message, unless the queue is full.
    fn reserve(&self) -> bool {
        let mut state = self.lock();
        let room = state.ready.len() + state.unacked.len() + state.reserved < self.capacity;
        if room {
            state.reserved += 1;
        }
        room
    }

    fn unreserve(&self) {
        let mut state = self.lock();
        state.reserved = state.reserved.saturating_sub(1);
    }

    /// Appends a message: one that took a reservation (`reserved`), or a dead letter or recovered
    /// one that is never refused. `id` is the journal's; without a journal the queue numbers it.
    fn push(&self, message: Message, id: Option<u64>, redelivered: bool, reserved: bool) {
        let mut state = self.lock();
        if reserved {
            state.reserved = state.reserved.saturating_sub(1);
        }
        let order = id.unwrap_or(state.next_tag);
        state.next_tag = state.next_tag.max(order) + 1;
        state.ready.push_back(Envelope { message, redelivered, order });
        drop(state);
        self.notify.notify_waiters();
    }

    /// Puts unacked envelopes back at the front, oldest first.
    fn requeue(&self, mut envelopes: Vec<Envelope>) {
        envelopes.sort_by_key(|e| std::cmp::Reverse(e.order));
        let mut state = self.lock();
        for mut envelope in envelopes {
            envelope.redelivered = true;
            state.ready.push_front(envelope);
        }
        drop(state);
        self.notify.notify_waiters();
    }
}

impl MemoryBus {
    pub fn new(topology: Topology, capacity: usize) -> Self {
        Self::build(topology, capacity, None)
    }

    /// A bus whose messages live in `journal` until acked, starting with what it held (each
    /// marked redelivered: it may have been handed to a consumer before the process ended).
    /// Messages of queues the topology no longer has stay in the journal, undelivered.
    pub(crate) fn journaled(
        topology: Topology,
        capacity: usize,
        journal: Arc<dyn Journal>,
        recovered: Vec<Recovered>,
    ) -> Self {
        let bus = Self::build(topology, capacity, Some(journal));
        let mut orphans = 0usize;
        for Recovered { queue, id, message } in recovered {
            match bus.queues.get(&queue) {
                Some(queue) => queue.push(message, Some(id), true, false),
                None => orphans += 1,
            }
        }
        if orphans > 0 {
            tracing::warn!(orphans, "Kept bus messages of queues no longer declared, undelivered");
        }
        bus
    }

    fn build(topology: Topology, capacity: usize, journal: Option<Arc<dyn Journal>>) -> Self {
        let mut queues = HashMap::new();
        let mut bindings = Vec::new();
        for spec in &topology.queues {
            let dead_name = dead_letter_queue(&spec.name);
            // Dead letters are never refused: they are what is left of a message.
            let dead = Arc::new(Queue::new(dead_name.clone(), usize::MAX, None, journal.clone()));
            let queue = Arc::new(Queue::new(
                spec.name.clone(),
                capacity,
                Some(Arc::clone(&dead)),
                journal.clone(),
            ));
            for pattern in &spec.bindings {
                bindings.push((pattern.clone(), Arc::clone(&queue)));
            }
            queues.insert(dead_name, dead);
            queues.insert(spec.name.clone(), queue);
        }
        Self {
            queues: Arc::new(queues),
            bindings: Arc::new(bindings),
            next_consumer: Arc::new(AtomicU64::new(1)),
            journal,
        }
    }

    /// Messages waiting or in flight in `queue` (for tests and metrics).
    pub fn depth(&self, queue: &str) -> usize {
        self.queues.get(queue).map_or(0, |q| {
            let state = q.lock();
            state.ready.len() + state.unacked.len()
        })
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        let mut targets: Vec<&Arc<Queue>> = self
            .bindings
            .iter()
            .filter(|(pattern, _)| topic_matches(pattern, &message.routing_key))
            .map(|(_, queue)| queue)
            .collect();
        // A queue bound by two matching patterns still gets one copy.
        {
            let mut seen = std::collections::HashSet::new();
            targets.retain(|q| seen.insert(Arc::as_ptr(q)));
        }
        if targets.is_empty() {
            return Err(BusError::Unroutable(message.routing_key));
        }
        // Room first, in every target, so that a refused publish leaves nothing behind.
        if let Some(full) = targets.iter().position(|q| !q.reserve()) {
            targets[..full].iter().for_each(|q| q.unreserve());
            metrics::counter!("edgewatch_bus_rejected_total", "reason" => "queue_full")
                .increment(1);
            let full = targets[full];
            return Err(BusError::Full { queue: full.name.clone(), capacity: full.capacity });
        }
        let ids = match &self.journal {
            None => vec![None; targets.len()],
            Some(journal) => {
                let names = targets.iter().map(|q| q.name.clone()).collect();
                match journal.append(names, message.clone()).await {
                    Ok(ids) if ids.len() == targets.len() => ids.into_iter().map(Some).collect(),
                    outcome => {
                        targets.iter().for_each(|q| q.unreserve());
                        return Err(outcome.err().unwrap_or_else(|| {
                            BusError::Unavailable("the journal lost count of a message".into())
                        }));
                    }
                }
            }
        };
        for (queue, id) in targets.into_iter().zip(ids) {
            queue.push(message.clone(), id, false, true);
        }
        Ok(())
    }

    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError> {
        let queue =
            self.queues.get(queue).ok_or_else(|| BusError::UnknownQueue(queue.to_owned()))?;
        Ok(Subscription::new(MemorySource {
            queue: Arc::clone(queue),
            consumer: self.next_consumer.fetch_add(1, Ordering::Relaxed),
            prefetch: usize::from(prefetch.max(1)),
            in_flight: Arc::new(AtomicUsize::new(0)),
        }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

struct MemorySource {
    queue: Arc<Queue>,
    consumer: u64,
    prefetch: usize,
    in_flight: Arc<AtomicUsize>,
}

#[async_trait]
impl Source for MemorySource {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let notified = self.queue.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) < self.prefetch {
                let mut state = self.queue.lock();
                if let Some(envelope) = state.ready.pop_front() {
                    let tag = state.next_tag;
                    state.next_tag += 1;
                    state.unacked.insert(tag, (self.consumer, envelope.clone()));
                    drop(state);
                    self.in_flight.fetch_add(1, Ordering::AcqRel);
                    let acker = MemoryAcker {
                        queue: Arc::clone(&self.queue),
                        tag,
                        in_flight: Arc::clone(&self.in_flight),
                    };
                    return Some(Delivery::new(
                        envelope.message,
                        envelope.redelivered,
                        Box::new(acker),
                    ));
                }
            }
            notified.await;
        }
    }
}

impl Drop for MemorySource {
    /// A consumer that goes away (or crashes) gives back everything it had not settled.
    fn drop(&mut self) {
        let mut state = self.queue.lock();
        let tags: Vec<u64> = state
            .unacked
            .iter()
            .filter(|(_, (consumer, _))| *consumer == self.consumer)
            .map(|(tag, _)| *tag)
            .collect();
        let envelopes: Vec<Envelope> =
            tags.iter().filter_map(|tag| state.unacked.remove(tag)).map(|(_, e)| e).collect();
        drop(state);
        if !envelopes.is_empty() {
            self.queue.requeue(envelopes);
        }
    }
}

struct MemoryAcker {
    queue: Arc<Queue>,
    tag: u64,
    in_flight: Arc<AtomicUsize>,
}

impl Acker for MemoryAcker {
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), BusError>> {
        // Settled eagerly, so that dropping a delivery outside a runtime still requeues it.
        let taken = self.queue.lock().unacked.remove(&self.tag);
        let Some((_, envelope)) = taken else {
            return Box::pin(future::ready(Err(BusError::Stale)));
        };
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        let journal = self.queue.journal.as_deref();
        match how {
            Settle::Ack => {
                if let Some(journal) = journal {
                    journal.remove(envelope.order);
                }
                self.queue.notify.notify_waiters();
            }
            Settle::Retry => self.queue.requeue(vec![envelope]),
            Settle::DeadLetter => {
                match &self.queue.dead {
                    Some(dead) => {
                        // Moved in the journal before it can be acked from the dead queue.
                        if let Some(journal) = journal {
                            journal.relocate(envelope.order, &dead.name);
                        }
                        dead.push(envelope.message, Some(envelope.order), false, false);
                    }
                    // Poison in a dead-letter queue itself: acking it is the only way forward.
                    None => {
                        if let Some(journal) = journal {
                            journal.remove(envelope.order);
                        }
                        tracing::warn!(queue = %self.queue.name, "Dropped a dead letter's dead letter")
                    }
                }
                self.queue.notify.notify_waiters();
            }
        }
        Box::pin(future::ready(Ok(())))
    }
}
