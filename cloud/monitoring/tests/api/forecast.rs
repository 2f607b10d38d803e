//! `/api/v1/forecast/{device_id}` on stored telemetry and `/api/v1/weather` against a local
//! open-meteo stand-in (good answers, then failures served stale from the cache).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{SystemTime, UNIX_EPOCH},
};

use axum::{
    Router, extract::State, http::StatusCode as AxumStatus, response::IntoResponse, routing::get,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Shape, error_field, spawn_app, spawn_app_with};

const STEP_S: u64 = 600;
const READINGS: u64 = 3 * 24 * 6;

fn cycle(t: u64) -> f64 {
    20.0 + 4.0 * (std::f64::consts::TAU * (t % 86_400) as f64 / 86_400.0).sin()
}

fn rfc3339(t: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(t as i64).unwrap();
    t.format(&time::format_description::well_known::Rfc3339).unwrap()
}

async fn forecast_from_telemetry(shape: Shape) {
    let app = spawn_app(shape).await;
    let alice = app.user("forecast-alice@example.com").await;
    let mallory = app.user("forecast-mallory@example.com").await;
    let device = app.device(&alice, "greenhouse").await;
    // Three days of a daily temperature cycle, one reading every 10 minutes, ending now.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() / STEP_S * STEP_S;
    let start = now - READINGS * STEP_S;
    let readings: Vec<Value> = (0..READINGS)
        .map(|i| {
            let t = start + i * STEP_S;
            json!({"seq": i + 1, "ts": rfc3339(t), "metrics": {"temp_c": cycle(t)}})
        })
        .collect();
    app.ingest(&device, Value::Array(readings)).await;
    app.wait_for_seq(&device, &alice, READINGS).await;

    let id = &device.id;
    let answer = app.get(&format!("/api/v1/forecast/{id}?metric=temp_c&horizon=6h"), &alice).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let forecast: Value = answer.json().await.unwrap();
    assert!(forecast["model"].is_string(), "{forecast}");
    assert!(forecast["trained_on"]["points"].as_u64().unwrap() > 100, "{forecast}");
    assert!(forecast["mae_backtest"].as_f64().unwrap() < 0.5, "{forecast}");
    let points = forecast["points"].as_array().unwrap();
    // The history is bucketed (a few-minute step), so the grid spacing is the buckets' median
    // spacing; the points must still reach 6 h past the last reading and not much further.
    let secs = |p: &Value| {
        time::OffsetDateTime::parse(
            p[0].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp() as u64
    };
    let last_reading = start + (READINGS - 1) * STEP_S;
    let end = secs(points.last().unwrap());
    assert!(points.len() >= 24, "{forecast}");
    assert!(
        end >= last_reading + 6 * 3600 - STEP_S && end <= last_reading + 6 * 3600 + STEP_S,
        "{forecast}"
    );
    for p in points {
        let ts = secs(p);
        let (value, lo, hi) =
            (p[1].as_f64().unwrap(), p[2].as_f64().unwrap(), p[3].as_f64().unwrap());
        assert!(lo <= value && value <= hi, "{p}");
        // Bucket averages sit a few minutes off the reading times; the cycle moves < 0.2 °C then.
        assert!((value - cycle(ts)).abs() < 0.6, "{p} vs {}", cycle(ts));
    }

    for (query, field) in [
        ("horizon=6h", "metric"),
        ("metric=temp_c&horizon=8d", "horizon"),
        ("metric=temp_c&horizon=soon", "horizon"),
        ("metric=Bad%20Name", "metric"),
    ] {
        let answer = app.get(&format!("/api/v1/forecast/{id}?{query}"), &alice).await;
        let body = error_field(answer, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
    let none = app.get(&format!("/api/v1/forecast/{id}?metric=humidity"), &alice).await;
    assert_eq!(none.status(), StatusCode::NOT_FOUND);
    let theirs = app.get(&format!("/api/v1/forecast/{id}?metric=temp_c"), &mallory).await;
    assert_eq!(theirs.status(), StatusCode::FORBIDDEN);
    let anonymous = app.get(&format!("/api/v1/forecast/{id}?metric=temp_c"), "").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forecast_from_telemetry_embedded() {
    forecast_from_telemetry(Shape::Embedded).await;
}

#[tokio::test]
async fn forecast_from_telemetry_distributed() {
    forecast_from_telemetry(Shape::Distributed).await;
}

/// An open-meteo stand-in: 24 hours per forecast day from 2026-11-26T00:00, or 500 when `down`.
async fn open_meteo(down: Arc<AtomicBool>) -> String {
    async fn answer(
        State(down): State<Arc<AtomicBool>>,
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        if down.load(Ordering::SeqCst) {
            return (AxumStatus::INTERNAL_SERVER_ERROR, "upstream down").into_response();
        }
        let days: usize = q["forecast_days"].parse().unwrap();
        let time: Vec<String> = (0..days * 24)
            .map(|h| format!("2026-11-{:02}T{:02}:00", 26 + h / 24, h % 24))
            .collect();
        let temps: Vec<f64> = (0..days * 24).map(|h| 5.0 + (h % 24) as f64 * 0.25).collect();
        axum::Json(json!({
            "latitude": q["latitude"].parse::<f64>().unwrap(),
            "longitude": q["longitude"].parse::<f64>().unwrap(),
            "utc_offset_seconds": 0,
            "hourly_units": {"time": "iso8601", "temperature_2m": "°C"},
            "hourly": {"time": time, "temperature_2m": temps}
        }))
        .into_response()
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/v1/forecast", get(answer)).with_state(down);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn weather_is_served_and_stale_when_open_meteo_fails() {
    let down = Arc::new(AtomicBool::new(false));
    let base = open_meteo(Arc::clone(&down)).await;
    let app = spawn_app_with(Shape::Embedded, |config| {
        config.weather.base_url = base;
        config.weather.retries = 0;
        config.weather.timeout_ms = 2_000;
    })
    .await;
    let alice = app.user("weather-alice@example.com").await;

    let path = "/api/v1/weather?lat=47.6&lon=-122.3&hours=30";
    let fresh: Value = app.get(path, &alice).await.json().await.unwrap();
    assert_eq!(fresh["stale"], false, "{fresh}");
    assert_eq!(fresh["latitude"], 47.6);
    let points = fresh["points"].as_array().unwrap();
    assert_eq!(points.len(), 30);
    assert_eq!(points[1], json!(["2026-11-26T01:00:00Z", 5.25]));

    down.store(true, Ordering::SeqCst);
    let stale: Value = app.get(path, &alice).await.json().await.unwrap();
    assert_eq!(stale["stale"], true, "{stale}");
    assert!(stale["stale_reason"].as_str().unwrap().contains("500"), "{stale}");
    assert_eq!(stale["points"], fresh["points"]);

    // Never fetched while up: nothing to serve.
    let missing = app.get("/api/v1/weather?lat=10&lon=10", &alice).await;
    assert_eq!(missing.status(), StatusCode::SERVICE_UNAVAILABLE);

    for (query, field) in [
        ("lon=1", "lat"),
        ("lat=91&lon=0", "lat"),
        ("lat=0&lon=181", "lon"),
        ("lat=0&lon=0&hours=0", "hours"),
        ("lat=0&lon=0&hours=1000", "hours"),
        ("lat=north&lon=0", "query"),
    ] {
        let answer = app.get(&format!("/api/v1/weather?{query}"), &alice).await;
        let body = error_field(answer, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
}
