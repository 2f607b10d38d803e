//! The MQTT ingest bridge: subscribes to every device's telemetry and status topics on the
//! broker and hands each message to the same service calls as HTTP ([`Devices::ingest_mqtt`],
//! [`Devices::report_status`]).
//!
//! With edgewatch's own broker, device telemetry does not come this way any more: the broker's
//! front hands it to the service directly (in process, or over HTTP ingest) and acknowledges it
//! only after the bus confirm (broker/README.md), so the telemetry subscription stays idle and
//! this bridge carries status. The telemetry path here is for a third-party broker (Mosquitto,
//! EMQX), which acknowledges a device's publish from memory before this bridge has it.
//!
//! Delivery: QoS 1 with manual acks on a persistent session (`clean_session = false`). A message
//! is acked (PUBACK) only once it is safe — on the bus with a confirm — or refused for good
//! (invalid, another device's batch, unknown device: acking stops it from looping). While the bus
//! or the database is down the handler keeps the message unacked and retries with backoff; if the
//! service stops first, the broker delivers the message again to the session (or, after its end,
//! to another member of the group). Duplicates on the bus are fine: the store dedupes by seq.
//!
//! Scaling: both filters are shared subscriptions (`$share/<group>/...`), so the replicas of the
//! service split the messages. For the same reason the retained status messages are not replayed
//! to the bridge on subscribe; live ones (and wills) are, and the offline sweep covers devices
//! that went silent while no replica listened.
//!
//! The broker bounds how many unacked messages it sends this client (Mosquitto's
//! `max_inflight_messages`), which bounds the handler tasks; `concurrency` caps how many of them
//! work at once.
//!
//! Size: the client takes packets up to 2 MiB, twice the batch limit, so an oversize batch is
//! refused (and acked) by the batch parser. A bigger packet breaks the connection, and the broker
//! would deliver it again on every reconnect: the broker must cap payloads at 2 MiB or less
//! (Mosquitto `message_size_limit`, rumqttd `max_payload_size`).

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use edgewatch_common::shutdown::Shutdown;
use edgewatch_protocol::{TELEMETRY_FILTER, Topic, limits};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS, SubscribeReasonCode,
};
use tokio::{
    sync::{Semaphore, mpsc, oneshot},
    task::JoinSet,
};

use crate::service::{Devices, Handled};

/// Every device's status topic (retained by the broker; also each device's will).
pub const STATUS_FILTER: &str = "edgewatch/v1/devices/+/status";

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a stopping bridge waits for in-flight handlers so that their acks go out.
const DRAIN: Duration = Duration::from_secs(5);

/// How the bridge connects.
#[derive(Debug, Clone)]
pub struct BridgeOptions {
    /// `mqtt://host:port`.
    pub url: String,
    /// Stable per replica, so that a restart resumes its persistent session.
    pub client_id: String,
    /// The shared-subscription group the replicas of one deployment share; empty for plain
    /// subscriptions (a single bridge, as in `edgewatch up`).
    pub share_group: String,
    pub credentials: Option<(String, String)>,
    /// Messages handled at once.
    pub concurrency: usize,
}

impl BridgeOptions {
    /// The two subscriptions, shared by `share_group` when there is one.
    pub fn filters(&self) -> [String; 2] {
        if self.share_group.is_empty() {
            return [TELEMETRY_FILTER.to_owned(), STATUS_FILTER.to_owned()];
        }
        [
            format!("$share/{}/{TELEMETRY_FILTER}", self.share_group),
            format!("$share/{}/{STATUS_FILTER}", self.share_group),
        ]
    }
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_MIN.saturating_mul(1 << failures.min(6)).min(BACKOFF_MAX)
}

/// Connects (in the background, reconnecting with backoff) and bridges until `shutdown`.
pub fn start(
    options: BridgeOptions,
    devices: Devices,
    shutdown: Shutdown,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (host, port) = super::parse(&options.url)?;
    if options.share_group.contains(['/', '+', '#']) {
        return Err(format!("`{}` is not a valid shared-subscription group", options.share_group));
    }
    let mut mqtt = MqttOptions::new(options.client_id.clone(), host, port);
    mqtt.set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(true)
        // A batch may be 1 MiB; a bigger one still arrives and is refused (and acked) by the
        // batch parser instead of breaking the connection.
        .set_max_packet_size(2 * limits::MAX_BATCH_BYTES, 64 * 1024);
    if let Some((user, password)) = &options.credentials {
        mqtt.set_credentials(user, password);
    }
    let (client, events) = AsyncClient::new(mqtt, 1024);
    Ok(tokio::spawn(run(options, client, events, devices, shutdown)))
}

async fn run(
    options: BridgeOptions,
    client: AsyncClient,
    mut events: EventLoop,
    devices: Devices,
    shutdown: Shutdown,
) {
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = JoinSet::new();
    // MQTT wants PUBACKs in the order the PUBLISHes came (3.1.1 section 4.6; rumqttd drops a
    // subscriber that acks out of order), while handlers finish in any order: each message
    // queues here in arrival order and is acked when it and every message before it are done.
    let (in_order, acks) = mpsc::unbounded_channel::<(Publish, oneshot::Receiver<()>)>();
    let acker = tokio::spawn(ack_in_order(client.clone(), acks));
    let mut failures = 0u32;
    let mut subacks = 0usize;
    let subscribed = |yes: bool| {
        devices.bridge_subscribed.store(yes, Ordering::Release);
        metrics::gauge!("edgewatch_devices_mqtt_subscribed").set(if yes { 1.0 } else { 0.0 });
    };
    loop {
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.poll() => match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    if failures > 0 {
                        metrics::counter!("edgewatch_devices_mqtt_reconnects_total").increment(1);
                    }
                    failures = 0;
                    subacks = 0;
                    tracing::info!(session_present = ack.session_present, client_id = %options.client_id, "MQTT bridge connected");
                    // Every ConnAck: a broker that lost the session has lost the subscriptions.
                    for filter in options.filters() {
                        if let Err(err) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                            tracing::error!(%err, %filter, "Cannot subscribe");
                        }
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack.return_codes.iter().any(|code| matches!(code, SubscribeReasonCode::Failure)) {
                        tracing::error!(client_id = %options.client_id, "The broker refused a bridge subscription");
                    } else {
                        subacks += 1;
                        if subacks == options.filters().len() {
                            subscribed(true);
                        }
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    let (done, handled) = oneshot::channel();
                    let _ = in_order.send((publish.clone(), handled));
                    let (devices, permits, shutdown) =
                        (devices.clone(), Arc::clone(&permits), shutdown.clone());
                    tasks.spawn(async move {
                        let Ok(_permit) = permits.acquire_owned().await else { return };
                        if handle(&devices, publish, &shutdown).await {
                            let _ = done.send(());
                        }
                    });
                }
                Ok(_) => {}
                Err(err) => {
                    subscribed(false);
                    failures = failures.saturating_add(1);
                    tracing::warn!(%err, failures, "MQTT bridge disconnected; reconnecting");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff(failures)) => {}
                    }
                }
            },
        }
    }
    // Let the handlers finish (they stop retrying now) while the loop still sends their acks.
    let drained = tokio::time::timeout(DRAIN, async {
        loop {
            tokio::select! {
                done = tasks.join_next() => if done.is_none() { break },
                event = events.poll() => if event.is_err() { break },
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = tasks.len(),
            "MQTT bridge stopped with messages in flight; the broker keeps them"
        );
    }
    tasks.abort_all();
    drop(in_order);
    let _ = tokio::time::timeout(Duration::from_secs(1), acker).await;
    if client.try_disconnect().is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), events.poll()).await;
    }
    subscribed(false);
    tracing::info!("MQTT bridge stopped");
}

/// Acks each message once it is handled, in arrival order. A message left unhandled (the service
/// stops) ends the acking: it and everything after it are delivered again by the broker.
async fn ack_in_order(
    client: AsyncClient,
    mut queue: mpsc::UnboundedReceiver<(Publish, oneshot::Receiver<()>)>,
) {
    while let Some((publish, handled)) = queue.recv().await {
        if handled.await.is_err() {
            return;
        }
        if let Err(err) = client.ack(&publish).await {
            tracing::warn!(%err, topic = %publish.topic, "Cannot ack; the broker will deliver it again");
        }
    }
}

/// Handles one message until it is accepted or refused (true: ack it) or the service stops
/// (false: leave it unacked for the broker to deliver again).
async fn handle(devices: &Devices, publish: Publish, shutdown: &Shutdown) -> bool {
    let topic = publish.topic.clone();
    let mut failures = 0u32;
    loop {
        let outcome = match Topic::parse(&topic) {
            Ok(Topic::Telemetry(id)) => devices.ingest_mqtt(id, &publish.payload).await,
            Ok(Topic::Status(id)) => devices.report_status(id, &publish.payload).await,
            _ => {
                tracing::warn!(%topic, "Dropped a message on a topic the bridge does not handle");
                Ok(Handled::Refused("unknown_topic"))
            }
        };
        match outcome {
            Ok(_) => return true,
            Err(err) => {
                failures = failures.saturating_add(1);
                metrics::counter!("edgewatch_devices_mqtt_retries_total").increment(1);
                tracing::warn!(%err, %topic, failures, "Cannot take an MQTT message now; keeping it unacked and retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return false,
                    () = tokio::time::sleep(backoff(failures)) => {}
                }
            }
        }
    }
}
