//! The cloud role against a real devices service (cloud/devices with its SQLite adapter and
//! in-process bus) whose MQTT bridge logs in to this broker with a service account: device
//! logins, client ids, revocation, and topic isolation — device A publishing on device B's
//! topics reaches neither B's subscribers nor the bridge.

use std::{sync::Arc, time::Duration};

use edgewatch_broker::{AccountRole, Accounts, Authenticator, Chain, DevicesHttp, Role};
use edgewatch_common::{
    bus::Subscription,
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::{Devices, DevicesConfig};
use edgewatch_protocol::MONITORING_QUEUE;
use reqwest::{Client, StatusCode};
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use serde_json::{Value, json};

use crate::helpers::{
    TestBroker, WAIT, account, connect, loopback_config, mosquitto, start, stderr,
};

const SERVICE_TOKEN: &str = "broker-test-service-token-0123456";
const BRIDGE_PASSWORD: &str = "bridge-password";

struct Cloud {
    broker: TestBroker,
    devices: String,
    core: Devices,
    client: Client,
    owner: String,
    telemetry: Subscription,
    _shutdown: ShutdownOnDrop,
}

struct ShutdownOnDrop(Shutdown);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Signing + devices (embedded shape) + a cloud broker that checks devices over HTTP, with the
/// devices service's MQTT bridge connected to the broker as the `bridge` service account.
async fn cloud() -> Cloud {
    let shutdown = Shutdown::new();
    let signing_config = edgewatch_signing::SigningConfig {
        keys_dir: std::env::temp_dir()
            .join(format!("edgewatch-broker-keys-{}", edgewatch_protocol::DeviceId::new())),
        service_token: SERVICE_TOKEN.into(),
        database_url: services::sqlite_url("signing.db"),
        ..Default::default()
    };
    let (router, _) = edgewatch_signing::build(&signing_config).await.expect("signing");
    let signing = serve_on_loopback(router, &shutdown).await;

    // The devices listener is bound first: the broker needs its URL, devices needs the broker's.
    let devices_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let devices = format!("http://{}", devices_listener.local_addr().unwrap());
    let mut config = loopback_config(
        Role::Cloud,
        vec![account("bridge", BRIDGE_PASSWORD, AccountRole::Service)],
    );
    config.devices_url = Some(devices.clone());
    let auth = edgewatch_broker::authenticator(&config).unwrap();
    let broker = start(config, auth).await;

    let devices_config = DevicesConfig {
        signing_url: signing.clone(),
        service_token: SERVICE_TOKEN.into(),
        database_url: services::sqlite_url("devices.db"),
        public_http_base_url: "http://edge.example:8080".into(),
        mqtt_url: Some(format!("mqtt://{}", broker.mqtt)),
        mqtt_username: Some("bridge".into()),
        mqtt_password: Some(BRIDGE_PASSWORD.into()),
        mqtt_client_id: Some(format!("bridge-{}", edgewatch_protocol::DeviceId::new())),
        ..DevicesConfig::default()
    };
    let (router, core) =
        edgewatch_devices::build(&devices_config, &shutdown).await.expect("devices");
    let telemetry = core.bus().subscribe(MONITORING_QUEUE, 50).await.unwrap();
    tokio::spawn(edgewatch_common::http::serve(devices_listener, router, shutdown.clone()));

    let client = Client::new();
    let owner = edgewatch_common::testkit::sign_up(&client, &signing, "owner@example.com").await;
    let deadline = std::time::Instant::now() + WAIT;
    while !core.mqtt_subscribed() {
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge did not subscribe through the broker"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Cloud { broker, devices, core, client, owner, telemetry, _shutdown: ShutdownOnDrop(shutdown) }
}

impl Cloud {
    /// Creates and enrolls a device; returns (id, secret).
    async fn device(&self, name: &str) -> (String, String) {
        edgewatch_common::testkit::enroll_device(&self.client, &self.devices, &self.owner, name)
            .await
    }

    /// The next batch on the bus, as monitoring would receive it: (routing key, body).
    async fn next_telemetry(&mut self, within: Duration) -> Option<(String, Value)> {
        let delivery = tokio::time::timeout(within, self.telemetry.next()).await.ok()??;
        let message = delivery.message.clone();
        delivery.ack().await.unwrap();
        Some((message.routing_key, serde_json::from_slice(&message.body).unwrap()))
    }
}

fn batch(device_id: &str, seq: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"device_id": device_id, "readings": [
        {"seq": seq, "ts": "2026-11-27T01:00:00.000Z", "metrics": {"temp_c": 21.5}}
    ]}))
    .unwrap()
}

#[tokio::test]
async fn a_device_cannot_publish_or_subscribe_under_another_device() {
    let mut cloud = cloud().await;
    let (a, a_secret) = cloud.device("a").await;
    let (b, b_secret) = cloud.device("b").await;
    let mut b_client = connect(cloud.broker.mqtt, &b, &b, &b_secret, None).await.unwrap();
    assert_eq!(
        b_client.subscribe(&format!("edgewatch/v1/devices/{b}/#")).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    // A publishes a well-formed batch for B on B's telemetry topic: the broker closes A and
    // nothing reaches B's subscription or the bridge (hence the bus).
    let mut a_client = connect(cloud.broker.mqtt, &a, &a, &a_secret, None).await.unwrap();
    a_client
        .client
        .publish(
            format!("edgewatch/v1/devices/{b}/telemetry"),
            QoS::AtLeastOnce,
            false,
            batch(&b, 1),
        )
        .await
        .unwrap();
    a_client.closed(WAIT).await;
    let out = mosquitto(
        "mosquitto_pub",
        cloud.broker.mqtt,
        &[
            "-i",
            &a,
            "-u",
            &a,
            "-P",
            &a_secret,
            "-q",
            "1",
            "-t",
            &format!("edgewatch/v1/devices/{b}/status"),
            "-r",
            "-m",
            "{\"online\":false}",
        ],
    )
    .await;
    assert!(!out.status.success(), "mosquitto_pub as A on B's status topic: {}", stderr(&out));
    assert!(b_client.message(Duration::from_secs(2)).await.is_none(), "B saw A's message");
    assert!(
        cloud.next_telemetry(Duration::from_millis(500)).await.is_none(),
        "A's forged batch reached the bus"
    );

    // A may not read B's topics either, directly, by wildcard or through a shared subscription.
    let mut a_client = connect(cloud.broker.mqtt, &a, &a, &a_secret, None).await.unwrap();
    for filter in [
        format!("edgewatch/v1/devices/{b}/config"),
        "edgewatch/v1/devices/+/telemetry".to_owned(),
        "edgewatch/v1/devices/#".to_owned(),
        "#".to_owned(),
        format!("$share/g/edgewatch/v1/devices/{b}/#"),
    ] {
        assert_eq!(a_client.subscribe(&filter).await, SubscribeReasonCode::Failure, "{filter}");
    }
    assert_eq!(
        a_client.subscribe(&format!("edgewatch/v1/devices/{a}/config")).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    // The isolation is not an outage: A's own batch flows to the bus, and B's config reaches B only.
    a_client
        .client
        .publish(
            format!("edgewatch/v1/devices/{a}/telemetry"),
            QoS::AtLeastOnce,
            false,
            batch(&a, 7),
        )
        .await
        .unwrap();
    let (key, body) = cloud.next_telemetry(WAIT).await.expect("A's own batch reaches the bus");
    assert_eq!(key, format!("telemetry.{a}"));
    assert_eq!(body["readings"][0]["seq"], 7);
    let put = cloud
        .client
        .put(format!("{}/api/v1/devices/{b}/config", cloud.devices))
        .bearer_auth(&cloud.owner)
        .json(&json!({"config": {"interval_s": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let config = b_client.message(WAIT).await.expect("B receives its config");
    assert_eq!(config.topic, format!("edgewatch/v1/devices/{b}/config"));
    assert!(a_client.message(Duration::from_secs(1)).await.is_none(), "A saw B's config");
}

#[tokio::test]
async fn device_logins_need_the_right_secret_and_their_own_client_id() {
    let cloud = cloud().await;
    let (a, a_secret) = cloud.device("a").await;
    let (b, _) = cloud.device("b").await;
    let wrong = connect(cloud.broker.mqtt, &a, &a, "not-the-secret", None).await;
    assert_eq!(wrong.err(), Some(ConnectReturnCode::BadUserNamePassword));
    // Another device's id as client id would take over (or hand over) its session.
    let borrowed = connect(cloud.broker.mqtt, &b, &a, &a_secret, None).await;
    assert_eq!(borrowed.err(), Some(ConnectReturnCode::BadClientId));
    let out = mosquitto(
        "mosquitto_pub",
        cloud.broker.mqtt,
        &[
            "-i",
            "someone",
            "-u",
            &a,
            "-P",
            &a_secret,
            "-t",
            &format!("edgewatch/v1/devices/{a}/status"),
            "-m",
            "{}",
        ],
    )
    .await;
    assert!(stderr(&out).contains("identifier rejected"), "{}", stderr(&out));
    // Non-canonical spellings of the id are not the device.
    let upper = a.to_uppercase();
    let shouted = connect(cloud.broker.mqtt, &upper, &upper, &a_secret, None).await;
    assert_eq!(shouted.err(), Some(ConnectReturnCode::BadUserNamePassword));
    assert!(connect(cloud.broker.mqtt, &a, &a, &a_secret, None).await.is_ok());
}

#[tokio::test]
async fn a_rotated_or_deleted_credential_ends_the_session_within_5_s() {
    let cloud = cloud().await;
    let (a, a_secret) = cloud.device("a").await;
    let mut session = connect(cloud.broker.mqtt, &a, &a, &a_secret, None).await.unwrap();
    let rotated: Value = cloud
        .client
        .post(format!("{}/api/v1/devices/{a}/credentials", cloud.devices))
        .bearer_auth(&cloud.owner)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    session.closed(Duration::from_secs(6)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "the old secret kept its session for {took:?}");
    let old = connect(cloud.broker.mqtt, &a, &a, &a_secret, None).await;
    assert_eq!(old.err(), Some(ConnectReturnCode::BadUserNamePassword));
    let new_secret = rotated["device_secret"].as_str().unwrap();
    let mut session = connect(cloud.broker.mqtt, &a, &a, new_secret, None).await.unwrap();

    let deleted = cloud
        .client
        .delete(format!("{}/api/v1/devices/{a}", cloud.devices))
        .bearer_auth(&cloud.owner)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    session.closed(Duration::from_secs(6)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let _ = &cloud.core;
}

#[tokio::test]
async fn the_devices_service_being_down_refuses_new_devices_as_unavailable() {
    // Nothing listens at this address: the adapter cannot tell, so the client hears "server
    // unavailable" (retry later) rather than "bad credentials".
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let config = loopback_config(Role::Cloud, vec![]);
    let auth: Arc<dyn Authenticator> = Arc::new(Chain(vec![
        Arc::new(Accounts::new([])),
        Arc::new(DevicesHttp::new(&url, Duration::from_secs(1), Duration::from_secs(1))),
    ]));
    let broker = start(config, auth).await;
    let id = edgewatch_protocol::DeviceId::new().to_string();
    let refused = connect(broker.mqtt, &id, &id, "secret", None).await;
    assert_eq!(refused.err(), Some(ConnectReturnCode::ServiceUnavailable));
}
