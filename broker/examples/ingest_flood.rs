//! The acknowledged-equals-stored flood (issue 16): CLIENTS device clients (rumqttc, 100
//! QoS 1 publishes in flight each) publish MESSAGES one-reading batches of 200 bytes each on their
//! telemetry topic as fast as PUBACKs allow; then the monitoring queue is drained and every
//! acknowledged batch must be on it. Prints acknowledged msg/s and the share of acknowledged
//! batches that reached the bus.
//!
//! TARGET is where the devices publish:
//! - `inprocess`: our broker with `edgewatch up`'s in-process ingest port (PUBACK after the bus);
//! - `http`: our broker with the binary's HTTP ingest port to the devices service (same);
//! - `bridge`: our broker without an ingest port, rumqttd acknowledging from memory and the
//!   devices service's MQTT bridge subscribed (the path before issue 16);
//! - `mosquitto`: a private Mosquitto (Debian package, default queue limits, anonymous, on a free
//!   loopback port; stopped at the end) with the bridge, for comparison.
//!
//! The devices service uses SQLite and the in-process bus, or with BUS=amqp the test PostgreSQL
//! and RabbitMQ. Run:
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-broker --example ingest_flood -- 10 100000 inprocess

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use edgewatch_broker::{
    AccountRole, Accounts, Authenticator, BrokerConfig, Chain, DevicesHttp, DevicesHttpIngest,
    Ingest, IngestError, MqttListener, Outcome, Publication, Role,
};
use edgewatch_common::{
    auth::{Principal, Role as UserRole},
    shutdown::Shutdown,
    testkit::services,
};
use edgewatch_devices::{Devices, DevicesConfig, domain::DeviceInput, service::Handled};
use edgewatch_protocol::{DeviceId, MONITORING_QUEUE, Timestamp, UserId};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::json;

/// `edgewatch up`'s ingest port (src/up/broker.rs), for this bench.
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

fn small_batch(device: DeviceId, seq: u64, ts: Timestamp) -> Vec<u8> {
    let body = |pad: usize| {
        serde_json::to_vec(&json!({"device_id": device, "readings": [
            {"seq": seq, "ts": ts, "metrics": {"temp_c": 21.5}, "tags": {"pad": "x".repeat(pad)}}
        ]}))
        .unwrap_or_default()
    };
    let bare = body(0).len();
    body(200usize.saturating_sub(bare))
}

#[tokio::main]
#[allow(clippy::print_stdout, clippy::too_many_lines)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let messages: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let target = args.next().unwrap_or_else(|| "inprocess".into());
    let amqp = std::env::var("BUS").is_ok_and(|b| b == "amqp");
    anyhow::ensure!(
        ["inprocess", "http", "bridge", "mosquitto"].contains(&target.as_str()),
        "TARGET is inprocess, http, bridge or mosquitto"
    );
    let shutdown = Shutdown::new();

    // Our broker (except for `mosquitto`) listens first: the bridge needs its address, the broker
    // needs the devices service's, so the devices listener is bound before either starts.
    let devices_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let devices_url = format!("http://{}", devices_listener.local_addr()?);
    let bridge = ("bench-bridge".to_owned(), format!("{:032x}", rand::random::<u128>()));
    let registry: Arc<std::sync::OnceLock<Devices>> = Arc::default();
    let mut _mosquitto = None;
    let mqtt_url = if target == "mosquitto" {
        let (child, addr) = private_mosquitto().await?;
        _mosquitto = Some(child);
        format!("mqtt://{addr}")
    } else {
        let account = edgewatch_broker::Account {
            username: bridge.0.clone(),
            password: bridge.1.clone(),
            role: AccountRole::Service,
            publish: vec![],
            subscribe: vec![],
        };
        let config = BrokerConfig {
            role: Role::Cloud,
            mqtt: Some(MqttListener { listen: "127.0.0.1:0".parse()? }),
            http: None,
            accounts: vec![account.clone()],
            devices_url: Some(devices_url.clone()),
            ..BrokerConfig::default()
        };
        let auth: Arc<dyn Authenticator> = Arc::new(Chain(vec![
            Arc::new(Accounts::new([account])),
            Arc::new(DevicesHttp::new(
                &devices_url,
                Duration::from_secs(600),
                Duration::from_secs(5),
            )),
        ]));
        let ingest: Option<Arc<dyn Ingest>> = match target.as_str() {
            "http" => Some(Arc::new(DevicesHttpIngest::new(&devices_url, config.ingest_timeout()))),
            "inprocess" => Some(Arc::new(Lazy(registry.clone()))),
            _ => None,
        };
        let broker = edgewatch_broker::start(config, auth, ingest, shutdown.clone()).await?;
        let addr = broker.mqtt_addr.ok_or_else(|| anyhow::anyhow!("no MQTT listener"))?;
        format!("mqtt://{addr}")
    };

    let with_bridge = matches!(target.as_str(), "bridge" | "mosquitto");
    let config = DevicesConfig {
        // Not called: devices are made through the core.
        signing_url: "http://127.0.0.1:9".into(),
        service_token: "ingest-flood-service-token".into(),
        database_url: if amqp {
            services::postgres_database().await
        } else {
            services::sqlite_url("devices.db")
        },
        bus_url: if amqp { services::amqp_vhost().await } else { "memory://".into() },
        mqtt_url: with_bridge.then(|| mqtt_url.clone()),
        mqtt_client_id: Some(format!("bench-bridge-{}", DeviceId::new())),
        mqtt_username: (target == "bridge").then(|| bridge.0.clone()),
        mqtt_password: (target == "bridge").then(|| bridge.1.clone()),
        ..DevicesConfig::default()
    };
    let (router, core) = edgewatch_devices::build(&config, &shutdown).await?;
    let _ = registry.set(core.clone());
    tokio::spawn(edgewatch_common::http::serve(devices_listener, router, shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while with_bridge && !core.mqtt_subscribed() {
        anyhow::ensure!(Instant::now() < deadline, "the bridge did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let owner = Principal { user_id: UserId::new(), role: UserRole::User, session_id: "b".into() };
    let mut devices = Vec::new();
    for i in 0..clients {
        let input = DeviceInput {
            name: format!("flood {i}"),
            kind: None,
            tags: vec![],
            location: None,
            metadata: serde_json::Map::new(),
        };
        let (record, token) = core.create(&owner, input).await?;
        let enrolled = core.enroll(&token).await?;
        devices.push((record.id, enrolled.device_secret));
    }

    // The consumer, as monitoring: counts distinct batches (device:seq).
    let mut sub = core.bus().subscribe(MONITORING_QUEUE, 1000).await?;
    let stored = Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let last_arrival = Arc::new(std::sync::Mutex::new(Instant::now()));
    {
        let (stored, last_arrival) = (stored.clone(), last_arrival.clone());
        tokio::spawn(async move {
            while let Some(delivery) = sub.next().await {
                if let Some(id) = &delivery.message.message_id
                    && let Ok(mut set) = stored.lock()
                {
                    set.insert(id.clone());
                }
                if let Ok(mut at) = last_arrival.lock() {
                    *at = Instant::now();
                }
                let _ = delivery.ack().await;
            }
        });
    }

    let (host, port) = edgewatch_devices_mqtt_addr(&mqtt_url)?;
    let started = Instant::now();
    let ts = Timestamp::now();
    let mut senders = Vec::new();
    for (id, secret) in devices {
        let host = host.clone();
        senders.push(tokio::spawn(async move {
            let mut options = MqttOptions::new(id.to_string(), host, port);
            options.set_credentials(id.to_string(), secret).set_keep_alive(Duration::from_secs(60));
            let (client, mut events) = AsyncClient::new(options, 100);
            let publisher = tokio::spawn(async move {
                let topic = format!("edgewatch/v1/devices/{id}/telemetry");
                for seq in 1..=messages {
                    let payload = small_batch(id, seq, ts);
                    if client
                        .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                client
            });
            let mut acked = 0u64;
            let mut errors = 0u32;
            while acked < messages {
                match tokio::time::timeout(Duration::from_secs(60), events.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        // rumqttc reconnects on the next poll and resends what is unacked.
                        errors += 1;
                        eprintln!("{id}: {err} after {acked} PUBACKs; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(_) => break,
                }
            }
            let done = started.elapsed();
            drop(publisher.await);
            (acked, errors, done)
        }));
    }
    let (mut acked, mut errors, mut last) = (0u64, 0u32, Duration::ZERO);
    for sender in senders {
        let (n, e, done) = sender.await?;
        acked += n;
        errors += e;
        last = last.max(done);
    }
    // Drain: until everything acknowledged is there or nothing arrived for 10 s.
    loop {
        let have = stored.lock().map(|s| s.len()).unwrap_or(0) as u64;
        let quiet = last_arrival.lock().map(|t| t.elapsed()).unwrap_or_default();
        if have >= acked || quiet > Duration::from_secs(10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let on_bus = stored.lock().map(|s| s.len()).unwrap_or(0) as u64;
    let sent = clients as u64 * messages;
    println!(
        "{target} ({} bus): {clients} x {messages} of 200 B: {acked} of {sent} acknowledged in {:.1} s \
         ({:.0} msg/s), {on_bus} on the bus = {:.2} % of the acknowledged; {errors} connection errors",
        if amqp { "RabbitMQ + PostgreSQL" } else { "in-process bus + SQLite" },
        last.as_secs_f64(),
        acked as f64 / last.as_secs_f64(),
        100.0 * on_bus as f64 / (acked.max(1) as f64),
    );
    shutdown.cancel();
    Ok(())
}

/// The in-process port before the devices service exists (as `edgewatch up`'s registry).
struct Lazy(Arc<std::sync::OnceLock<Devices>>);

#[async_trait]
impl Ingest for Lazy {
    async fn accept(&self, publication: Publication) -> Result<Outcome, IngestError> {
        match self.0.get() {
            Some(devices) => InProcess(devices.clone()).accept(publication).await,
            None => Err(IngestError::Unavailable("starting".into())),
        }
    }
}

fn edgewatch_devices_mqtt_addr(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url.trim_start_matches("mqtt://");
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| anyhow::anyhow!("no port in {url}"))?;
    Ok((host.to_owned(), port.parse()?))
}

/// Starts `mosquitto` on a free loopback port with its defaults (as a plain install runs it),
/// anonymous logins allowed; it is killed when the returned child is dropped.
async fn private_mosquitto() -> anyhow::Result<(tokio::process::Child, std::net::SocketAddr)> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let dir = std::env::temp_dir().join(format!("edgewatch-flood-mosquitto-{}", DeviceId::new()));
    std::fs::create_dir_all(&dir)?;
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n",
            addr.port()
        ),
    )?;
    let binary = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|b| std::path::Path::new(b).exists())
        .unwrap_or("mosquitto");
    let child =
        tokio::process::Command::new(binary).arg("-c").arg(&conf).kill_on_drop(true).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "mosquitto did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((child, addr))
}
