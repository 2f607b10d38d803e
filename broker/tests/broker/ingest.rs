//! The ingest path (DESIGN.md "Delivery guarantees" rule 6): a device's telemetry and events
//! PUBLISH is acknowledged only once the ingest port took it — on the bus with a confirm — and
//! never when it failed. First against a port the test answers by hand (packet ids, DUP resends,
//! PUBACK order, QoS 0 and 2, at the byte level), then a flood of real clients against the real
//! devices service in both shapes (the binary's HTTP port and `edgewatch up`'s in-process one):
//! every acknowledged message is on the bus.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use edgewatch_broker::{
    AccountRole, Accounts, AuthError, Authenticator, Chain, DevicesHttp, DevicesHttpIngest,
    Identity, Ingest, IngestError, IngestKind, Login, Outcome, Publication, Role,
    packet::{self, Connect, ConnectReturn, Frame},
};
use edgewatch_common::{
    auth::{Principal, Role as UserRole},
    bus::Subscription,
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::{Devices, DevicesConfig, domain::DeviceInput, service::Handled};
use edgewatch_protocol::{DeviceId, MONITORING_QUEUE, Timestamp, UserId};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::{mpsc, oneshot},
};

use crate::helpers::{TestBroker, WAIT, account, connect, loopback_config, start_with};

/// Any device id whose password is "secret-" + id.
struct AnyDevice;

#[async_trait]
impl Authenticator for AnyDevice {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        let id = DeviceId::parse(&login.username).map_err(|_| AuthError::UnknownUser)?;
        if login.password == format!("secret-{id}") {
            Ok(Identity::Device(id))
        } else {
            Err(AuthError::Denied)
        }
    }
}

type Answer = oneshot::Sender<Result<Outcome, IngestError>>;

/// An ingest port the test answers by hand.
struct Manual(mpsc::UnboundedSender<(Publication, Answer)>);

#[async_trait]
impl Ingest for Manual {
    async fn accept(&self, publication: Publication) -> Result<Outcome, IngestError> {
        let (answer, answered) = oneshot::channel();
        self.0
            .send((publication, answer))
            .map_err(|_| IngestError::Unavailable("the test is over".into()))?;
        answered.await.unwrap_or_else(|_| Err(IngestError::Unavailable("no answer".into())))
    }
}

/// A cloud broker for `AnyDevice` (plus a `watcher` service account) with a hand-answered port.
async fn manual_broker() -> (TestBroker, mpsc::UnboundedReceiver<(Publication, Answer)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = account("watcher", "watcher-pw", AccountRole::Service);
    let config = loopback_config(Role::Cloud, vec![watcher.clone()]);
    let auth: Arc<dyn Authenticator> =
        Arc::new(Chain(vec![Arc::new(Accounts::new([watcher])), Arc::new(AnyDevice)]));
    (start_with(config, auth, Some(Arc::new(Manual(tx)))).await, rx)
}

/// A byte-level MQTT 3.1.1 client: what a device sends, exactly, and every packet it gets back.
struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

/// What a raw client read.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    PubAck(u16),
    /// Another packet, by its type.
    Other(u8),
    Closed,
    Nothing,
}

impl Raw {
    async fn connect(addr: SocketAddr, device: DeviceId) -> Self {
        let connect = Connect {
            protocol_name: "MQTT".into(),
            level: 4,
            clean_session: true,
            keep_alive: 30,
            client_id: device.to_string(),
            will: None,
            username: Some(device.to_string()),
            password: Some(format!("secret-{device}").into()),
        };
        let mut raw =
            Self { stream: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new() };
        raw.stream.write_all(&connect.encode()).await.unwrap();
        let connack = raw.frame(WAIT).await.expect("the connection stays open").expect("a CONNACK");
        assert_eq!(&connack.bytes[..], &packet::connack(ConnectReturn::Accepted)[..]);
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next packet within `within` (`Ok(None)`: nothing came); `Err` once the broker closed.
    async fn frame(&mut self, within: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(frame) = packet::next_frame(&mut self.buf, 1 << 21).unwrap() {
                return Ok(Some(frame));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0) | Err(_)) => return Err(()),
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn got(&mut self, within: Duration) -> Got {
        match self.frame(within).await {
            Err(()) => Got::Closed,
            Ok(None) => Got::Nothing,
            Ok(Some(frame)) if frame.kind() == packet::PUBACK => {
                Got::PubAck(u16::from_be_bytes([frame.bytes[2], frame.bytes[3]]))
            }
            Ok(Some(frame)) => Got::Other(frame.kind()),
        }
    }
}

/// A PUBLISH packet, byte by byte (MQTT 3.1.1 §3.3).
fn publish(topic: &str, qos: u8, pkid: u16, dup: bool, payload: &[u8]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_u16(u16::try_from(topic.len()).unwrap());
    body.put_slice(topic.as_bytes());
    if qos > 0 {
        body.put_u16(pkid);
    }
    body.put_slice(payload);
    let mut out = vec![(packet::PUBLISH << 4) | (u8::from(dup) << 3) | (qos << 1)];
    let mut len = body.len();
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        out.push(if len > 0 { byte | 0x80 } else { byte });
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(&body);
    out
}

fn topic(device: DeviceId, leaf: &str) -> String {
    format!("edgewatch/v1/devices/{device}/{leaf}")
}

#[tokio::test]
async fn a_device_publish_is_acknowledged_only_once_the_ingest_port_took_it() {
    let (broker, mut port) = manual_broker().await;
    let device = DeviceId::new();
    let mut raw = Raw::connect(broker.mqtt, device).await;
    let short = Duration::from_millis(300);

    // Telemetry reaches the port with its payload and the device's credential, and the PUBACK
    // (with the same packet id) waits for the port's answer.
    raw.send(&publish(&topic(device, "telemetry"), 1, 7, false, b"batch-7")).await;
    let (taken, answer) = port.recv().await.unwrap();
    assert_eq!((taken.device, taken.kind), (device, IngestKind::Telemetry));
    assert_eq!(
        (&taken.payload[..], taken.secret.as_str()),
        (&b"batch-7"[..], &*format!("secret-{device}"))
    );
    assert_eq!(raw.got(short).await, Got::Nothing, "acknowledged before the port took it");
    answer.send(Ok(Outcome::Accepted)).unwrap();
    assert_eq!(raw.got(WAIT).await, Got::PubAck(7));

    // Events likewise; a batch refused for good is acknowledged (it would only come back).
    raw.send(&publish(&topic(device, "events"), 1, 8, false, b"not json")).await;
    let (taken, answer) = port.recv().await.unwrap();
    assert_eq!(taken.kind, IngestKind::Events);
    answer.send(Ok(Outcome::Refused("invalid_batch"))).unwrap();
    assert_eq!(raw.got(WAIT).await, Got::PubAck(8));

    // The port cannot take it: no PUBACK, the connection is closed, and the device's resend
    // (same packet id, DUP set) after reconnecting is taken and acknowledged.
    raw.send(&publish(&topic(device, "telemetry"), 1, 9, false, b"batch-9")).await;
    let (_, answer) = port.recv().await.unwrap();
    answer.send(Err(IngestError::Unavailable("the bus is down".into()))).unwrap();
    assert_eq!(raw.got(WAIT).await, Got::Closed);
    let mut raw = Raw::connect(broker.mqtt, device).await;
    raw.send(&publish(&topic(device, "telemetry"), 1, 9, true, b"batch-9")).await;
    let (taken, answer) = port.recv().await.unwrap();
    assert_eq!(&taken.payload[..], b"batch-9");
    answer.send(Ok(Outcome::Accepted)).unwrap();
    assert_eq!(raw.got(WAIT).await, Got::PubAck(9));

    // QoS 0 is handed over too, with nothing to acknowledge; QoS 2 is not offered: closed.
    raw.send(&publish(&topic(device, "telemetry"), 0, 0, false, b"batch-10")).await;
    let (taken, answer) = port.recv().await.unwrap();
    assert_eq!(&taken.payload[..], b"batch-10");
    answer.send(Ok(Outcome::Accepted)).unwrap();
    assert_eq!(raw.got(short).await, Got::Nothing);
    raw.send(&publish(&topic(device, "telemetry"), 2, 11, false, b"batch-11")).await;
    assert_eq!(raw.got(WAIT).await, Got::Closed);
    assert!(port.try_recv().is_err(), "a QoS 2 message reached the port");

    // Another device's topic is still refused by the ACL before any port sees it.
    let mut raw = Raw::connect(broker.mqtt, device).await;
    raw.send(&publish(&topic(DeviceId::new(), "telemetry"), 1, 12, false, b"forged")).await;
    assert_eq!(raw.got(WAIT).await, Got::Closed);
    assert!(port.try_recv().is_err(), "a forged message reached the port");
}

#[tokio::test]
async fn acknowledgements_keep_publish_order_and_telemetry_skips_rumqttd() {
    let (broker, mut port) = manual_broker().await;
    // The port answers at once: faster than rumqttd's PUBACK of a status message relayed before.
    tokio::spawn(async move {
        while let Some((_, answer)) = port.recv().await {
            let _ = answer.send(Ok(Outcome::Accepted));
        }
    });
    let mut watcher = connect(broker.mqtt, "watcher", "watcher", "watcher-pw", None).await.unwrap();
    watcher.subscribe("edgewatch/v1/devices/+/telemetry").await;
    watcher.subscribe("edgewatch/v1/devices/+/status").await;

    let device = DeviceId::new();
    let mut raw = Raw::connect(broker.mqtt, device).await;
    // Status (relayed to rumqttd) and telemetry (the port) alternate, all in one write.
    let mut burst = Vec::new();
    for pkid in 1..=60u16 {
        let leaf = if pkid % 2 == 1 { "status" } else { "telemetry" };
        burst.extend(publish(&topic(device, leaf), 1, pkid, false, b"{\"online\":true}"));
    }
    raw.send(&burst).await;
    let mut acks = Vec::new();
    while acks.len() < 60 {
        match raw.got(WAIT).await {
            Got::PubAck(pkid) => acks.push(pkid),
            other => panic!("after PUBACKs {acks:?}: {other:?}"),
        }
    }
    assert_eq!(acks, (1..=60).collect::<Vec<_>>(), "PUBACKs in PUBLISH order (MQTT 3.1.1 4.6)");

    let mut seen = Vec::new();
    while let Some(message) = watcher.message(Duration::from_secs(1)).await {
        seen.push(message.topic);
    }
    assert_eq!(seen.len(), 30, "each status message once: {seen:?}");
    assert!(seen.iter().all(|t| t.ends_with("/status")), "telemetry went through rumqttd");
}

#[tokio::test]
async fn the_devices_service_down_leaves_telemetry_unacknowledged() {
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = loopback_config(Role::Cloud, vec![]);
    let ingest = Arc::new(DevicesHttpIngest::new(&url, Duration::from_secs(2)));
    let broker = start_with(config, Arc::new(AnyDevice), Some(ingest)).await;
    let device = DeviceId::new();
    let mut raw = Raw::connect(broker.mqtt, device).await;
    raw.send(&publish(&topic(device, "telemetry"), 1, 1, false, b"{}")).await;
    assert_eq!(raw.got(WAIT).await, Got::Closed);
}

/// The devices service (SQLite, in-process bus, no MQTT bridge) serving HTTP on loopback.
struct Service {
    core: Devices,
    url: String,
    telemetry: Subscription,
    _stop: StopOnDrop,
}

struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn devices_service() -> Service {
    let shutdown = Shutdown::new();
    let config = DevicesConfig {
        // Not called: devices are made through the core, not the API.
        signing_url: "http://127.0.0.1:9".into(),
        service_token: "broker-ingest-test-token-0123456".into(),
        database_url: services::sqlite_url("devices.db"),
        ..DevicesConfig::default()
    };
    let (router, core) = edgewatch_devices::build(&config, &shutdown).await.expect("devices");
    let telemetry = core.bus().subscribe(MONITORING_QUEUE, 1000).await.unwrap();
    let url = serve_on_loopback(router, &shutdown).await;
    Service { core, url, telemetry, _stop: StopOnDrop(shutdown) }
}

impl Service {
    /// Creates and enrolls `n` devices; returns (id, secret) pairs.
    async fn devices(&self, n: usize) -> Vec<(DeviceId, String)> {
        let owner =
            Principal { user_id: UserId::new(), role: UserRole::User, session_id: "test".into() };
        let mut out = Vec::new();
        for i in 0..n {
            let input = DeviceInput {
                name: format!("flood {i}"),
                kind: None,
                tags: vec![],
                location: None,
                metadata: serde_json::Map::new(),
            };
            let (record, token) = self.core.create(&owner, input).await.unwrap();
            let enrolled = self.core.enroll(&token).await.unwrap();
            out.push((record.id, enrolled.device_secret));
        }
        out
    }
}

/// `edgewatch up`'s port, as src/up/broker.rs implements it: the bridge's function, in process.
struct InProcess(Devices);

#[async_trait]
impl Ingest for InProcess {
    async fn accept(&self, publication: Publication) -> Result<Outcome, IngestError> {
        match self.0.ingest_mqtt(publication.device, &publication.payload).await {
            Ok(Handled::Accepted) => Ok(Outcome::Accepted),
            Ok(Handled::Refused(reason)) => Ok(Outcome::Refused(reason)),
            Err(err) => Err(IngestError::Unavailable(err.to_string())),
        }
    }
}

/// A one-reading batch of about 200 bytes, timed now.
fn small_batch(device: DeviceId, seq: u64, ts: Timestamp) -> Vec<u8> {
    let body = |pad: usize| {
        serde_json::to_vec(&json!({"device_id": device, "readings": [
            {"seq": seq, "ts": ts, "metrics": {"temp_c": 21.5}, "tags": {"pad": "x".repeat(pad)}}
        ]}))
        .unwrap()
    };
    let bare = body(0).len();
    body(200usize.saturating_sub(bare))
}

/// `clients` devices each publish `messages` batches at QoS 1 (rumqttc, 100 in flight), count
/// their PUBACKs, and the bus must hold every acknowledged batch: acknowledged = stored.
async fn flood(http: bool, clients: usize, messages: u64) {
    let mut service = devices_service().await;
    let devices = service.devices(clients).await;
    let mut config = loopback_config(Role::Cloud, vec![]);
    config.devices_url = Some(service.url.clone());
    let ingest: Arc<dyn Ingest> = if http {
        Arc::new(DevicesHttpIngest::new(&service.url, Duration::from_secs(10)))
    } else {
        Arc::new(InProcess(service.core.clone()))
    };
    let auth = Arc::new(DevicesHttp::new(&service.url, Duration::from_secs(60), WAIT));
    let broker = start_with(config, auth, Some(ingest)).await;

    let started = Instant::now();
    let ts = Timestamp::now();
    let mut senders = Vec::new();
    for (id, secret) in devices {
        let addr = broker.mqtt;
        senders.push(tokio::spawn(async move {
            let mut options = MqttOptions::new(id.to_string(), addr.ip().to_string(), addr.port());
            options.set_credentials(id.to_string(), secret).set_keep_alive(Duration::from_secs(30));
            let (client, mut events) = AsyncClient::new(options, 100);
            let publisher = tokio::spawn(async move {
                for seq in 1..=messages {
                    let payload = small_batch(id, seq, ts);
                    let topic = topic(id, "telemetry");
                    client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
                }
                client
            });
            let mut acked = 0u64;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while acked < messages {
                match tokio::time::timeout_at(deadline, events.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        panic!("{id}: the connection failed after {acked} PUBACKs: {err}")
                    }
                    Err(_) => panic!("{id}: {acked} of {messages} PUBACKs within 60 s"),
                }
            }
            drop(publisher.await);
            (id, acked)
        }));
    }
    let mut acked = HashSet::new();
    for sender in senders {
        let (id, n) = sender.await.unwrap();
        acked.extend((1..=n).map(|seq| format!("{id}:{seq}")));
    }
    let took = started.elapsed();

    let mut stored = HashSet::new();
    while stored.len() < acked.len() {
        let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(5), service.telemetry.next()).await
        else {
            break;
        };
        stored.extend(delivery.message.message_id.clone());
        delivery.ack().await.unwrap();
    }
    let missing = acked.difference(&stored).count();
    assert_eq!(acked.len() as u64, clients as u64 * messages);
    assert_eq!(missing, 0, "{missing} of {} acknowledged batches are not on the bus", acked.len());
    eprintln!(
        "{} shape: {clients} x {messages} acknowledged and on the bus in {took:?}",
        if http { "HTTP" } else { "in-process" }
    );
}

#[tokio::test]
async fn a_telemetry_flood_through_the_http_port_is_on_the_bus_when_acknowledged() {
    flood(true, 4, 500).await;
}

#[tokio::test]
async fn a_telemetry_flood_through_the_in_process_port_is_on_the_bus_when_acknowledged() {
    flood(false, 4, 500).await;
}
