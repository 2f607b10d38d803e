//! Backing services failing under load, end to end: RabbitMQ restarted while devices post over
//! HTTP and MQTT, with monitoring's real consumer storing into the telemetry store (FerretDB);
//! and PostgreSQL stopped with the MQTT bridge running. What is checked is what a user counts
//! on: every reading a device was told is safe is stored exactly once, and the service recovers
//! without a restart.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use edgewatch_common::{
    bus::{self, Topology},
    shutdown::Shutdown,
    telemetry_store::{self, TelemetryStore, TimeRange},
    testkit::{serve_on_loopback, services},
};
use edgewatch_protocol::{DeviceId, MetricName, Timestamp};
use reqwest::{Client, StatusCode};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::helpers::{
    Shape, devices_config, error_code, next_message, spawn_app_with, spawn_signing,
};

/// The metric every test reading carries: its own seq, so the store's raw points say which
/// readings it holds (and how many times).
const SEQ_METRIC: &str = "test.seq";

/// A batch of readings `seqs`, each at `base + seq` ms with its seq as the value.
fn batch(device_id: &str, base: Timestamp, seqs: impl Iterator<Item = u64>) -> Vec<u8> {
    let readings: Vec<Value> = seqs
        .map(|seq| {
            let ts =
                Timestamp::from_millis(base.as_millis() + i64::try_from(seq).unwrap()).unwrap();
            json!({"seq": seq, "ts": ts.to_string(), "metrics": {SEQ_METRIC: seq as f64}})
        })
        .collect();
    serde_json::to_vec(&json!({"device_id": device_id, "readings": readings})).unwrap()
}

/// Creates and enrolls a device through the API; returns (id, secret).
async fn enrolled(client: &Client, devices: &str, token: &str, name: &str) -> (String, String) {
    edgewatch_common::testkit::enroll_device(client, devices, token, name).await
}

/// What one simulated device was told: the seqs acknowledged to it, and how many 503s it got.
#[derive(Debug, Default)]
struct Told {
    acknowledged: Vec<u64>,
    unavailable: usize,
}

/// Posts batches of `per` readings every `pace` until `stop` (at most `max` batches). A 503
/// must carry `Retry-After`; the device then posts the same batch again until it is accepted,
/// as the agent does. Anything else fails the test.
async fn http_device(
    client: Client,
    url: String,
    id: String,
    secret: String,
    base: Timestamp,
    stop: Arc<AtomicBool>,
) -> Told {
    const PER: u64 = 5;
    const MAX: u64 = 1_500;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut told = Told::default();
    for n in 0..MAX {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let seqs = n * PER + 1..=(n + 1) * PER;
        let body = batch(&id, base, seqs.clone());
        loop {
            let answer = client
                .post(format!("{url}/api/v1/devices/{id}/telemetry"))
                .bearer_auth(&secret)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("the devices service answers");
            match answer.status() {
                StatusCode::ACCEPTED => {
                    told.acknowledged.extend(seqs);
                    break;
                }
                StatusCode::SERVICE_UNAVAILABLE => {
                    assert!(
                        answer.headers().contains_key("retry-after"),
                        "503 without Retry-After"
                    );
                    told.unavailable += 1;
                    assert!(Instant::now() < deadline, "device {id}: still 503 after 3 minutes");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => panic!("device {id}: {other}: {:?}", answer.text().await),
            }
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    told
}

/// An MQTT device on Mosquitto: publishes QoS 1 batches one at a time, each after the broker's
/// PUBACK for the previous one, until `stop` (at most 150: the broker queues at most 1,000
/// messages for the bridge's session, and this test must stay far below it).
async fn mqtt_device(id: String, secret: String, base: Timestamp, stop: Arc<AtomicBool>) -> Told {
    const PER: u64 = 5;
    const MAX: u64 = 150;
    let device = MqttPublisher::connect(&id, &secret).await;
    let mut told = Told::default();
    for n in 0..MAX {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let seqs = n * PER + 1..=(n + 1) * PER;
        device.publish(batch(&id, base, seqs.clone())).await;
        told.acknowledged.extend(seqs);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    told
}

/// Every seq the store holds for `device`, once per stored raw point, sorted.
async fn stored_seqs(store: &dyn TelemetryStore, device: &str, base: Timestamp) -> Vec<u64> {
    let to = Timestamp::from_millis(base.as_millis() + 24 * 3600 * 1000).unwrap();
    let points = store
        .raw(
            DeviceId::parse(device).unwrap(),
            &MetricName::parse(SEQ_METRIC).unwrap(),
            TimeRange::new(base, to).unwrap(),
            1_000_000,
        )
        .await
        .expect("the store answers");
    let mut seqs: Vec<u64> = points.iter().map(|p| p.value as u64).collect();
    seqs.sort_unstable();
    seqs
}

/// Waits until the store holds as many readings of each device as it was told were safe, then
/// checks they are exactly those, each once.
async fn assert_stored_exactly_once(
    store: &dyn TelemetryStore,
    told: &BTreeMap<String, Told>,
    base: Timestamp,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    for (device, told) in told {
        let mut expected = told.acknowledged.clone();
        expected.sort_unstable();
        let stored = loop {
            let stored = stored_seqs(store, device, base).await;
            if stored.len() >= expected.len() || Instant::now() >= deadline {
                break stored;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let mut unique = stored.clone();
        unique.dedup();
        assert_eq!(unique.len(), stored.len(), "device {device}: a reading is stored twice");
        let missing: Vec<_> =
            expected.iter().filter(|s| unique.binary_search(s).is_err()).collect();
        assert!(
            missing.is_empty(),
            "device {device}: {} of {} acknowledged readings are not stored (first: {:?})",
            missing.len(),
            expected.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        );
        assert_eq!(
            stored, expected,
            "device {device}: the store holds readings nobody was told of"
        );
    }
}

/// RabbitMQ is stopped and started again (the restartable test node) while six devices post over
/// HTTP and three publish over MQTT, and monitoring's consumer stores into FerretDB. Afterwards
/// the store holds every reading a device got a 202 or PUBACK for, each exactly once, and the
/// HTTP devices that got 503s during the restart got their batches accepted by retrying.
#[tokio::test]
async fn a_rabbitmq_restart_during_ingest_loses_and_duplicates_no_reading_in_the_store() {
    let shutdown = Shutdown::new();
    let _stop_all = StopOnDrop(shutdown.clone());
    let (amqp, restart) = services::restartable_amqp_vhost().await;
    let signing = spawn_signing(&shutdown).await;
    let mut config = devices_config(Shape::Distributed, &signing).await;
    config.bus_url = amqp.clone();
    let (router, core) = edgewatch_devices::build(&config, &shutdown).await.expect("devices");
    let devices = serve_on_loopback(router, &shutdown).await;

    // Monitoring's consumer, as the monitoring service runs it, on a connection of its own.
    let store = telemetry_store::connect(&services::mongodb_database()).await.expect("FerretDB");
    let consumer = edgewatch_monitoring::consumer::Consumer {
        bus: bus::connect(&amqp, Topology::standard()).await.expect("RabbitMQ"),
        store: Arc::clone(&store),
        live: None,
        prefetch: 100,
        linger: Duration::from_millis(20),
        healthy: Arc::new(AtomicBool::new(true)),
        retention: edgewatch_monitoring::config::RetentionConfig::default(),
    };
    tokio::spawn(consumer.run(shutdown.clone()));

    let client = Client::new();
    let owner = edgewatch_common::testkit::sign_up(&client, &signing, "bob@example.com").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !core.mqtt_subscribed() {
        assert!(Instant::now() < deadline, "the MQTT bridge did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = Timestamp::from_millis(Timestamp::now().as_millis() - 3_600_000).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (id, secret) = enrolled(&client, &devices, &owner, &format!("http {i}")).await;
        let task = http_device(
            client.clone(),
            devices.clone(),
            id.clone(),
            secret,
            base,
            Arc::clone(&stop),
        );
        tasks.push((id, tokio::spawn(task)));
    }
    for i in 0..3 {
        let (id, secret) = enrolled(&client, &devices, &owner, &format!("mqtt {i}")).await;
        tasks.push((id.clone(), tokio::spawn(mqtt_device(id, secret, base, Arc::clone(&stop)))));
    }

    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarted = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(&restart).status(),
    )
    .await
    .expect("the RabbitMQ restart took over 2 minutes")
    .expect("run the restart command");
    assert!(restarted.success(), "the restart command failed: {restarted}");
    // Traffic goes on for a while after the broker is back: the service recovered by itself.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Release);

    let mut told = BTreeMap::new();
    for (id, task) in tasks {
        told.insert(id, task.await.expect("a device task"));
    }
    let unavailable: usize = told.values().map(|t| t.unavailable).sum();
    let acknowledged: usize = told.values().map(|t| t.acknowledged.len()).sum();
    eprintln!("rabbitmq restart: {acknowledged} readings acknowledged, {unavailable} 503s");
    assert!(unavailable > 0, "the restart never made ingest answer 503: it tested nothing");
    assert!(told.values().all(|t| !t.acknowledged.is_empty()), "every device got readings through");
    assert_stored_exactly_once(store.as_ref(), &told, base).await;
}

/// Cancels a test's services when it ends, passed or failed.
struct StopOnDrop(Shutdown);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// PostgreSQL (a private server) is stopped while the MQTT bridge runs: readiness turns red,
/// HTTP ingest answers 503 with `Retry-After` and puts nothing on the bus, an MQTT batch stays
/// unacked with the broker; once PostgreSQL is back, the same service instance delivers the MQTT
/// batch, accepts HTTP again and is ready — each batch on the bus exactly once.
#[tokio::test]
async fn postgres_down_with_the_bridge_running_holds_batches_and_recovers_without_restart() {
    let mut postgres = services::private_postgres().await;
    let url = postgres.url();
    let mut app = spawn_app_with(Shape::Distributed, |c| c.database_url = url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.core.mqtt_subscribed() {
        assert!(Instant::now() < deadline, "the MQTT bridge did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bob = app.user("bob@example.com").await;
    let (http_id, http_secret) = app.enrolled_device(&bob, "http device").await;
    let (mqtt_id, mqtt_secret) = app.enrolled_device(&bob, "mqtt device").await;
    let base = Timestamp::now();
    // Both devices get one batch through first (their credentials are then in the cache, so
    // what fails below is the database, not authentication).
    let first = app.ingest(&http_id, &http_secret, &batch(&http_id, base, 1..=1)).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert_eq!(next_message(&mut app.telemetry, 15).await.1, format!("{http_id}:1"));
    let mqtt = MqttPublisher::connect(&mqtt_id, &mqtt_secret).await;
    mqtt.publish(batch(&mqtt_id, base, 1..=1)).await;
    assert_eq!(next_message(&mut app.telemetry, 15).await.1, format!("{mqtt_id}:1"));

    postgres.stop().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        if ready.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = ready.json().await.unwrap();
            assert!(body.to_string().contains("database"), "readiness names the database: {body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness still {} with PostgreSQL down",
            ready.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let refused = app.ingest(&http_id, &http_secret, &batch(&http_id, base, 2..=2)).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"), "503 says when to retry");
    assert_eq!(error_code(refused, StatusCode::SERVICE_UNAVAILABLE).await, "unavailable");
    mqtt.publish(batch(&mqtt_id, base, 2..=2)).await;
    // The bridge tries (and fails) a few times; nothing reaches the bus meanwhile.
    let quiet = tokio::time::timeout(Duration::from_secs(3), app.telemetry.next()).await;
    assert!(quiet.is_err(), "a batch reached the bus while the registry was down");
    let again = app.ingest(&http_id, &http_secret, &batch(&http_id, base, 2..=2)).await;
    assert_eq!(again.status(), StatusCode::SERVICE_UNAVAILABLE, "still down, still 503");

    postgres.restart().await;
    // The bridge's retry (backoff up to 5 s) delivers the held MQTT batch; the HTTP device's
    // retry of its refused batch is accepted; readiness turns green. No restart of the service.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = app.ingest(&http_id, &http_secret, &batch(&http_id, base, 2..=2)).await;
        if answer.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(Instant::now() < deadline, "ingest did not recover after PostgreSQL came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut on_bus = Vec::new();
    for _ in 0..2 {
        on_bus.push(next_message(&mut app.telemetry, 30).await.1);
    }
    on_bus.sort();
    let mut expected = vec![format!("{http_id}:2"), format!("{mqtt_id}:2")];
    expected.sort();
    assert_eq!(on_bus, expected, "the held MQTT batch and the retried HTTP batch, once each");
    let extra = tokio::time::timeout(Duration::from_secs(2), app.telemetry.next()).await;
    assert!(extra.is_err(), "nothing else: no refused attempt leaked onto the bus");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK, "ready again without a restart");
    assert_eq!(app.status_of(&bob, &mqtt_id).await, "online");
}

/// A device's MQTT connection that publishes one QoS 1 message at a time and waits for the
/// broker's PUBACK.
struct MqttPublisher {
    topic: String,
    client: AsyncClient,
    acked: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<u16>>,
    /// Ends the event loop's task with the publisher.
    _events: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl MqttPublisher {
    async fn connect(id: &str, secret: &str) -> Self {
        let url = services::require("EDGEWATCH_TEST_MQTT_URL");
        let (host, port) = url.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
        let mut options = MqttOptions::new(id, host, port.parse().unwrap());
        options.set_credentials(id, secret).set_keep_alive(Duration::from_secs(5));
        let (client, mut events) = AsyncClient::new(options, 16);
        let (acks, acked) = tokio::sync::mpsc::unbounded_channel();
        let events = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(ack))) => {
                        if acks.send(ack.pkid).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        Self {
            topic: format!("edgewatch/v1/devices/{id}/telemetry"),
            client,
            acked: tokio::sync::Mutex::new(acked),
            _events: AbortOnDrop(events),
        }
    }

    async fn publish(&self, payload: Vec<u8>) {
        self.client.publish(&self.topic, QoS::AtLeastOnce, false, payload).await.unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.acked.lock().await.recv())
            .await
            .expect("the broker PUBACKs within 10 s")
            .expect("the MQTT event loop runs");
    }
}
