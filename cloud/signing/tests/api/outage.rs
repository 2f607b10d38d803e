//! Redis goes away and comes back: sign-in answers 503 with Retry-After, readiness turns red,
//! and both recover without a restart. The test runs a Redis of its own so that stopping it
//! disturbs no other test.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::process::{Child, Command};

use crate::helpers::{Shape, config, error_code, spawn_with};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server must be installed (scripts/services.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child
}

#[tokio::test]
async fn redis_outage_gives_503_and_recovers_without_restart() {
    let port = free_port();
    let mut redis = start_redis(port).await;
    let mut cfg = config(Shape::Distributed).await;
    cfg.cache_url = format!("redis://127.0.0.1:{port}");
    let app = spawn_with(cfg).await;
    let tokens = app.signed_in("ada@example.com").await;
    assert_eq!(app.me(tokens["access_token"].as_str().unwrap()).await.status(), StatusCode::OK);

    redis.kill().await.unwrap();
    let login = app.login("ada@example.com", "correct horse battery").await;
    assert_eq!(login.headers()["retry-after"], "5");
    assert_eq!(error_code(login, StatusCode::SERVICE_UNAVAILABLE).await, "unavailable");
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert!(body["error"]["fields"]["session_store"].is_string(), "{body}");
    let me = app.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(
        me.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "no session store, no verdict: 503, not 401"
    );

    let _redis = start_redis(port).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let login = app.login("ada@example.com", "correct horse battery").await;
        if login.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "login did not recover: {}", login.status());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(app.client.get(app.url("/readyz")).send().await.unwrap().status(), StatusCode::OK);
}
