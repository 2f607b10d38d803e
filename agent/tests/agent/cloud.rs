//! The devices service in process, on a loopback port it can leave and come back to (the cloud
//! going offline), with a consumer of the monitoring queue recording every seq it receives.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use edgewatch_common::{
    auth::{Principal, Role},
    shutdown::Shutdown,
    testkit::services,
};
use edgewatch_devices::{Devices, DevicesConfig, domain::DeviceInput};
use edgewatch_protocol::{Batch, DeviceId, MONITORING_QUEUE, Reading, UserId};

pub struct Cloud {
    pub core: Devices,
    router: axum::Router,
    pub addr: SocketAddr,
    server: Option<(Shutdown, tokio::task::JoinHandle<std::io::Result<()>>)>,
    root: Shutdown,
    /// Every reading handed to the bus, in arrival order.
    pub received: Arc<Mutex<Vec<(DeviceId, Reading)>>>,
    pub admin: Principal,
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.root.cancel();
    }
}

impl Cloud {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The service pushing configs to, and telling devices about, the test Mosquitto.
    pub async fn with_broker() -> Self {
        let (host, port) = broker();
        Self::start_with(|config| {
            config.mqtt_url = Some(services::require("EDGEWATCH_TEST_MQTT_URL"));
            config.public_mqtt_host = host;
            config.public_mqtt_port = port;
        })
        .await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut DevicesConfig)) -> Self {
        let root = Shutdown::new();
        let mut config = DevicesConfig {
            database_url: services::sqlite_url("devices.db"),
            bus_url: "memory://".into(),
            service_token: "agent-tests-service-token".into(),
            // Never contacted: the tests act on the service core as an admin.
            signing_url: "http://127.0.0.1:9".into(),
            ..DevicesConfig::default()
        };
        adjust(&mut config);
        let (router, core) = edgewatch_devices::build(&config, &root).await.expect("devices");
        let mut subscription = core.bus().subscribe(MONITORING_QUEUE, 50).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        tokio::spawn(async move {
            while let Some(delivery) = subscription.next().await {
                let batch =
                    Batch::from_json(&delivery.message.body).expect("a valid batch on the bus");
                sink.lock()
                    .unwrap()
                    .extend(batch.readings().iter().map(|r| (batch.device_id(), r.clone())));
                delivery.ack().await.unwrap();
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin =
            Principal { user_id: UserId::new(), role: Role::Admin, session_id: "tests".into() };
        let mut cloud = Self { core, router, addr, server: None, root, received, admin };
        cloud.serve(listener);
        cloud
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let token = self.root.child_token();
        let task = tokio::spawn(edgewatch_common::http::serve(
            listener,
            self.router.clone(),
            token.clone(),
        ));
        self.server = Some((token, task));
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening; requests in flight finish first.
    pub async fn go_offline(&mut self) {
        if let Some((token, task)) = self.server.take() {
            token.cancel();
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server stops")
                .unwrap()
                .unwrap();
        }
        assert!(tokio::net::TcpStream::connect(self.addr).await.is_err(), "still listening");
    }

    /// Listens again on the same address.
    pub async fn come_back(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.expect("the port again");
        self.serve(listener);
    }

    /// Creates a device; returns its enrollment token.
    pub async fn device(&self, name: &str) -> (DeviceId, String) {
        let input = DeviceInput {
            name: name.into(),
            kind: None,
            tags: vec![],
            location: None,
            metadata: Default::default(),
        };
        let (device, token) = self.core.create(&self.admin, input).await.unwrap();
        (device.id, token)
    }

    pub fn seqs_of(&self, device: DeviceId) -> Vec<u64> {
        self.readings_of(device).iter().map(|r| r.seq.get()).collect()
    }

    pub fn readings_of(&self, device: DeviceId) -> Vec<Reading> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|(d, _)| *d == device)
            .map(|(_, r)| r.clone())
            .collect()
    }
}

pub fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgewatch-agent-test-{}", DeviceId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Host and port of the test Mosquitto (`EDGEWATCH_TEST_MQTT_URL`, from scripts/services.sh).
pub fn broker() -> (String, u16) {
    let url = services::require("EDGEWATCH_TEST_MQTT_URL");
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').expect("mqtt://host:port");
    (host.to_owned(), port.parse().expect("a port"))
}
