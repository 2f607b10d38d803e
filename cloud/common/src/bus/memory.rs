//! The in-process bus of the embedded shape: a topic exchange over bounded in-memory queues with
//! RabbitMQ's settle semantics (manual ack, requeue on retry, on drop and when a subscription
//! ends; dead-lettering into `<queue>.dead`; prefetch per subscription).
//!
//! Invariants: a message is in exactly one place — a queue's `ready` list or its `unacked` map —
//! from publish until it is acked; `unacked` entries remember their subscription so that ending
//! one requeues them in their original order. A full queue refuses the publish (the publisher
//! answers 503 and its sender keeps the data), so nothing is dropped silently.
//!
//! Not durable: a process crash loses what is queued. `edgewatch up` shuts down by draining the
//! consumers first; a crash can lose up to the queue's contents (documented in the README).

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

/// The in-process bus.
#[derive(Clone)]
pub struct MemoryBus {
    queues: Arc<HashMap<String, Arc<Queue>>>,
    bindings: Arc<Vec<(String, Arc<Queue>)>>,
    next_consumer: Arc<AtomicU64>,
}

struct Queue {
    name: String,
    capacity: usize,
    dead: Option<Arc<Queue>>,
    state: Mutex<QueueState>,
    notify: Notify,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Envelope>,
    /// delivery tag -> (consumer id, envelope)
    unacked: HashMap<u64, (u64, Envelope)>,
    next_tag: u64,
}

#[derive(Clone)]
struct Envelope {
    message: Message,
    redelivered: bool,
    /// Order of arrival, to requeue in the original order.
    order: u64,
}

impl Queue {
    fn new(name: String, capacity: usize, dead: Option<Arc<Queue>>) -> Self {
        Self { name, capacity, dead, state: Mutex::default(), notify: Notify::new() }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than losing the bus; keep serving.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_full(&self) -> bool {
        let state = self.lock();
        state.ready.len() + state.unacked.len() >= self.capacity
    }

    fn push(&self, message: Message) {
        let mut state = self.lock();
        let order = state.next_tag;
        state.next_tag += 1;
        state.ready.push_back(Envelope { message, redelivered: false, order });
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
        let mut queues = HashMap::new();
        let mut bindings = Vec::new();
        for spec in &topology.queues {
            let dead_name = dead_letter_queue(&spec.name);
            // Dead letters are never refused: they are what is left of a message.
            let dead = Arc::new(Queue::new(dead_name.clone(), usize::MAX, None));
            let queue = Arc::new(Queue::new(spec.name.clone(), capacity, Some(Arc::clone(&dead))));
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
        let mut seen = std::collections::HashSet::new();
        targets.retain(|q| seen.insert(Arc::as_ptr(q)));
        if targets.is_empty() {
            return Err(BusError::Unroutable(message.routing_key));
        }
        if let Some(full) = targets.iter().find(|q| q.is_full()) {
            metrics::counter!("edgewatch_bus_rejected_total", "reason" => "queue_full")
                .increment(1);
            return Err(BusError::Full { queue: full.name.clone(), capacity: full.capacity });
        }
        for queue in targets {
            queue.push(message.clone());
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
        match how {
            Settle::Ack => self.queue.notify.notify_waiters(),
            Settle::Retry => self.queue.requeue(vec![envelope]),
            Settle::DeadLetter => {
                match &self.queue.dead {
                    Some(dead) => dead.push(envelope.message),
                    // Poison in a dead-letter queue itself: acking it is the only way forward.
                    None => {
                        tracing::warn!(queue = %self.queue.name, "Dropped a dead letter's dead letter")
                    }
                }
                self.queue.notify.notify_waiters();
            }
        }
        Box::pin(future::ready(Ok(())))
    }
}
