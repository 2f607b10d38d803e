use std::{sync::Arc, time::Duration};

use edgewatch_common::{
    bus::Bus,
    shutdown::Shutdown,
    telemetry_store::{self, TelemetryStore},
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::DevicesConfig;
use edgewatch_monitoring::{MonitoringConfig, config::RetentionConfig};
use edgewatch_signing::SigningConfig;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

const SERVICE_TOKEN: &str = "monitoring-test-service-token-01";

#[derive(Debug, Clone, Copy)]
pub enum Shape {
    Embedded,
    Distributed,
}

pub struct TestApp {
    pub signing: String,
    pub devices: String,
    pub monitoring: String,
    pub client: Client,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn TelemetryStore>,
    pub monitoring_config: MonitoringConfig,
    shutdown: Shutdown,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A device a user registered and enrolled.
pub struct Device {
    pub id: String,
    pub secret: String,
}

pub async fn spawn_app(shape: Shape) -> TestApp {
    spawn_app_with(shape, |_| {}).await
}

/// `spawn_app` with a last word on the monitoring configuration.
pub async fn spawn_app_with(shape: Shape, adjust: impl FnOnce(&mut MonitoringConfig)) -> TestApp {
    let shutdown = Shutdown::new();
    let signing_config = SigningConfig {
        keys_dir: std::env::temp_dir()
            .join(format!("edgewatch-monitoring-keys-{}", edgewatch_protocol::DeviceId::new())),
        service_token: SERVICE_TOKEN.into(),
        database_url: services::sqlite_url("signing.db"),
        ..SigningConfig::default()
    };
    let (router, _) = edgewatch_signing::build(&signing_config).await.expect("signing");
    let signing = serve_on_loopback(router, &shutdown).await;

    let mut devices_config = DevicesConfig {
        signing_url: signing.clone(),
        service_token: SERVICE_TOKEN.into(),
        ..DevicesConfig::default()
    };
    // Readings in these tests carry fixed dates: nothing may age out, whatever today is.
    let mut monitoring_config = MonitoringConfig {
        signing_url: signing.clone(),
        service_token: SERVICE_TOKEN.into(),
        retention: RetentionConfig::keep_everything(),
        ..MonitoringConfig::default()
    };
    match shape {
        Shape::Embedded => {
            devices_config.database_url = services::sqlite_url("devices.db");
            monitoring_config.store_url = services::sqlite_url("telemetry.db");
        }
        Shape::Distributed => {
            devices_config.database_url = services::postgres_database().await;
            let url = services::amqp_vhost().await;
            devices_config.bus_url = url.clone();
            monitoring_config.bus_url = url;
            devices_config.cache_url = services::require("EDGEWATCH_TEST_REDIS_URL");
            devices_config.cache_namespace =
                format!("test:{}:", edgewatch_protocol::DeviceId::new());
            monitoring_config.store_url = services::mongodb_database();
            monitoring_config.live_redis_url = Some(services::require("EDGEWATCH_TEST_REDIS_URL"));
            monitoring_config.live_redis_prefix =
                format!("test-live-{}", edgewatch_protocol::DeviceId::new());
        }
    }
    adjust(&mut monitoring_config);
    let (router, core) =
        edgewatch_devices::build(&devices_config, &shutdown).await.expect("devices");
    let devices = serve_on_loopback(router, &shutdown).await;
    monitoring_config.devices_url = devices.clone();

    let store = telemetry_store::connect(&monitoring_config.store_url).await.expect("store");
    let bus = match shape {
        // One process, one in-process bus: monitoring consumes what devices publishes.
        Shape::Embedded => core.bus(),
        Shape::Distributed => edgewatch_common::bus::connect(
            &monitoring_config.bus_url,
            edgewatch_common::bus::Topology::standard(),
        )
        .await
        .expect("bus"),
    };
    let (router, _) = edgewatch_monitoring::build_with(
        &monitoring_config,
        &shutdown,
        Arc::clone(&store),
        Arc::clone(&bus),
    )
    .await
    .expect("monitoring");
    let monitoring = serve_on_loopback(router, &shutdown).await;
    let app = TestApp {
        signing,
        devices,
        monitoring,
        client: Client::new(),
        bus,
        store,
        monitoring_config,
        shutdown,
    };
    // The first account is the admin; tests' users are ordinary ones.
    app.user("admin@example.com").await;
    app
}

impl TestApp {
    /// Another monitoring replica of the same deployment, with `bus` for its consumer; returns
    /// its base URL.
    pub async fn replica(&self, bus: Arc<dyn Bus>) -> String {
        let store = telemetry_store::connect(&self.monitoring_config.store_url).await.unwrap();
        let (router, _) =
            edgewatch_monitoring::build_with(&self.monitoring_config, &self.shutdown, store, bus)
                .await
                .expect("replica");
        serve_on_loopback(router, &self.shutdown).await
    }

    /// Registers and signs in a user; returns their access token.
    pub async fn user(&self, email: &str) -> String {
        edgewatch_common::testkit::sign_up(&self.client, &self.signing, email).await
    }

    /// Creates and enrolls a device for the holder of `token`.
    pub async fn device(&self, token: &str, name: &str) -> Device {
        let (id, secret) =
            edgewatch_common::testkit::enroll_device(&self.client, &self.devices, token, name)
                .await;
        Device { id, secret }
    }

    /// Posts readings `(seq, ts, metrics)` through the devices service; expects 202.
    pub async fn ingest(&self, device: &Device, readings: Value) {
        let answer = self
            .client
            .post(format!("{}/api/v1/devices/{}/telemetry", self.devices, device.id))
            .bearer_auth(&device.secret)
            .json(&json!({"device_id": device.id, "readings": readings}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::ACCEPTED, "{:?}", answer.text().await);
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.monitoring))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Waits until the latest stored reading of `device` has `seq`.
    pub async fn wait_for_seq(&self, device: &Device, token: &str, seq: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let answer = self.get(&format!("/api/v1/telemetry/{}/latest", device.id), token).await;
            if answer.status() == StatusCode::OK {
                let latest: Value = answer.json().await.unwrap();
                if latest["seq"] == seq {
                    return latest;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "seq {seq} never reached the store");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn error_field(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    body["error"].clone()
}
