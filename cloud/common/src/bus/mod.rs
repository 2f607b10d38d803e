//! The event bus port: publish with a confirm, consume with manual acks.
//!
//! Semantics every adapter keeps (and `testkit::conformance::bus` checks):
//! - [`Bus::publish`] returns `Ok` only once the bus holds the message durably (publisher
//!   confirm); a message no queue is bound for is an error, never silently dropped.
//! - A [`Delivery`] is settled exactly once: [`Delivery::ack`] (done), [`Delivery::retry`]
//!   (requeue, delivered again with `redelivered` set) or [`Delivery::dead_letter`] (a poison
//!   message: moved to the queue's dead-letter queue `<queue>.dead`). Dropping a delivery without
//!   settling it retries it; dropping a [`Subscription`] (a crashed consumer) requeues every
//!   delivery it had not settled.
//! - At most `prefetch` deliveries per subscription are unsettled at once.
//!
//! The topology (exchange `edgewatch`, the dead-letter exchange, the queues and their bindings)
//! is declared by every participant on every (re)connect, so publishers never outrun consumers
//! that have not started yet. Adapters: [`amqp`] (RabbitMQ via lapin), [`sqlite`] (in-process and
//! durable, for `edgewatch up`) and [`memory`] (in-process, not durable: tests, and the dispatching
//! under [`sqlite`]), picked by URL in [`connect`].

pub mod amqp;
pub mod memory;
pub mod sqlite;
mod topic;

use std::{fmt, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use edgewatch_protocol::{
    Batch, DEVICE_EVENTS_QUEUE, MONITORING_QUEUE, RoutingKey, telemetry_message_id,
};
use futures_util::future::BoxFuture;

pub use topic::topic_matches;

/// One message on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub routing_key: String,
    pub body: Bytes,
    /// `<device_id>:<seq>` for telemetry; lets consumers and operators recognise a republish.
    pub message_id: Option<String>,
    /// The `x-request-id` of the request that caused it, carried as a header.
    pub request_id: Option<String>,
}

impl Message {
    pub fn new(routing_key: impl fmt::Display, body: impl Into<Bytes>) -> Self {
        Self {
            routing_key: routing_key.to_string(),
            body: body.into(),
            message_id: None,
            request_id: None,
        }
    }

    /// A telemetry batch on `telemetry.<device_id>`.
    pub fn telemetry(batch: &Batch, request_id: Option<String>) -> Self {
        // A validated batch always serializes.
        let body = serde_json::to_vec(batch).unwrap_or_default();
        Self {
            routing_key: RoutingKey::Telemetry(batch.device_id()).to_string(),
            body: body.into(),
            message_id: Some(telemetry_message_id(batch.device_id(), batch.first_seq())),
            request_id,
        }
    }
}

/// A durable queue and the routing-key patterns it is bound with (`*` one word, `#` any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    pub bindings: Vec<String>,
}

/// The queues of a deployment. Declared idempotently by every participant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Topology {
    pub queues: Vec<QueueSpec>,
}

impl Topology {
    /// The topology of API.md: `monitoring.telemetry` bound to `telemetry.*`, and
    /// `monitoring.devices` bound to `device.*` (registry events: live status push, access
    /// cache invalidation).
    pub fn standard() -> Self {
        Self::default()
            .with_queue(MONITORING_QUEUE, &[RoutingKey::ALL_TELEMETRY])
            .with_queue(DEVICE_EVENTS_QUEUE, &[RoutingKey::ALL_DEVICE_EVENTS])
    }

    pub fn with_queue(mut self, name: &str, bindings: &[&str]) -> Self {
        self.queues.push(QueueSpec {
            name: name.to_owned(),
            bindings: bindings.iter().map(|b| (*b).to_owned()).collect(),
        });
        self
    }

    /// Whether `queue` may be consumed: a declared queue or its dead-letter queue.
    pub fn has_queue(&self, queue: &str) -> bool {
        self.queues.iter().any(|q| q.name == queue || dead_letter_queue(&q.name) == queue)
    }
}

/// Where the poison messages of `queue` end up.
pub fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dead")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    #[error("the bus is unavailable: {0}")]
    Unavailable(String),
    #[error("no queue is bound for routing key `{0}`; the message was not taken")]
    Unroutable(String),
    #[error("the broker refused to take the message (negative confirm)")]
    Nacked,
    #[error("queue `{queue}` is full ({capacity} messages); retry later")]
    Full { queue: String, capacity: usize },
    #[error("queue `{0}` is not part of the declared topology")]
    UnknownQueue(String),
    #[error("the delivery is no longer held by this consumer; it will be delivered again")]
    Stale,
    #[error("unsupported bus URL `{0}`: use amqp://, amqps://, sqlite:// or memory://")]
    UnsupportedUrl(String),
}

/// The bus port.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Hands `message` to the bus; `Ok` means it is held durably and routed to at least one queue.
    async fn publish(&self, message: Message) -> Result<(), BusError>;

    /// Starts consuming a declared queue with at most `prefetch` unsettled deliveries.
    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError>;

    /// Whether the bus is reachable now (for `/readyz`).
    async fn ping(&self) -> Result<(), BusError>;
}

/// Picks the adapter by URL scheme: `amqp://`/`amqps://` (RabbitMQ), `sqlite://path` (in-process,
/// kept in a file) or `memory://` (in-process).
pub async fn connect(url: &str, topology: Topology) -> Result<Arc<dyn Bus>, BusError> {
    match crate::config::url_scheme(url) {
        Some("amqp" | "amqps") => Ok(Arc::new(amqp::AmqpBus::connect(url, topology).await?)),
        Some("sqlite") => {
            Ok(Arc::new(sqlite::SqliteBus::connect(url, topology, memory::DEFAULT_CAPACITY).await?))
        }
        Some("memory") => Ok(Arc::new(memory::MemoryBus::new(topology, memory::DEFAULT_CAPACITY))),
        _ => Err(BusError::UnsupportedUrl(url.chars().take(64).collect())),
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settle {
    Ack,
    Retry,
    DeadLetter,
}

/// An adapter's handle on one unsettled delivery.
pub(crate) trait Acker: Send + Sync + 'static {
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), BusError>>;
}

/// A message handed to a consumer; settle it with one of its methods.
pub struct Delivery {
    pub message: Message,
    /// Set when the message was delivered before and not acked (a retry, a consumer crash, a
    /// broker restart): the consumer's write must be idempotent.
    pub redelivered: bool,
    acker: Option<Box<dyn Acker>>,
}

impl Delivery {
    pub(crate) fn new(message: Message, redelivered: bool, acker: Box<dyn Acker>) -> Self {
        if redelivered {
            metrics::counter!("edgewatch_bus_redeliveries_total").increment(1);
        }
        Self { message, redelivered, acker: Some(acker) }
    }

    /// Done: the bus forgets the message.
    pub async fn ack(self) -> Result<(), BusError> {
        self.settle(Settle::Ack).await
    }

    /// Not now: requeue it for another try.
    pub async fn retry(self) -> Result<(), BusError> {
        self.settle(Settle::Retry).await
    }

    /// Never: a poison message, moved to the dead-letter queue for a person to look at.
    pub async fn dead_letter(self) -> Result<(), BusError> {
        metrics::counter!("edgewatch_bus_dead_lettered_total").increment(1);
        self.settle(Settle::DeadLetter).await
    }

    async fn settle(mut self, how: Settle) -> Result<(), BusError> {
        match self.acker.take() {
            Some(acker) => acker.settle(how).await,
            None => Err(BusError::Stale),
        }
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(acker) = self.acker.take() {
            let retry = acker.settle(Settle::Retry);
            // The in-process adapter settles eagerly; RabbitMQ needs the runtime (and without one
            // the channel closing requeues the message anyway).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(retry);
            }
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

/// An adapter's stream of deliveries for one subscription.
#[async_trait]
pub(crate) trait Source: Send + 'static {
    async fn next(&mut self) -> Option<Delivery>;
}

/// A consumer of one queue. Dropping it requeues what it had not settled.
pub struct Subscription(Box<dyn Source>);

impl Subscription {
    pub(crate) fn new(source: impl Source) -> Self {
        Self(Box::new(source))
    }

    /// The next delivery; `None` once the bus is closed for good.
    pub async fn next(&mut self) -> Option<Delivery> {
        self.0.next().await
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subscription")
    }
}
