//! Socket.IO with the real `socket.io-client` (npm), driven through `tests/live-client`.

use std::{path::PathBuf, process::Stdio, time::Duration};

use edgewatch_common::bus::Message;
use edgewatch_protocol::{DeviceId, DeviceStatus, StatusEvent, Timestamp};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::helpers::{Shape, spawn_app};

struct LiveClient {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/live-client")
}

impl LiveClient {
    fn start(base: &str, token: &str) -> Self {
        let dir = client_dir();
        assert!(
            dir.join("node_modules/socket.io-client").is_dir(),
            "socket.io-client is not installed: run `npm ci --prefix {}` (scripts/test.sh does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("client.mjs"))
            .args([base, token])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node must be installed to run the Socket.IO client");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Self { _child: child, stdin, lines }
    }

    async fn emit(&mut self, event: &str, data: Value) -> Value {
        let line = json!({"emit": event, "data": data}).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let ack = self.next("ack").await;
        ack["ack"].clone()
    }

    /// The next record of `kind`, skipping others.
    async fn next(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{kind}` from the client in time"))
                .unwrap()
                .expect("the client exited");
            let record: Value = serde_json::from_str(&line).unwrap();
            if record["kind"] == kind {
                return record;
            }
        }
    }

    /// The first record of any kind, if one comes within `wait`.
    async fn any_within(&mut self, wait: Duration) -> Option<Value> {
        match tokio::time::timeout(wait, self.lines.next_line()).await {
            Ok(Ok(Some(line))) => Some(serde_json::from_str(&line).unwrap()),
            _ => None,
        }
    }
}

#[tokio::test]
async fn live_telemetry_reaches_subscribers_of_that_device_only() {
    let app = spawn_app(Shape::Distributed).await;
    let alice = app.user("erin@example.com").await;
    let bob = app.user("frank@example.com").await;
    let mine = app.device(&alice, "mine").await;
    let other = app.device(&alice, "other").await;
    let bobs = app.device(&bob, "bobs").await;

    let mut client = LiveClient::start(&app.monitoring, &alice);
    client.next("connect").await;
    let refused = client.emit("subscribe", json!({"device_id": bobs.id})).await;
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("not yours"), "{refused}");
    let unknown = client.emit("subscribe", json!({"device_id": DeviceId::new()})).await;
    assert_eq!(unknown["ok"], false);
    let malformed = client.emit("subscribe", json!({"device": 1})).await;
    assert_eq!(malformed["ok"], false);
    assert_eq!(client.emit("subscribe", json!({"device_id": mine.id})).await, json!({"ok": true}));

    app.ingest(&other, json!([{"seq": 1, "ts": "2026-11-26T10:00:00Z", "metrics": {"x": 9}}]))
        .await;
    app.ingest(&bobs, json!([{"seq": 1, "ts": "2026-11-26T10:00:00Z", "metrics": {"x": 8}}])).await;
    app.ingest(&mine, json!([{"seq": 7, "ts": "2026-11-26T10:00:00Z", "metrics": {"x": 1.5}}]))
        .await;
    let pushed = client.next("telemetry").await;
    assert_eq!(
        pushed["data"],
        json!({"device_id": mine.id, "seq": 7, "ts": "2026-11-26T10:00:00.000Z", "metrics": {"x": 1.5}})
    );

    assert_eq!(client.emit("unsubscribe", json!({"device_id": mine.id})).await["ok"], true);
    app.ingest(&mine, json!([{"seq": 8, "ts": "2026-11-26T10:00:01Z", "metrics": {"x": 2}}])).await;
    app.wait_for_seq(&mine, &alice, 8).await;
    let after = client.any_within(Duration::from_millis(500)).await;
    assert!(after.is_none(), "nothing after unsubscribe, got {after:?}");
}

#[tokio::test]
async fn fleet_subscribers_get_status_of_their_devices() {
    let app = spawn_app(Shape::Embedded).await;
    let alice = app.user("gina@example.com").await;
    let bob = app.user("hank@example.com").await;
    let mine = app.device(&alice, "mine").await;
    let bobs = app.device(&bob, "bobs").await;
    let mut client = LiveClient::start(&app.monitoring, &alice);
    client.next("connect").await;
    assert_eq!(client.emit("subscribe_fleet", json!({})).await, json!({"ok": true}));

    let publish = |device: &str, status: DeviceStatus| {
        let event = StatusEvent {
            device_id: DeviceId::parse(device).unwrap(),
            status,
            ts: Timestamp::parse("2026-11-26T10:00:00Z").unwrap(),
        };
        app.bus.publish(Message::new("device.status", serde_json::to_vec(&event).unwrap()))
    };
    publish(&bobs.id, DeviceStatus::Online).await.unwrap();
    publish(&mine.id, DeviceStatus::Offline).await.unwrap();
    let status = client.next("status").await;
    assert_eq!(
        status["data"],
        json!({"device_id": mine.id, "status": "offline", "ts": "2026-11-26T10:00:00.000Z"}),
        "only the user's own device"
    );
}

#[tokio::test]
async fn bad_and_revoked_tokens_are_refused_on_connect() {
    let app = spawn_app(Shape::Embedded).await;
    let mut client = LiveClient::start(&app.monitoring, "not-a-token");
    let refused = client.next("connect_error").await;
    assert!(!refused["message"].as_str().unwrap().is_empty());

    let token = app.user("ivan@example.com").await;
    let logout = app
        .client
        .post(format!("{}/api/v1/auth/logout", app.signing))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), reqwest::StatusCode::NO_CONTENT);
    // Services trust a verified token for at most the verifier's session cache TTL.
    tokio::time::sleep(edgewatch_common::auth::SESSION_CACHE_TTL + Duration::from_millis(200))
        .await;
    let mut client = LiveClient::start(&app.monitoring, &token);
    client.next("connect_error").await;
}

/// Two replicas share Redis: a client connected to the one that consumes nothing still gets the
/// telemetry the other consumed.
#[tokio::test]
async fn pushes_reach_clients_of_other_replicas_through_redis() {
    use edgewatch_common::bus::{Topology, memory::MemoryBus};
    use std::sync::Arc;

    let app = spawn_app(Shape::Distributed).await;
    let token = app.user("kate@example.com").await;
    let device = app.device(&token, "far").await;
    let idle_bus = Arc::new(MemoryBus::new(Topology::standard(), 10));
    let other = app.replica(idle_bus).await;
    let mut client = LiveClient::start(&other, &token);
    client.next("connect").await;
    assert_eq!(client.emit("subscribe", json!({"device_id": device.id})).await["ok"], true);
    app.ingest(&device, json!([{"seq": 1, "ts": "2026-11-26T10:00:00Z", "metrics": {"x": 4}}]))
        .await;
    let pushed = client.next("telemetry").await;
    assert_eq!(pushed["data"]["seq"], 1);
}
