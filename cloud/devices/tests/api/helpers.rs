use std::sync::Arc;

use edgewatch_common::{
    bus::{Bus, Subscription, Topology, amqp::AmqpBus},
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::DevicesConfig;
use edgewatch_protocol::MONITORING_QUEUE;
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

/// `spawn_app` with a last word on the devices configuration.
pub async fn spawn_app_with(shape: Shape, adjust: impl FnOnce(&mut DevicesConfig)) -> TestApp {
    let shutdown = Shutdown::new();
    let signing_config = SigningConfig {
        keys_dir: std::env::temp_dir()
            .join(format!("edgewatch-devices-keys-{}", edgewatch_protocol::DeviceId::new())),
        service_token: SERVICE_TOKEN.into(),
        database_url: services::sqlite_url("signing.db"),
        ..SigningConfig::default()
    };
    let (router, _) = edgewatch_signing::build(&signing_config).await.expect("signing");
    let signing = serve_on_loopback(router, &shutdown).await;

    let mut config = DevicesConfig {
        signing_url: signing.clone(),
        service_token: SERVICE_TOKEN.into(),
        public_http_base_url: "http://edge.example:8080".into(),
        mqtt_url: Some(services::require("EDGEWATCH_TEST_MQTT_URL")),
        ..DevicesConfig::default()
    };
    let mut amqp_url = None;
    match shape {
        Shape::Embedded => config.database_url = services::sqlite_url("devices.db"),
        Shape::Distributed => {
            config.database_url = services::postgres_database().await;
            let url = services::amqp_vhost().await;
            config.bus_url = url.clone();
            config.cache_url = services::require("EDGEWATCH_TEST_REDIS_URL");
            config.cache_namespace = format!("test:{}:", edgewatch_protocol::DeviceId::new());
            amqp_url = Some(url);
        }
    }
    adjust(&mut config);
    let (router, core) = edgewatch_devices::build(&config, &shutdown).await.expect("devices");
    let bus: Arc<dyn Bus> = match &amqp_url {
        Some(url) => Arc::new(AmqpBus::connect(url, Topology::standard()).await.unwrap()),
        None => core.bus(),
    };
    let telemetry = bus.subscribe(MONITORING_QUEUE, 50).await.unwrap();
    let devices = serve_on_loopback(router, &shutdown).await;
    TestApp { devices, signing, client: Client::new(), telemetry, amqp_url, shutdown }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.devices)
    }

    /// Registers and signs in a user; returns their access token.
    pub async fn user(&self, email: &str) -> String {
        let body = json!({"email": email, "password": "correct horse battery"});
        let created = self
            .client
            .post(format!("{}/api/v1/auth/register", self.signing))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        let tokens: Value = self
            .client
            .post(format!("{}/api/v1/auth/login", self.signing))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens["access_token"].as_str().unwrap().to_owned()
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
        self.client
            .post(self.url(&format!("/api/v1/devices/{device_id}/telemetry")))
            .bearer_auth(secret)
            .header("content-type", "application/json")
            .header("x-request-id", "ingest-test-1")
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }
}

pub async fn error_code(response: Response, status: StatusCode) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    body["error"]["code"].as_str().expect("an error code").to_owned()
}
