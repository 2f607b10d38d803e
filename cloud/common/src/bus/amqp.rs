//! The RabbitMQ adapter (lapin).
//!
//! - One connection per [`AmqpBus`], shared by publishing and by every subscription, plus one
//!   confirm-mode channel for publishing. Messages are persistent, published `mandatory` to the
//!   `edgewatch` topic exchange; `publish` returns after the broker's confirm (a returned or
//!   nacked message is an error).
//! - lapin does not recover by itself, so this module supervises: when the connection is lost,
//!   the next use reconnects (with exponential backoff and jitter between attempts; callers in
//!   between get `Unavailable` at once), redeclares the topology and re-enables confirms. Each
//!   subscription runs a pump task that re-consumes after every reconnect.
//! - Each queue is declared durable with `x-dead-letter-exchange` = `edgewatch.dlx` (direct) and
//!   `x-dead-letter-routing-key` = its own name; `<queue>.dead` is bound there with that key.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use edgewatch_protocol::{DLX_EXCHANGE, EXCHANGE};
use futures_util::{StreamExt, future::BoxFuture};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    options::{
        BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions,
        BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
        QueueBindOptions, QueueDeclareOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    Acker, Bus, BusError, Delivery, Message, Settle, Source, Subscription, Topology,
    dead_letter_queue,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The RabbitMQ bus.
#[derive(Clone)]
pub struct AmqpBus {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    topology: Topology,
    state: Mutex<State>,
    /// Ends the subscriptions' pump tasks when the last handle goes.
    closed: CancellationToken,
}

#[derive(Default)]
struct State {
    live: Option<Live>,
    failures: u32,
    next_attempt: Option<Instant>,
    ever_connected: bool,
}

#[derive(Clone)]
struct Live {
    connection: Arc<Connection>,
    publisher: Channel,
}

impl Live {
    fn healthy(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.closed.cancel();
    }
}

impl AmqpBus {
    /// Connects and declares the topology; fails if the broker cannot be reached now.
    pub async fn connect(url: &str, topology: Topology) -> Result<Self, BusError> {
        let bus = Self::lazy(url, topology);
        bus.inner.live().await?;
        Ok(bus)
    }

    /// A bus that connects on first use (a service may start before its broker).
    pub fn lazy(url: &str, topology: Topology) -> Self {
        Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                topology,
                state: Mutex::new(State::default()),
                closed: CancellationToken::new(),
            }),
        }
    }
}

impl Inner {
    /// The healthy connection, or a new one. Between failed attempts callers fail fast.
    async fn live(&self) -> Result<Live, BusError> {
        let mut state = self.state.lock().await;
        if let Some(live) = state.live.as_ref().filter(|live| live.healthy()) {
            return Ok(live.clone());
        }
        state.live = None;
        if let Some(at) = state.next_attempt
            && Instant::now() < at
        {
            return Err(BusError::Unavailable("reconnecting to RabbitMQ (backing off)".into()));
        }
        match self.open().await {
            Ok(live) => {
                if state.ever_connected {
                    metrics::counter!("edgewatch_bus_reconnects_total").increment(1);
                    tracing::info!(after_failures = state.failures, "Reconnected to RabbitMQ");
                }
                state.ever_connected = true;
                state.failures = 0;
                state.next_attempt = None;
                state.live = Some(live.clone());
                Ok(live)
            }
            Err(err) => {
                state.failures = state.failures.saturating_add(1);
                state.next_attempt = Some(Instant::now() + backoff(state.failures));
                tracing::warn!(%err, failures = state.failures, "Cannot connect to RabbitMQ");
                Err(err)
            }
        }
    }

    async fn open(&self) -> Result<Live, BusError> {
        let properties = ConnectionProperties::default().with_connection_name("edgewatch".into());
        let connection =
            tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties))
                .await
                .map_err(|_| {
                    BusError::Unavailable(format!("no answer within {CONNECT_TIMEOUT:?}"))
                })?
                .map_err(unavailable)?;
        let publisher = connection.create_channel().await.map_err(unavailable)?;
        declare(&publisher, &self.topology).await.map_err(unavailable)?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await.map_err(unavailable)?;
        Ok(Live { connection: Arc::new(connection), publisher })
    }

    async fn forget(&self, broken: &Live) {
        let mut state = self.state.lock().await;
        if state.live.as_ref().is_some_and(|live| Arc::ptr_eq(&live.connection, &broken.connection))
        {
            state.live = None;
        }
    }
}

/// Exponential backoff with jitter, capped.
fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_MIN.saturating_mul(1u32 << failures.min(10)).min(BACKOFF_MAX);
    let jitter = rand::random_range(0.5..1.0);
    exp.mul_f64(jitter)
}

fn unavailable(err: lapin::Error) -> BusError {
    BusError::Unavailable(err.to_string())
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..Default::default() }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

/// Declares exchanges, queues, dead-letter queues and bindings; idempotent.
async fn declare(channel: &Channel, topology: &Topology) -> lapin::Result<()> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            DLX_EXCHANGE.into(),
            ExchangeKind::Direct,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    for queue in &topology.queues {
        let dead = dead_letter_queue(&queue.name);
        channel.queue_declare(dead.as_str().into(), durable_queue(), FieldTable::default()).await?;
        channel
            .queue_bind(
                dead.as_str().into(),
                DLX_EXCHANGE.into(),
                queue.name.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut arguments = FieldTable::default();
        arguments.insert("x-dead-letter-exchange".into(), long_string(DLX_EXCHANGE));
        arguments.insert("x-dead-letter-routing-key".into(), long_string(&queue.name));
        channel.queue_declare(queue.name.as_str().into(), durable_queue(), arguments).await?;
        for binding in &queue.bindings {
            channel
                .queue_bind(
                    queue.name.as_str().into(),
                    EXCHANGE.into(),
                    binding.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    Ok(())
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

#[async_trait]
impl Bus for AmqpBus {
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        let live = self.inner.live().await?;
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        if let Some(id) = &message.message_id {
            properties = properties.with_message_id(ShortString::from(id.as_str()));
        }
        if let Some(request_id) = &message.request_id {
            let mut headers = FieldTable::default();
            headers.insert("x-request-id".into(), long_string(request_id));
            properties = properties.with_headers(headers);
        }
        let publish = async {
            live.publisher
                .basic_publish(
                    EXCHANGE.into(),
                    message.routing_key.as_str().into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    &message.body,
                    properties,
                )
                .await?
                .await
        };
        let confirmation = match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
            Ok(Ok(confirmation)) => confirmation,
            Ok(Err(err)) => {
                self.inner.forget(&live).await;
                return Err(unavailable(err));
            }
            Err(_) => {
                self.inner.forget(&live).await;
                return Err(BusError::Unavailable(format!(
                    "no confirm within {CONFIRM_TIMEOUT:?}"
                )));
            }
        };
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(BusError::Unroutable(message.routing_key)),
            Confirmation::Nack(_) => Err(BusError::Nacked),
            Confirmation::NotRequested => {
                // The channel lost confirm mode: start over on a fresh one.
                self.inner.forget(&live).await;
                Err(BusError::Unavailable("publisher confirms were not enabled".into()))
            }
        }
    }

    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError> {
        if !self.inner.topology.has_queue(queue) {
            return Err(BusError::UnknownQueue(queue.to_owned()));
        }
        let prefetch = prefetch.max(1);
        let (tx, rx) = mpsc::channel(usize::from(prefetch));
        let stop = self.inner.closed.child_token();
        tokio::spawn(pump(Arc::clone(&self.inner), queue.to_owned(), prefetch, tx, stop.clone()));
        Ok(Subscription::new(AmqpSource { rx, stop }))
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.inner.live().await.map(drop)
    }
}

/// Consumes `queue` into `tx` for as long as someone listens, re-consuming after every
/// connection loss.
async fn pump(
    inner: Arc<Inner>,
    queue: String,
    prefetch: u16,
    tx: mpsc::Sender<Delivery>,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        if let Err(err) = consume(&inner, &queue, prefetch, &tx, &stop, &mut failures).await {
            failures = failures.saturating_add(1);
            tracing::warn!(%err, queue, failures, "Consumer lost its channel; re-consuming");
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tx.closed() => return,
            () = tokio::time::sleep(backoff(failures)) => {}
        }
    }
}

/// One consumer on one channel, until the channel fails or the subscription ends. The channel
/// is closed on the way out, which hands every unacked delivery back to the broker.
async fn consume(
    inner: &Inner,
    queue: &str,
    prefetch: u16,
    tx: &mpsc::Sender<Delivery>,
    stop: &CancellationToken,
    failures: &mut u32,
) -> Result<(), BusError> {
    let live = inner.live().await?;
    let channel = live.connection.create_channel().await.map_err(unavailable)?;
    let result = async {
        channel.basic_qos(prefetch, BasicQosOptions::default()).await.map_err(unavailable)?;
        let tag = format!("edgewatch-{}", uuid::Uuid::new_v4());
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        *failures = 0;
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tx.closed() => return Ok(()),
                next = consumer.next() => next,
            };
            let Some(delivery) = next else {
                return Err(BusError::Unavailable("the broker ended the consumer".into()));
            };
            let delivery = delivery.map_err(unavailable)?;
            let message = Message {
                routing_key: delivery.routing_key.to_string(),
                message_id: delivery.properties.message_id().as_ref().map(ToString::to_string),
                request_id: header(&delivery.properties, "x-request-id"),
                body: delivery.data.into(),
            };
            let delivery =
                Delivery::new(message, delivery.redelivered, Box::new(AmqpAcker(delivery.acker)));
            if tx.send(delivery).await.is_err() {
                return Ok(()); // the subscription is gone
            }
        }
    }
    .await;
    let _ = channel.close(200, "subscription ended".into()).await;
    result
}

fn header(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

struct AmqpAcker(lapin::Acker);

impl Acker for AmqpAcker {
    fn settle(self: Box<Self>, how: Settle) -> BoxFuture<'static, Result<(), BusError>> {
        Box::pin(async move {
            let done = match how {
                Settle::Ack => self.0.ack(BasicAckOptions::default()).await,
                Settle::Retry => {
                    self.0.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
                }
                Settle::DeadLetter => self.0.reject(BasicRejectOptions { requeue: false }).await,
            };
            match done {
                Ok(true) => Ok(()),
                // Used already, or its channel is gone: the broker redelivers it.
                Ok(false) | Err(_) => Err(BusError::Stale),
            }
        })
    }
}

struct AmqpSource {
    rx: mpsc::Receiver<Delivery>,
    stop: CancellationToken,
}

#[async_trait]
impl Source for AmqpSource {
    async fn next(&mut self) -> Option<Delivery> {
        self.rx.recv().await
    }
}

impl Drop for AmqpSource {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
