//! `device.*` events through the outbox, and the offline timeout: registry writes succeed while
//! the bus is down and their events arrive, in order, once it is back.

use std::{sync::Arc, time::Duration};

use edgewatch_common::{
    auth::{Principal, Role},
    bus::{Bus, BusError, Message, Subscription, memory::MemoryBus},
    shutdown::Shutdown,
    testkit::services,
};
use edgewatch_devices::{
    Devices,
    domain::{DeviceInput, DevicePatch},
    service::{Endpoints, HttpEndpoint, MqttEndpoint},
};
use edgewatch_protocol::{DEVICE_EVENTS_QUEUE, DeviceId, UserId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Shape, next_event_for, next_message, spawn_app, spawn_app_with};

const SHAPES: [Shape; 2] = [Shape::Embedded, Shape::Distributed];

fn batch(device_id: &str, seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"device_id": device_id, "readings": [
        {"seq": seq, "ts": "2026-11-26T20:00:00.123Z", "metrics": {"cpu.usage_pct": 1.0}}
    ]}))
    .unwrap()
}

#[tokio::test]
async fn registry_changes_are_events_with_the_device() {
    for shape in SHAPES {
        let mut app = spawn_app(shape).await;
        let bob = app.user("bob@example.com").await;
        let (device, _) = app.device(&bob, json!({"name": "greenhouse", "tags": ["north"]})).await;
        let id = device["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/devices/{id}");
        let patched: Value = app
            .call(Method::PATCH, &path, &bob, Some(json!({"name": "greenhouse 2"})))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            app.call(Method::DELETE, &path, &bob, None).await.status(),
            StatusCode::NO_CONTENT
        );

        let (key, created) = next_event_for(&mut app.events, &id).await;
        assert_eq!((key.as_str(), &created["name"]), ("device.created", &json!("greenhouse")));
        assert!(created.get("enrollment_token").is_none(), "{shape:?}: no secrets in events");
        let (key, updated) = next_event_for(&mut app.events, &id).await;
        assert_eq!(key, "device.updated");
        assert_eq!(updated, patched, "{shape:?}: the event carries the device as stored");
        let (key, deleted) = next_event_for(&mut app.events, &id).await;
        assert_eq!((key.as_str(), &deleted["name"]), ("device.deleted", &json!("greenhouse 2")));
    }
}

#[tokio::test]
async fn registry_writes_succeed_while_the_bus_is_down_and_their_events_follow() {
    let mut app = spawn_app(Shape::Distributed).await;
    let bob = app.user("bob@example.com").await;
    let (before, _) = app.device(&bob, json!({"name": "before"})).await;
    let before = before["id"].as_str().unwrap().to_owned();
    assert_eq!(next_event_for(&mut app.events, &before).await.0, "device.created");

    app.bus_outage().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (device, _) = app.device(&bob, json!({"name": format!("during {i}")})).await;
        ids.push(device["id"].as_str().unwrap().to_owned());
    }
    let patch = format!("/api/v1/devices/{}", ids[0]);
    let patched = app.call(Method::PATCH, &patch, &bob, Some(json!({"kind": "pi4"}))).await;
    assert_eq!(patched.status(), StatusCode::OK, "registry writes do not need the bus");
    let delete = format!("/api/v1/devices/{before}");
    assert_eq!(
        app.call(Method::DELETE, &delete, &bob, None).await.status(),
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.bus_back().await;

    // Every event, in write order; a republished one (same message id) may come twice.
    let mut expected: Vec<(String, String)> =
        ids.iter().map(|id| ("device.created".to_owned(), id.clone())).collect();
    expected.push(("device.updated".into(), ids[0].clone()));
    expected.push(("device.deleted".into(), before.clone()));
    let mut got: Vec<(String, String)> = Vec::new();
    let mut message_ids = std::collections::HashSet::new();
    while got.len() < expected.len() {
        let (key, message_id, body) = next_message(&mut app.events, 30).await;
        if message_ids.insert(message_id) {
            got.push((key, body["id"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(got, expected);
}

#[tokio::test]
async fn silent_devices_go_offline_after_the_timeout_and_back_online_on_traffic() {
    for shape in SHAPES {
        let mut app = spawn_app_with(shape, |c| c.offline_after_s = 1).await;
        let bob = app.user("bob@example.com").await;
        let (id, secret) = app.enrolled_device(&bob, "greenhouse").await;
        assert_eq!(next_event_for(&mut app.events, &id).await.0, "device.created");
        assert_eq!(app.ingest(&id, &secret, &batch(&id, 1)).await.status(), StatusCode::ACCEPTED);
        let (key, online) = next_event_for(&mut app.events, &id).await;
        assert_eq!((key.as_str(), online["status"].as_str()), ("device.status", Some("online")));

        let started = std::time::Instant::now();
        let (_, offline) = next_event_for(&mut app.events, &id).await;
        assert_eq!(offline["status"], "offline", "{shape:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "the sweep runs often enough");
        assert_eq!(app.status_of(&bob, &id).await, "offline");
        let device: Value = app
            .call(Method::GET, &format!("/api/v1/devices/{id}"), &bob, None)
            .await
            .json()
            .await
            .unwrap();
        assert!(device["last_seen_at"].is_string(), "offline keeps last_seen_at");

        assert_eq!(app.ingest(&id, &secret, &batch(&id, 2)).await.status(), StatusCode::ACCEPTED);
        let (_, again) = next_event_for(&mut app.events, &id).await;
        assert_eq!(again["status"], "online");
        let _ = next_message(&mut app.telemetry, 5).await;
    }
}

/// The in-process bus of the embedded shape, with a switch that makes it refuse every publish
/// (as a full or unreachable bus would).
struct FlakyBus {
    inner: edgewatch_common::bus::memory::MemoryBus,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Bus for FlakyBus {
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(BusError::Unavailable("switched off by the test".into()));
        }
        self.inner.publish(message).await
    }
    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError> {
        self.inner.subscribe(queue, prefetch).await
    }
    async fn ping(&self) -> Result<(), BusError> {
        self.inner.ping().await
    }
}

#[tokio::test]
async fn embedded_outbox_holds_events_while_the_bus_refuses_them() {
    let shutdown = Shutdown::new();
    let repo =
        edgewatch_devices::repository::connect(&services::sqlite_url("devices.db")).await.unwrap();
    let bus = Arc::new(FlakyBus {
        inner: MemoryBus::new(edgewatch_common::bus::Topology::standard(), 1_000),
        down: true.into(),
    });
    let endpoints = Endpoints {
        mqtt: MqttEndpoint { host: "localhost".into(), port: 1883, tls: false },
        http: HttpEndpoint { base_url: "http://localhost".into() },
    };
    let cache = edgewatch_common::cache::connect("memory://", "test:").await.unwrap();
    let core = Devices::new(
        Arc::clone(&repo),
        bus.clone(),
        Duration::from_secs(60),
        endpoints,
        None,
        cache,
    );
    edgewatch_devices::outbox::spawn(repo, bus.clone(), core.event_wake(), shutdown.clone());
    let mut events = bus.subscribe(DEVICE_EVENTS_QUEUE, 100).await.unwrap();

    let bob = Principal { user_id: UserId::new(), role: Role::User, session_id: "s".into() };
    let input = |name: &str| DeviceInput {
        name: name.into(),
        kind: None,
        tags: vec![],
        location: None,
        metadata: serde_json::Map::new(),
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        let (record, _) = core.create(&bob, input(&format!("d{i}"))).await.unwrap();
        ids.push(record.id.to_string());
    }
    let patch = DevicePatch { name: Some("renamed".into()), ..DevicePatch::default() };
    core.patch(&bob, DeviceId::parse(&ids[3]).unwrap(), patch).await.unwrap();
    core.delete(&bob, DeviceId::parse(&ids[4]).unwrap()).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(1_500), events.next()).await.is_err(),
        "nothing gets through a bus that refuses"
    );

    bus.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let mut expected: Vec<(String, String)> =
        ids.iter().map(|id| ("device.created".to_owned(), id.clone())).collect();
    expected.push(("device.updated".into(), ids[3].clone()));
    expected.push(("device.deleted".into(), ids[4].clone()));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let (key, _, body) = next_message(&mut events, 15).await;
        got.push((key, body["id"].as_str().unwrap().to_owned()));
    }
    assert_eq!(got, expected, "all of them, once, in write order");
    assert!(tokio::time::timeout(Duration::from_millis(500), events.next()).await.is_err());
    shutdown.cancel();
}

/// A devices replica of its own (no MQTT: the subject is the outbox), stopped with `shutdown`.
async fn replica(
    config: &edgewatch_devices::DevicesConfig,
    shutdown: &Shutdown,
) -> (String, Devices) {
    let mut config = config.clone();
    config.mqtt_url = None;
    let (router, core) = edgewatch_devices::build(&config, shutdown).await.expect("a replica");
    (edgewatch_common::testkit::serve_on_loopback(router, shutdown).await, core)
}

/// Creates a device through the replica at `base`; returns its id.
async fn create_via(client: &reqwest::Client, base: &str, token: &str, name: &str) -> String {
    let answer = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({ "name": name }))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::CREATED);
    answer.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

/// The next `n` events on `sub`, as (routing key, device id); fails on a repeated message id.
async fn next_events_once(sub: &mut Subscription, n: usize) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut got = Vec::new();
    while got.len() < n {
        let (key, message_id, body) = next_message(sub, 30).await;
        assert!(seen.insert(message_id.clone()), "event {message_id} arrived twice");
        got.push((key, body["id"].as_str().unwrap().to_owned()));
    }
    got
}

/// Waits until exactly one of `replicas` relays the outbox; returns its index.
async fn the_relay(replicas: &[&Devices]) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let relaying: Vec<usize> =
            (0..replicas.len()).filter(|&i| replicas[i].relays_outbox()).collect();
        assert!(relaying.len() <= 1, "replicas {relaying:?} relay at once");
        if let [one] = relaying[..] {
            return one;
        }
        assert!(std::time::Instant::now() < deadline, "no replica took the relay");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two replicas on one PostgreSQL database and one vhost: one of them relays the outbox. A
/// backlog written through both while the bus is down (both would race for it without the
/// lock) arrives once per event and in write order; stopping the relaying replica hands the
/// relay to the other, which delivers what is written next.
#[tokio::test]
async fn two_replicas_relay_each_event_once_in_order_and_hand_over() {
    let tests = Shutdown::new();
    let signing = crate::helpers::spawn_signing(&tests).await;
    let config = crate::helpers::devices_config(Shape::Distributed, &signing).await;
    let shutdowns = [Shutdown::new(), Shutdown::new()];
    let (url_a, core_a) = replica(&config, &shutdowns[0]).await;
    let (url_b, core_b) = replica(&config, &shutdowns[1]).await;
    let urls = [url_a, url_b];
    let bus = edgewatch_common::bus::amqp::AmqpBus::connect(
        &config.bus_url,
        edgewatch_common::bus::Topology::standard(),
    )
    .await
    .unwrap();
    let mut events = bus.subscribe(DEVICE_EVENTS_QUEUE, 50).await.unwrap();
    let client = reqwest::Client::new();
    let bob = edgewatch_common::testkit::sign_up(&client, &signing, "bob@example.com").await;
    let relay = the_relay(&[&core_a, &core_b]).await;

    crate::helpers::vhost_outage(&config.bus_url).await;
    let mut written = Vec::new();
    for i in 0..30 {
        written.push(create_via(&client, &urls[i % 2], &bob, &format!("d{i}")).await);
    }
    // Long enough for both relays (without the lock) to have tried and backed off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(the_relay(&[&core_a, &core_b]).await, relay, "the relay stays put");
    crate::helpers::vhost_back(&config.bus_url).await;
    let got = next_events_once(&mut events, written.len()).await;
    let expected: Vec<_> =
        written.iter().map(|id| ("device.created".to_owned(), id.clone())).collect();
    assert_eq!(got, expected, "every event once, in write order");
    let late = tokio::time::timeout(Duration::from_secs(2), events.next()).await;
    assert!(
        late.is_err(),
        "an event arrived twice: {:?}",
        late.map(|d| d.map(|d| d.message.message_id.clone()))
    );

    // The relaying replica stops (its lock's session ends with it); the other takes over.
    shutdowns[relay].cancel();
    let survivor = 1 - relay;
    let mut after = Vec::new();
    for i in 0..5 {
        after.push(create_via(&client, &urls[survivor], &bob, &format!("after {i}")).await);
    }
    let got = next_events_once(&mut events, after.len()).await;
    let expected: Vec<_> =
        after.iter().map(|id| ("device.created".to_owned(), id.clone())).collect();
    assert_eq!(got, expected, "the survivor relays what is written after the hand-over");
    assert_eq!(the_relay(&[&core_a, &core_b]).await, survivor);
    for shutdown in shutdowns.iter().chain([&tests]) {
        shutdown.cancel();
    }
}
