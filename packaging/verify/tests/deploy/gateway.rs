//! The nginx gateway (packaging/nginx) in front of the services: API.md's route table, Socket.IO
//! over a WebSocket upgrade, request ids, sign-in rate limit, body limit, security headers and the
//! contract's error bodies on nginx's own answers.

use std::{path::PathBuf, process::Stdio, time::Duration};

use edgewatch_common::testkit::sign_up;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout, Command},
};

use crate::helpers::{
    Nginx, Stack, enrolled_device, free_port, host_port, ingest, repo_root, wait_for_seq,
};

async fn gateway_for(stack: &Stack) -> Nginx {
    Nginx::start(host_port(&stack.signing), host_port(&stack.devices), host_port(&stack.monitoring))
        .await
}

/// The headers every gateway answer carries, proxied or nginx's own.
fn assert_security_headers(answer: &Response) {
    let headers = answer.headers();
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(headers.get(name).map(|v| v.to_str().unwrap()), Some(value), "{name}");
    }
    let csp = headers.get("content-security-policy").expect("a CSP").to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(headers.get("server").is_none_or(|v| v.to_str().unwrap() == "nginx"), "no version");
    assert_eq!(headers.get_all("x-request-id").iter().count(), 1, "exactly one request id");
}

async fn error_code(answer: Response, status: StatusCode) -> String {
    assert_eq!(answer.status(), status);
    assert_eq!(answer.headers()["content-type"], "application/json");
    let body: Value = answer.json().await.expect("the contract's JSON error body");
    body["error"]["message"].as_str().expect("an error message");
    body["error"]["code"].as_str().expect("an error code").to_owned()
}

/// The real socket.io-client (cloud/monitoring/tests/live-client), one JSON line per event.
struct LiveClient {
    _child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl LiveClient {
    fn start(base: &str, token: &str) -> Self {
        let dir: PathBuf = repo_root().join("cloud/monitoring/tests/live-client");
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
        self.next("ack").await["ack"].clone()
    }

    /// The next record of `kind`, skipping others; a connect_error fails at once.
    async fn next(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no `{kind}` from the client in time"))
                .unwrap()
                .expect("the client exited");
            let record: Value = serde_json::from_str(&line).unwrap();
            assert_ne!(record["kind"], "connect_error", "{record}");
            if record["kind"] == kind {
                return record;
            }
        }
    }
}

#[tokio::test]
async fn the_api_and_socketio_work_through_the_gateway() {
    let stack = Stack::start().await;
    let gateway = gateway_for(&stack).await;
    let client = &stack.client;

    // signing: register, sign in, who am I, keys.
    let _admin = sign_up(client, &gateway.base, "admin@example.com").await;
    let alice = sign_up(client, &gateway.base, "alice@example.com").await;
    let me: Value = client
        .get(gateway.url("/api/v1/auth/me"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["email"], "alice@example.com");
    assert_eq!(me["role"], "user");
    for jwks in ["/api/v1/auth/jwks", "/.well-known/jwks.json"] {
        let keys: Value = client.get(gateway.url(jwks)).send().await.unwrap().json().await.unwrap();
        assert!(!keys["keys"].as_array().unwrap().is_empty(), "{jwks}: {keys}");
    }

    // devices: create, list, enroll.
    let (id, secret) = enrolled_device(client, &gateway.base, &alice, "greenhouse-1").await;
    let listed: Value = client
        .get(gateway.url("/api/v1/devices?tag=greenhouse"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], json!(id), "{listed}");

    // Socket.IO through the gateway's WebSocket upgrade (the client allows no polling fallback).
    let mut live = LiveClient::start(&gateway.base, &alice);
    live.next("connect").await;
    assert_eq!(live.emit("subscribe", json!({"device_id": id})).await, json!({"ok": true}));

    // ingest through the gateway -> bus -> monitoring -> store and live push.
    ingest(client, &gateway.base, &id, &secret, 1, 21.5).await;
    let pushed = live.next("telemetry").await;
    assert_eq!(pushed["data"]["device_id"], json!(id));
    assert_eq!(pushed["data"]["seq"], 1);
    assert_eq!(pushed["data"]["metrics"]["sensor.greenhouse.temp_c"], 21.5);
    ingest(client, &gateway.base, &id, &secret, 2, 22.0).await;
    assert_eq!(live.next("telemetry").await["data"]["seq"], 2);

    // monitoring: latest, metric names, raw points.
    let latest = wait_for_seq(client, &gateway.base, &alice, &id, 2).await;
    assert_eq!(latest["metrics"]["sensor.greenhouse.temp_c"], 22.0);
    let names: Value = client
        .get(gateway.url(&format!("/api/v1/telemetry/{id}/metrics")))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(names["items"][0]["name"], "sensor.greenhouse.temp_c", "{names}");
    let raw: Value = client
        .get(gateway.url(&format!(
            "/api/v1/telemetry/{id}?metric=sensor.greenhouse.temp_c\
             &from=2026-11-26T09:00:00Z&to=2026-11-26T11:00:00Z"
        )))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let values: Vec<f64> =
        raw["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect();
    assert_eq!(values, vec![21.5, 22.0], "{raw}");

    // Another user cannot read it through the gateway either (the service's 403 passes through).
    let bob = sign_up(client, &gateway.base, "bob@example.com").await;
    let refused = client
        .get(gateway.url(&format!("/api/v1/telemetry/{id}/latest")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn request_ids_headers_and_body_limit() {
    let stack = Stack::start().await;
    let gateway = gateway_for(&stack).await;
    let client = Client::new();

    // The client's id reaches the service, which echoes it; one header, not two.
    let answer = client
        .get(gateway.url("/api/v1/auth/jwks"))
        .header("x-request-id", "deploy-test-42")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_security_headers(&answer);
    assert_eq!(answer.headers()["x-request-id"], "deploy-test-42");

    // Without one, nginx makes one (32 hex digits: not the service's own UUID format, so this
    // proves the service received nginx's id and echoed it).
    let answer = client.get(gateway.url("/api/v1/auth/jwks")).send().await.unwrap();
    assert_security_headers(&answer);
    let made = answer.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(made.len(), 32, "{made}");
    assert!(made.chars().all(|c| c.is_ascii_hexdigit()), "{made}");
    let again = client.get(gateway.url("/api/v1/auth/jwks")).send().await.unwrap();
    assert_ne!(again.headers()["x-request-id"].to_str().unwrap(), made, "a fresh id each time");

    // nginx's own answers carry the headers and the contract's body too.
    let metrics = client.get(gateway.url("/metrics")).send().await.unwrap();
    assert_security_headers(&metrics);
    assert_eq!(error_code(metrics, StatusCode::NOT_FOUND).await, "not_found");

    // Bodies over 2 MiB stop at the gateway.
    let big = vec![b' '; 3 << 20];
    let too_large = client
        .post(
            gateway
                .url(&format!("/api/v1/devices/{}/telemetry", edgewatch_protocol::DeviceId::new())),
        )
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("nginx answers 413 before reading the body");
    assert_security_headers(&too_large);
    assert_eq!(error_code(too_large, StatusCode::PAYLOAD_TOO_LARGE).await, "payload_too_large");

    // A service's own error passes through untouched (devices: no such device for this user).
    let token = sign_up(&client, &gateway.base, "carol@example.com").await;
    let missing = client
        .get(gateway.url(&format!("/api/v1/devices/{}", edgewatch_protocol::DeviceId::new())))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_security_headers(&missing);
    assert_eq!(error_code(missing, StatusCode::NOT_FOUND).await, "not_found");
}

#[tokio::test]
async fn sign_in_floods_get_429_with_retry_after_from_the_gateway() {
    let stack = Stack::start().await;
    let gateway = gateway_for(&stack).await;
    let client = Client::new();
    let mut statuses = Vec::new();
    let mut limited = None;
    // Unknown accounts, so signing's per-account limit never answers instead of the gateway;
    // its per-address limit (30 a minute) is beyond these 20. Twenty leaves room for slow
    // sign-ins on a loaded machine (the bucket drains one request every 6 s).
    for n in 0..20 {
        let answer = client
            .post(gateway.url("/api/v1/auth/login"))
            .json(&json!({"email": format!("nobody{n}@example.com"), "password": "wrong password"}))
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
        if answer.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(answer);
            break;
        }
    }
    assert_eq!(statuses[0], 401, "{statuses:?}");
    // The burst is 5 at once plus one a 6 s: at least 6 pass, and a flood is stopped.
    assert!(statuses.iter().filter(|s| **s == 401).count() >= 6, "{statuses:?}");
    let limited = limited.unwrap_or_else(|| panic!("no 429 in {statuses:?}"));
    assert_security_headers(&limited);
    let retry: u64 = limited.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0, "Retry-After {retry}");
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["message"].as_str().unwrap().contains("sign-in"), "{body}");

    // Only sign-in is limited: the rest of signing still answers.
    let keys = client.get(gateway.url("/api/v1/auth/jwks")).send().await.unwrap();
    assert_eq!(keys.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_unreachable_service_is_a_503_with_retry_after() {
    // Nothing listens on these ports.
    let dead = format!("127.0.0.1:{}", free_port());
    let gateway = Nginx::start(&dead, &dead, &dead).await;
    let answer =
        Client::new().get(gateway.url("/api/v1/weather?lat=1&lon=2")).send().await.unwrap();
    assert_security_headers(&answer);
    assert_eq!(answer.headers()["retry-after"], "5");
    assert_eq!(error_code(answer, StatusCode::SERVICE_UNAVAILABLE).await, "unavailable");
    // The gateway's own health does not depend on the services.
    let health = Client::new().get(gateway.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}
