//! Redis goes away and comes back: sign-in answers 503 with Retry-After, readiness turns red,
//! and both recover without a restart. The test runs a Redis of its own so that stopping it
//! disturbs no other test.

use std::time::{Duration, Instant};

use edgewatch_common::testkit::services;
use reqwest::StatusCode;

use crate::helpers::{Shape, config, error_code, spawn_with};

#[tokio::test]
async fn redis_outage_gives_503_and_recovers_without_restart() {
    let mut redis = services::private_redis().await;
    let mut cfg = config(Shape::Distributed).await;
    cfg.cache_url = redis.url();
    let app = spawn_with(cfg).await;
    let tokens = app.signed_in("ada@example.com").await;
    assert_eq!(app.me(tokens["access_token"].as_str().unwrap()).await.status(), StatusCode::OK);

    redis.stop().await;
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

    redis.restart().await;
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
