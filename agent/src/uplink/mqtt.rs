//! The MQTT uplink (rumqttc, MQTT 3.1.1): batches go to `edgewatch/v1/devices/{id}/telemetry`
//! at QoS 1 in a persistent session (`clean_session=false`), and a batch counts as delivered
//! only when its PUBACK arrives. The retained status topic says `online: true` on every connect
//! (with the config version in force), and the will, also retained, says `online: false` when
//! the link dies. The retained config topic is subscribed on every ConnAck, so a config pushed
//! while the device was away arrives on reconnect.
//!
//! Matching PUBACKs to batches: rumqttc reports `Outgoing::Publish(pkid)` in the order requests
//! were queued, so each new publish pushes its waiter on a FIFO under the same lock that queues
//! it; the session task pops the FIFO when a new pkid goes out and resolves the waiter on that
//! pkid's PUBACK. A retransmission after reconnect carries a pkid already known and pops
//! nothing. If the broker lost the session, or no PUBACK comes within [`ACK_TIMEOUT`], the
//! batch is retried; at worst it is delivered twice, which the cloud's (device_id, seq) key
//! absorbs.
//!
//! An endpoint with `tls: true` (from enrollment) is reached over TLS (rustls with ring, the
//! provider that cross-compiles to ARM without cmake), trusting the system's CA store or, for a
//! private broker, the CA file given with `--mqtt-ca`.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use edgewatch_protocol::{Batch, ConfigMessage, StatusMessage, Timestamp, Topic};
use rumqttc::{
    AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS, TlsConfiguration,
    Transport,
};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Uplink, backoff::Backoff};
use crate::{
    AgentError, Result, buffer::SharedBuffer, config::RuntimeConfig, enroll::Credentials,
    run::apply_remote,
};

/// How long a batch waits for its PUBACK before it is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);

type Waiter = Option<oneshot::Sender<Delivery>>;

#[derive(Default)]
struct Inflight {
    /// Publishes queued but not yet given a pkid, in queue order.
    queued: VecDeque<Waiter>,
    /// Publishes sent and waiting for their PUBACK.
    sent: HashMap<u16, Waiter>,
}

impl Inflight {
    fn fail_all(&mut self, reason: &str) {
        for waiter in self.queued.drain(..).chain(self.sent.drain().map(|(_, w)| w)).flatten() {
            let _ = waiter.send(Delivery::Retry { reason: reason.to_owned(), after: None });
        }
    }
}

#[derive(Clone)]
pub struct MqttUplink {
    client: AsyncClient,
    telemetry: String,
    inflight: Arc<Mutex<Inflight>>,
}

/// The client side of TLS: the CA file's certificates when one is given, else the system's.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let tls = |what: &str, err: &dyn std::fmt::Display| {
        AgentError::Config(format!("MQTT TLS: {what}: {err}"))
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| tls(&format!("reading the CA file {}", path.display()), &e))?;
            if certs.is_empty() {
                return Err(AgentError::Config(format!(
                    "MQTT TLS: {} holds no PEM certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| tls("a certificate of the CA file", &e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(AgentError::Config(
                    "MQTT TLS: the system has no CA certificates (install ca-certificates, or pass --mqtt-ca FILE)".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("protocol versions", &e))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn lock(inflight: &Mutex<Inflight>) -> std::sync::MutexGuard<'_, Inflight> {
    inflight.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MqttUplink {
    /// Builds the client; the returned future is the session task (poll it on its own task).
    pub fn start(
        credentials: &Credentials,
        ca_file: Option<&Path>,
        buffer: SharedBuffer,
        config: watch::Sender<RuntimeConfig>,
        shutdown: CancellationToken,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static)> {
        let id = credentials.device_id;
        let status_topic = Topic::Status(id).to_string();
        let config_topic = Topic::Config(id).to_string();
        let mut options =
            MqttOptions::new(id.to_string(), credentials.mqtt.host.clone(), credentials.mqtt.port);
        options
            .set_credentials(id.to_string(), credentials.device_secret.clone())
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(2 << 20, 2 << 20)
            .set_last_will(LastWill::new(
                status_topic.clone(),
                status_payload(false, None),
                QoS::AtLeastOnce,
                true,
            ));
        if credentials.mqtt.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(
                tls_config(ca_file)?,
            ))));
        }
        let (client, eventloop) = AsyncClient::new(options, 64);
        let uplink = Self {
            client,
            telemetry: Topic::Telemetry(id).to_string(),
            inflight: Arc::new(Mutex::new(Inflight::default())),
        };
        let session = Session {
            uplink: uplink.clone(),
            eventloop,
            status_topic,
            config_topic,
            buffer,
            config,
        };
        Ok((uplink, session.run(shutdown)))
    }

    /// Queues a QoS 1 publish and its waiter atomically (see the module doc).
    fn queue(&self, topic: &str, payload: Vec<u8>, retain: bool, waiter: Waiter) -> bool {
        let mut inflight = lock(&self.inflight);
        match self.client.try_publish(topic, QoS::AtLeastOnce, retain, payload) {
            Ok(()) => {
                inflight.queued.push_back(waiter);
                true
            }
            Err(err) => {
                tracing::debug!(%err, "MQTT request queue full");
                false
            }
        }
    }
}

impl Uplink for MqttUplink {
    async fn send(&self, batch: &Batch) -> Delivery {
        let payload = match serde_json::to_vec(batch) {
            Ok(payload) => payload,
            Err(e) => return Delivery::Refused { status: 0, reason: format!("encoding: {e}") },
        };
        let (tx, rx) = oneshot::channel();
        if !self.queue(&self.telemetry, payload, false, Some(tx)) {
            return Delivery::Retry { reason: "the MQTT client is busy".into(), after: None };
        }
        match tokio::time::timeout(ACK_TIMEOUT, rx).await {
            Ok(Ok(delivery)) => delivery,
            Ok(Err(_)) => Delivery::Retry { reason: "the MQTT session ended".into(), after: None },
            Err(_) => Delivery::Retry { reason: "no PUBACK in time".into(), after: None },
        }
    }
}

fn status_payload(online: bool, config_version: Option<u64>) -> Vec<u8> {
    let status = StatusMessage {
        online,
        ts: Timestamp::now(),
        agent_version: Some(env!("CARGO_PKG_VERSION").into()),
        config_version: config_version.filter(|v| *v > 0),
    };
    serde_json::to_vec(&status).unwrap_or_default()
}

struct Session {
    uplink: MqttUplink,
    eventloop: EventLoop,
    status_topic: String,
    config_topic: String,
    buffer: SharedBuffer,
    config: watch::Sender<RuntimeConfig>,
}

impl Session {
    fn publish_status(&self, online: bool) {
        let version = self.config.borrow().version;
        self.uplink.queue(&self.status_topic, status_payload(online, Some(version)), true, None);
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut config_changes = self.config.subscribe();
        loop {
            let event = tokio::select! {
                event = self.eventloop.poll() => event,
                Ok(()) = config_changes.changed() => {
                    self.publish_status(true);
                    continue;
                }
                () = shutdown.cancelled() => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    backoff.reset();
                    tracing::info!(session_present = ack.session_present, "MQTT connected");
                    if !ack.session_present {
                        lock(&self.uplink.inflight).fail_all("the broker lost the session");
                    }
                    if let Err(err) =
                        self.uplink.client.try_subscribe(&self.config_topic, QoS::AtLeastOnce)
                    {
                        tracing::warn!(%err, "Cannot subscribe to the config topic");
                    }
                    self.publish_status(true);
                    let _ = self
                        .buffer
                        .with(|b| b.set_note(crate::buffer::Note::LinkState, "up (mqtt)"))
                        .await;
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    let mut inflight = lock(&self.uplink.inflight);
                    if !inflight.sent.contains_key(&pkid) {
                        let waiter = inflight.queued.pop_front().flatten();
                        inflight.sent.insert(pkid, waiter);
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    let waiter = lock(&self.uplink.inflight).sent.remove(&ack.pkid).flatten();
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(Delivery::Accepted);
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish)))
                    if publish.topic == self.config_topic =>
                {
                    match serde_json::from_slice::<ConfigMessage>(&publish.payload) {
                        Ok(message) => apply_remote(message, &self.config, &self.buffer).await,
                        Err(err) => tracing::warn!(%err, "Unreadable config message"),
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%err, retry_in_ms = wait.as_millis() as u64, "MQTT connection lost");
                    let text = format!("down (mqtt): {err}");
                    let _ = self
                        .buffer
                        .with(move |b| b.set_note(crate::buffer::Note::LinkState, &text))
                        .await;
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = shutdown.cancelled() => break,
                    }
                }
            }
        }
        // A clean goodbye: say offline (the will is only for unclean ends), then disconnect.
        self.publish_status(false);
        let _ = self.uplink.client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Ok(event) = self.eventloop.poll().await {
                if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        })
        .await;
    }
}
