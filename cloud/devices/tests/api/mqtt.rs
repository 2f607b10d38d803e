//! The MQTT ingest bridge, with a real device client (rumqttc) publishing to Mosquitto: telemetry
//! onto the bus, status from the status topic and the will, refused messages kept off the bus,
//! and a bus outage that delays a batch without losing it.

use std::time::Duration;

use edgewatch_common::testkit::services;
use edgewatch_protocol::{Batch, Timestamp};
use reqwest::Method;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde_json::{Value, json};

use crate::helpers::{Shape, TestApp, next_event_for, next_message, spawn_app, spawn_app_with};

const SHAPES: [Shape; 2] = [Shape::Embedded, Shape::Distributed];

fn batch(device_id: &str, seqs: &[u64]) -> Vec<u8> {
    let readings: Vec<Value> = seqs
        .iter()
        .map(|s| json!({"seq": s, "ts": "2026-11-26T20:00:00.123Z", "metrics": {"temp_c": 21.5}}))
        .collect();
    serde_json::to_vec(&json!({"device_id": device_id, "readings": readings})).unwrap()
}

fn status(online: bool, config_version: Option<u64>) -> Vec<u8> {
    let mut body = json!({"online": online, "ts": Timestamp::now().to_string()});
    if let Some(v) = config_version {
        body["config_version"] = json!(v);
    }
    serde_json::to_vec(&body).unwrap()
}

/// A device's MQTT connection, as the agent makes it: credentials, a retained offline will.
struct Device {
    id: String,
    client: AsyncClient,
    events: tokio::task::JoinHandle<()>,
}

impl Device {
    async fn connect(id: &str, secret: &str) -> Self {
        let url = services::require("EDGEWATCH_TEST_MQTT_URL");
        let (host, port) = url.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
        let mut options = MqttOptions::new(id, host, port.parse().unwrap());
        options.set_credentials(id, secret).set_keep_alive(Duration::from_secs(5));
        options.set_last_will(LastWill::new(
            format!("edgewatch/v1/devices/{id}/status"),
            status(false, None),
            QoS::AtLeastOnce,
            true,
        ));
        let (client, mut events) = AsyncClient::new(options, 64);
        let (connected, is_connected) = tokio::sync::oneshot::channel();
        let events = tokio::spawn(async move {
            let mut connected = Some(connected);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), is_connected)
            .await
            .expect("the device connects to Mosquitto")
            .unwrap();
        Self { id: id.to_owned(), client, events }
    }

    async fn publish(&self, leaf: &str, payload: Vec<u8>, retain: bool) {
        self.client
            .publish(
                format!("edgewatch/v1/devices/{}/{leaf}", self.id),
                QoS::AtLeastOnce,
                retain,
                payload,
            )
            .await
            .unwrap();
    }

    /// Drops the connection without a DISCONNECT: the broker publishes the will.
    fn crash(self) {
        self.events.abort();
    }
}

/// Waits until the bridge's subscriptions are in place (the broker drops messages published
/// before there is a subscription for them).
async fn bridge_ready(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !app.core.mqtt_subscribed() {
        assert!(std::time::Instant::now() < deadline, "the MQTT bridge did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn mqtt_telemetry_and_status_reach_the_bus_and_the_registry() {
    for shape in SHAPES {
        let mut app = spawn_app(shape).await;
        bridge_ready(&app).await;
        let bob = app.user("bob@example.com").await;
        let (id, secret) = app.enrolled_device(&bob, "greenhouse").await;
        let (other, _) = app.enrolled_device(&bob, "barn").await;
        assert_eq!(next_event_for(&mut app.events, &id).await.0, "device.created", "{shape:?}");
        let device = Device::connect(&id, &secret).await;

        device.publish("telemetry", batch(&id, &[1, 2, 3]), false).await;
        let (key, message_id, body) = next_message(&mut app.telemetry, 15).await;
        assert_eq!((key, message_id), (format!("telemetry.{id}"), format!("{id}:1")), "{shape:?}");
        let on_bus = Batch::from_json(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(on_bus.readings().len(), 3);
        let (key, event) = next_event_for(&mut app.events, &id).await;
        assert_eq!((key.as_str(), event["status"].as_str()), ("device.status", Some("online")));
        assert_eq!(app.status_of(&bob, &id).await, "online");

        // The status topic: offline, online with the applied config version (the online event above
        // was written by the first batch's status update, so nothing of it is still in flight).
        device.publish("status", status(false, None), true).await;
        let (_, event) = next_event_for(&mut app.events, &id).await;
        assert_eq!(event["status"], "offline", "{shape:?}: {event}");
        assert_eq!(app.status_of(&bob, &id).await, "offline");
        device.publish("status", status(true, Some(0)), true).await;
        let (_, event) = next_event_for(&mut app.events, &id).await;
        assert_eq!(event["status"], "online");
        let config: Value = app
            .call(Method::GET, &format!("/api/v1/devices/{id}/config"), &bob, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(config["applied_version"], 0, "the reported config version is recorded");
        // Refused (the device is online, so these race with no status change): another device's batch on this device's topic, a malformed batch, a payload
        // that is no batch at all. None reaches the bus; the next good batch is next on it.
        device.publish("telemetry", batch(&other, &[10]), false).await;
        device.publish("telemetry", batch(&id, &[]), false).await;
        device.publish("telemetry", b"{\"device_id\": 1".to_vec(), false).await;
        device.publish("telemetry", batch(&id, &[4]), false).await;
        let (_, message_id, _) = next_message(&mut app.telemetry, 15).await;
        assert_eq!(message_id, format!("{id}:4"), "{shape:?}: refused batches stayed off the bus");
        assert_eq!(app.status_of(&bob, &other).await, "never_seen", "nobody spoke for barn");

        // Then the will.
        device.publish("status", b"not json".to_vec(), false).await;
        device.crash();
        let (_, event) = next_event_for(&mut app.events, &id).await;
        assert_eq!(event["status"], "offline", "{shape:?}: the will marks the device offline");
    }
}

#[tokio::test]
async fn an_mqtt_batch_waits_unacked_through_a_bus_outage_and_is_delivered_after() {
    let mut app = spawn_app(Shape::Distributed).await;
    bridge_ready(&app).await;
    let bob = app.user("bob@example.com").await;
    let (id, secret) = app.enrolled_device(&bob, "greenhouse").await;
    let device = Device::connect(&id, &secret).await;
    device.publish("telemetry", batch(&id, &[1]), false).await;
    assert_eq!(next_message(&mut app.telemetry, 15).await.1, format!("{id}:1"));

    app.bus_outage().await;
    device.publish("telemetry", batch(&id, &[2, 3]), false).await;
    // Long enough for the bridge to have tried and failed a few times.
    tokio::time::sleep(Duration::from_secs(2)).await;
    app.bus_back().await;
    let (key, message_id, body) = next_message(&mut app.telemetry, 30).await;
    assert_eq!((key, message_id), (format!("telemetry.{id}"), format!("{id}:2")));
    assert_eq!(body["readings"].as_array().unwrap().len(), 2);
}

/// The bridge stops while the bus is down and a batch is unacked: the broker keeps it in the
/// bridge's persistent session and delivers it again to the next instance with that session.
#[tokio::test]
async fn an_unacked_mqtt_batch_survives_a_bridge_restart() {
    let mut first = spawn_app(Shape::Distributed).await;
    bridge_ready(&first).await;
    let bob = first.user("bob@example.com").await;
    let (id, secret) = first.enrolled_device(&bob, "greenhouse").await;
    let device = Device::connect(&id, &secret).await;
    device.publish("telemetry", batch(&id, &[1]), false).await;
    assert_eq!(next_message(&mut first.telemetry, 15).await.1, format!("{id}:1"));

    first.bus_outage().await;
    device.publish("telemetry", batch(&id, &[2]), false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Stop the service while the batch is unacked (the bridge can only be retrying it now).
    first.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while first.core.mqtt_subscribed() {
        assert!(std::time::Instant::now() < deadline, "the bridge did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.bus_back().await;
    let config = first.config.clone();
    drop(first);

    let mut second = spawn_app_with(Shape::Distributed, |c| {
        c.database_url = config.database_url.clone();
        c.bus_url = config.bus_url.clone();
        c.mqtt_client_id = config.mqtt_client_id.clone();
        c.mqtt_share_group = config.mqtt_share_group.clone();
    })
    .await;
    let (key, message_id, _) = next_message(&mut second.telemetry, 30).await;
    assert_eq!((key, message_id), (format!("telemetry.{id}"), format!("{id}:2")));
}

/// The config topic of a device, as a separate subscriber sees it: every non-empty message.
async fn watch_config(id: &str) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let url = services::require("EDGEWATCH_TEST_MQTT_URL");
    let (host, port) = url.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
    let mut options = MqttOptions::new(format!("watch-{id}"), host, port.parse().unwrap());
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut events) = AsyncClient::new(options, 16);
    client.subscribe(format!("edgewatch/v1/devices/{id}/config"), QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if !p.payload.is_empty() => {
                    if tx.send(serde_json::from_slice(&p.payload).unwrap()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    rx
}

/// rumqttd keeps no retained message across a restart: a device that comes back online behind
/// the registry's config version gets the config pushed again.
#[tokio::test]
async fn a_device_online_behind_its_config_gets_it_again() {
    let app = spawn_app(Shape::Embedded).await;
    bridge_ready(&app).await;
    let bob = app.user("bob@example.com").await;
    let (id, secret) = app.enrolled_device(&bob, "greenhouse").await;
    let path = format!("/api/v1/devices/{id}/config");
    let body = json!({"config": {"interval_s": 7}});
    let response = app.call(Method::PUT, &path, &bob, Some(body)).await;
    assert_eq!(response.status(), 200);
    let device = Device::connect(&id, &secret).await;
    // What a broker restart does to the retained config: it is gone.
    device.publish("config", Vec::new(), true).await;
    let mut config = watch_config(&id).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(config.try_recv().is_err(), "the retained config was cleared");

    device.publish("status", status(true, Some(0)), true).await;
    let pushed = tokio::time::timeout(Duration::from_secs(10), config.recv())
        .await
        .expect("the config is pushed again when the device reports an older version")
        .unwrap();
    assert_eq!(pushed["version"], 1, "{pushed}");
    assert_eq!(pushed["config"]["interval_s"], 7);

    // Up to date: nothing more is pushed.
    device.publish("status", status(true, Some(1)), true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(config.try_recv().is_err(), "a device on the latest version is left alone");
}
