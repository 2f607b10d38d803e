use std::sync::Arc;

use edgewatch_common::{
    bus::{Bus, Subscription, amqp::AmqpBus},
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::{Devices, DevicesConfig};
use edgewatch_protocol::{DEVICE_EVENTS_QUEUE, MONITORING_QUEUE};
use edgewatch_signing::SigningConfig;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const SERVICE_TOKEN: &str = "devices-test-service-token-0123";

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Embedded,
    Distributed,
}

pub struct TestApp {
    pub devices: String,
    pub signing: String,
    pub client: Client,
    /// A consumer of the monitoring queue, as monitoring would be.
    pub telemetry: Subscription,
    /// A consumer of the device-events queue (`device.*`), as monitoring would be.
    pub events: Subscription,
    /// The service core, for calls a test makes directly.
    pub core: Devices,
    /// The devices configuration it runs with (to start it again on the same database).
    pub config: DevicesConfig,
    /// The RabbitMQ vhost URL in the distributed shape.
    pub amqp_url: Option<String>,
    shutdown: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(shape: Shape) -> TestApp {
    spawn_app_with(shape, |_| {}).await
}

/// A signing service on SQLite until `shutdown`; returns its base URL.
pub async fn spawn_signing(shutdown: &Shutdown) -> String {
    let signing_config = SigningConfig {
        keys_dir: std::env::temp_dir()
            .join(format!("edgewatch-devices-keys-{}", edgewatch_protocol::DeviceId::new())),
        service_token: SERVICE_TOKEN.into(),
        database_url: services::sqlite_url("signing.db"),
        ..SigningConfig::default()
    };
    let (router, _) = edgewatch_signing::build(&signing_config).await.expect("signing");
    serve_on_loopback(router, shutdown).await
}

/// The devices configuration of a test in `shape`, next to the signing service at `signing`:
/// a database, vhost and cache namespace of its own, the MQTT bridge on Mosquitto.
pub async fn devices_config(shape: Shape, signing: &str) -> DevicesConfig {
    let mut config = DevicesConfig {
        signing_url: signing.to_owned(),
        service_token: SERVICE_TOKEN.into(),
        public_http_base_url: "http://edge.example:8080".into(),
        mqtt_url: Some(services::require("EDGEWATCH_TEST_MQTT_URL")),
        // Tests share the broker: a group and a session of their own each.
        mqtt_share_group: format!("test-{}", edgewatch_protocol::DeviceId::new()),
        mqtt_client_id: Some(format!("test-bridge-{}", edgewatch_protocol::DeviceId::new())),
        ..DevicesConfig::default()
    };
    match shape {
        Shape::Embedded => config.database_url = services::sqlite_url("devices.db"),
        Shape::Distributed => {
            config.database_url = services::postgres_database().await;
            config.bus_url = services::amqp_vhost().await;
            config.cache_url = services::require("EDGEWATCH_TEST_REDIS_URL");
            config.cache_namespace = format!("test:{}:", edgewatch_protocol::DeviceId::new());
        }
    }
    config
}

/// `spawn_app` with a last word on the devices configuration.
pub async fn spawn_app_with(shape: Shape, adjust: impl FnOnce(&mut DevicesConfig)) -> TestApp {
    let shutdown = Shutdown::new();
    let signing = spawn_signing(&shutdown).await;
    let mut config = devices_config(shape, &signing).await;
    adjust(&mut config);
    let amqp_url = config.bus_url.starts_with("amqp").then(|| config.bus_url.clone());
    let (router, core) = edgewatch_devices::build(&config, &shutdown).await.expect("devices");
    let bus: Arc<dyn Bus> = match &amqp_url {
        Some(url) => Arc::new(
            AmqpBus::connect(url, edgewatch_common::bus::Topology::standard()).await.unwrap(),
        ),
        None => core.bus(),
    };
    let telemetry = bus.subscribe(MONITORING_QUEUE, 50).await.unwrap();
    let events = bus.subscribe(DEVICE_EVENTS_QUEUE, 50).await.unwrap();
    let devices = serve_on_loopback(router, &shutdown).await;
    TestApp {
        devices,
        signing,
        client: Client::new(),
        telemetry,
        events,
        core,
        config,
        amqp_url,
        shutdown,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.devices)
    }

    /// Registers and signs in a user; returns their access token.
    pub async fn user(&self, email: &str) -> String {
        edgewatch_common::testkit::sign_up(&self.client, &self.signing, email).await
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// Creates a device; returns (device, enrollment token).
    pub async fn device(&self, token: &str, body: Value) -> (Value, String) {
        let answer = self.call(reqwest::Method::POST, "/api/v1/devices", token, Some(body)).await;
        assert_eq!(answer.status(), StatusCode::CREATED);
        let device: Value = answer.json().await.unwrap();
        let enrollment = device["enrollment_token"].as_str().unwrap().to_owned();
        (device, enrollment)
    }

    pub async fn enroll(&self, enrollment_token: &str) -> Response {
        self.client
            .post(self.url("/api/v1/devices/enroll"))
            .json(&json!({"enrollment_token": enrollment_token, "hardware": {"model": "Raspberry Pi 4"}}))
            .send()
            .await
            .unwrap()
    }

    pub async fn ingest(&self, device_id: &str, secret: &str, body: &[u8]) -> Response {
        self.ingest_encoded(device_id, secret, None, body).await
    }

    /// A telemetry post with this `Content-Encoding` (the body already encoded).
    pub async fn ingest_encoded(
        &self,
        device_id: &str,
        secret: &str,
        encoding: Option<&str>,
        body: &[u8],
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/api/v1/devices/{device_id}/telemetry")))
            .bearer_auth(secret)
            .header("content-type", "application/json")
            .header("x-request-id", "ingest-test-1");
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        request.body(body.to_vec()).send().await.unwrap()
    }
}

pub async fn error_code(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    body["error"]["code"].as_str().expect("an error code").to_owned()
}

impl TestApp {
    /// Stops the service (and its background tasks) as a shutdown signal would.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// Creates and enrolls a device for `owner`; returns (device id, device secret).
    pub async fn enrolled_device(&self, owner: &str, name: &str) -> (String, String) {
        let (device, token) = self.device(owner, json!({ "name": name })).await;
        let enrolled: Value = self.enroll(&token).await.json().await.unwrap();
        let id = device["id"].as_str().unwrap().to_owned();
        assert_eq!(enrolled["device_id"], json!(id));
        (id, enrolled["device_secret"].as_str().unwrap().to_owned())
    }

    /// Takes the bus away: deletes the app's vhost, which closes every connection to it.
    pub async fn bus_outage(&self) {
        vhost_outage(self.amqp_url.as_deref().expect("the distributed shape")).await;
    }

    /// Brings the bus back: the vhost again (empty), with rights for the test user.
    pub async fn bus_back(&self) {
        vhost_back(self.amqp_url.as_deref().expect("the distributed shape")).await;
    }

    /// A device's status as the API shows it.
    pub async fn status_of(&self, owner: &str, id: &str) -> String {
        let device: Value = self
            .call(reqwest::Method::GET, &format!("/api/v1/devices/{id}"), owner, None)
            .await
            .json()
            .await
            .unwrap();
        device["status"].as_str().unwrap().to_owned()
    }
}

/// The next message on `sub` (acked), as (routing key, message id, JSON body); fails after
/// `seconds`.
pub async fn next_message(sub: &mut Subscription, seconds: u64) -> (String, String, Value) {
    let delivery = tokio::time::timeout(std::time::Duration::from_secs(seconds), sub.next())
        .await
        .unwrap_or_else(|_| panic!("nothing arrived on the bus within {seconds} s"))
        .expect("the subscription ended");
    let message = delivery.message.clone();
    delivery.ack().await.unwrap();
    let body = serde_json::from_slice(&message.body).unwrap();
    (message.routing_key, message.message_id.unwrap_or_default(), body)
}

/// The next `device.*` event for `device_id` (skipping other devices' events).
pub async fn next_event_for(sub: &mut Subscription, device_id: &str) -> (String, Value) {
    loop {
        let (key, _, body) = next_message(sub, 15).await;
        let about = body.get("device_id").or_else(|| body.get("id")).and_then(Value::as_str);
        if about == Some(device_id) {
            return (key, body);
        }
    }
}

/// The vhost of `amqp_url` (on the shared broker) and the admin API (base, user, password).
fn vhost_admin(amqp_url: &str) -> (String, String, String, String) {
    let vhost = amqp_url.rsplit('/').next().expect("a vhost in the AMQP URL");
    let admin = services::require("EDGEWATCH_TEST_AMQP_ADMIN_URL");
    let (scheme, rest) = admin.split_once("://").unwrap();
    let (credentials, host) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    (vhost.to_owned(), format!("{scheme}://{host}"), user.to_owned(), password.to_owned())
}

/// Takes the bus of `amqp_url` away: deletes its vhost, which closes every connection to it.
pub async fn vhost_outage(amqp_url: &str) {
    let (vhost, base, user, password) = vhost_admin(amqp_url);
    let deleted = Client::new()
        .delete(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth(&user, Some(&password))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success(), "deleting vhost: {}", deleted.status());
}

/// Brings the bus of `amqp_url` back: the vhost again (empty), with rights for the test user.
pub async fn vhost_back(amqp_url: &str) {
    let (vhost, base, user, password) = vhost_admin(amqp_url);
    let client = Client::new();
    let created = client
        .put(format!("{base}/api/vhosts/{vhost}"))
        .basic_auth(&user, Some(&password))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "creating vhost: {}", created.status());
    let granted = client
        .put(format!("{base}/api/permissions/{vhost}/{user}"))
        .basic_auth(&user, Some(&password))
        .json(&json!({"configure": ".*", "write": ".*", "read": ".*"}))
        .send()
        .await
        .unwrap();
    assert!(granted.status().is_success(), "granting: {}", granted.status());
}
