//! The HTTP skeleton every service shares, over a real socket.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use axum::{Router, routing::post};
use edgewatch_common::{
    ApiError,
    http::{ApiJson, Readiness, serve, service_router},
    shutdown::Shutdown,
    testkit::serve_on_loopback,
};
use edgewatch_protocol::Batch;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
struct Register {
    #[allow(dead_code)]
    email: String,
    #[allow(dead_code)]
    age: u8,
}

async fn register(ApiJson(_): ApiJson<Register>) -> &'static str {
    "ok"
}

async fn ingest(body: axum::body::Bytes) -> Result<&'static str, ApiError> {
    Batch::from_json(&body)?;
    Ok("stored")
}

async fn boom() -> Result<(), ApiError> {
    Err(ApiError::internal("database password is hunter2"))
}

struct App {
    base: String,
    healthy: Arc<AtomicBool>,
    shutdown: Shutdown,
    client: reqwest::Client,
}

async fn spawn_app() -> App {
    let healthy = Arc::new(AtomicBool::new(true));
    let flag = Arc::clone(&healthy);
    let readiness = Readiness::new().with("database", move || {
        let up = flag.load(Ordering::SeqCst);
        async move { if up { Ok(()) } else { Err("connection refused") } }
    });
    let api = Router::new()
        .route("/api/v1/register", post(register))
        .route("/api/v1/ingest", post(ingest))
        .route("/api/v1/boom", post(boom));
    let router = service_router("test", api, readiness, 64 * 1024);
    let shutdown = Shutdown::new();
    let base = serve_on_loopback(router, &shutdown).await;
    App { base, healthy, shutdown, client: reqwest::Client::new() }
}

async fn error_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(body["error"]["code"].is_string(), "no error code in {body}");
    assert!(body["error"]["message"].is_string(), "no error message in {body}");
    (status, body)
}

#[tokio::test]
async fn health_metrics_and_request_ids() {
    let app = spawn_app().await;
    let health = app.client.get(format!("{}/healthz", app.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let generated = health.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 7);

    let echoed = app
        .client
        .get(format!("{}/healthz", app.base))
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-42");

    let metrics =
        app.client.get(format!("{}/metrics", app.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains(r#"route="/healthz""#), "{metrics}");
    app.shutdown.cancel();
}

#[tokio::test]
async fn readiness_follows_its_checks() {
    let app = spawn_app().await;
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    app.healthy.store(false, Ordering::SeqCst);
    let response = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "5");
    let (status, body) = error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["fields"]["database"], "connection refused");
    app.healthy.store(true, Ordering::SeqCst);
    let ready = app.client.get(format!("{}/readyz", app.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "readiness recovers without a restart");
}

#[tokio::test]
async fn every_bad_request_gets_the_contract_error_body() {
    let app = spawn_app().await;
    let url = |path: &str| format!("{}{path}", app.base);

    let (status, body) = error_of(app.client.get(url("/nope")).send().await.unwrap()).await;
    assert_eq!((status, body["error"]["code"].as_str().unwrap()), (404, "not_found"));

    let (status, _) = error_of(app.client.get(url("/api/v1/register")).send().await.unwrap()).await;
    assert_eq!(status, 405);

    let send = |body: &'static str| {
        app.client
            .post(url("/api/v1/register"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (status, _) = error_of(send("{not json").await.unwrap()).await;
    assert_eq!(status, 400);
    let (status, body) = error_of(send(r#"{"email": "a@b.c", "age": "old"}"#).await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(body["error"]["fields"]["age"].is_string(), "{body}");
    let (status, _) = error_of(send(r#"{"email": "a@b.c"}"#).await.unwrap()).await;
    assert_eq!(status, 422);

    let (status, _) =
        error_of(app.client.post(url("/api/v1/register")).body("{}").send().await.unwrap()).await;
    assert_eq!(status, 415);

    let huge = format!(r#"{{"email": "{}", "age": 1}}"#, "a".repeat(100 * 1024));
    let response = app
        .client
        .post(url("/api/v1/register"))
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    let (status, _) = error_of(response).await;
    assert_eq!(status, 413);

    // A batch names its bad field; the status follows the contract.
    let bad = json!({"device_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                     "readings": [{"seq": 1, "ts": "2026-11-26T20:00:00Z", "metrics": {"x": "high"}}]});
    let (status, body) =
        error_of(app.client.post(url("/api/v1/ingest")).json(&bad).send().await.unwrap()).await;
    assert_eq!(status, 422);
    assert!(body["error"]["fields"]["readings[0].metrics.x"].is_string(), "{body}");

    // A 500 says nothing of its cause.
    let (status, body) = error_of(app.client.post(url("/api/v1/boom")).send().await.unwrap()).await;
    assert_eq!(status, 500);
    assert!(!body.to_string().contains("hunter2"));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops() {
    let slow = Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            "done"
        }),
    );
    let router = service_router("test", slow, Readiness::new(), 1024);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    let server = tokio::spawn(serve(listener, router, shutdown.clone()));
    let in_flight = tokio::spawn(reqwest::get(format!("{base}/slow")));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    shutdown.cancel();
    let answer = in_flight.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(answer.text().await.unwrap(), "done");
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .expect("the server stops after shutdown")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no new connections after shutdown"
    );
}
