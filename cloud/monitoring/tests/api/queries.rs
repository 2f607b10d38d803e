use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Shape, error_field, spawn_app, spawn_app_with};

/// 60 readings a minute apart from 10:00, `t` = minute index, `h` only on even minutes.
fn hour_of_readings() -> Value {
    let readings: Vec<Value> = (0..60)
        .map(|i| {
            let mut metrics = json!({"t": i as f64});
            if i % 2 == 0 {
                metrics["h"] = json!(50.0);
            }
            json!({"seq": i + 1, "ts": format!("2026-11-26T10:{i:02}:30Z"), "metrics": metrics})
        })
        .collect();
    Value::Array(readings)
}

async fn ingest_to_query(shape: Shape) {
    let app = spawn_app(shape).await;
    let alice = app.user("alice@example.com").await;
    let bob = app.user("bob@example.com").await;
    let device = app.device(&alice, "greenhouse").await;
    app.ingest(&device, hour_of_readings()).await;

    let latest = app.wait_for_seq(&device, &alice, 60).await;
    assert_eq!(latest["ts"], "2026-11-26T10:59:30.000Z");
    assert_eq!(latest["metrics"], json!({"t": 59.0}));

    let id = &device.id;
    let catalogue: Value =
        app.get(&format!("/api/v1/telemetry/{id}/metrics"), &alice).await.json().await.unwrap();
    let names: Vec<&str> = catalogue["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["h", "t"]);
    assert_eq!(catalogue["items"][1]["first_ts"], "2026-11-26T10:00:30.000Z");

    let window = "from=2026-11-26T10:00:00Z&to=2026-11-26T11:00:00Z";
    let raw: Value = app
        .get(&format!("/api/v1/telemetry/{id}?metric=h&{window}"), &alice)
        .await
        .json()
        .await
        .unwrap();
    let points = raw["points"].as_array().unwrap();
    assert_eq!(points.len(), 30);
    assert_eq!(points[1], json!(["2026-11-26T10:02:30.000Z", 50.0]));
    let limited: Value = app
        .get(&format!("/api/v1/telemetry/{id}?metric=t&{window}&limit=5"), &alice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(limited["points"].as_array().unwrap().len(), 5);

    // Every aggregate at a 15-minute step (from the 1-minute rollups) and at 1h.
    for (agg, first) in [("avg", 7.0), ("min", 0.0), ("max", 14.0), ("sum", 105.0), ("count", 15.0)]
    {
        let answer: Value = app
            .get(&format!("/api/v1/telemetry/{id}?metric=t&{window}&step=15m&agg={agg}"), &alice)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(answer["agg"], agg);
        assert_eq!(answer["step"], "15m");
        let points = answer["points"].as_array().unwrap();
        assert_eq!(points.len(), 4, "{agg}: {answer}");
        assert_eq!(points[0], json!(["2026-11-26T10:00:00.000Z", first]), "{agg}");
    }
    let hourly: Value = app
        .get(&format!("/api/v1/telemetry/{id}?metric=t&{window}&step=1h&agg=avg"), &alice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hourly["points"], json!([["2026-11-26T10:00:00.000Z", 29.5]]));
    // A step no rollup divides is computed from raw points.
    let odd: Value = app
        .get(&format!("/api/v1/telemetry/{id}?metric=t&{window}&step=90s&agg=count"), &alice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(odd["points"][0], json!(["2026-11-26T10:00:00.000Z", 1.0]));
    assert_eq!(odd["points"][1], json!(["2026-11-26T10:01:30.000Z", 2.0]));

    // Ownership: someone else's device, an unknown one, no token.
    let foreign = app.get(&format!("/api/v1/telemetry/{id}/latest"), &bob).await;
    assert_eq!(error_field(foreign, StatusCode::FORBIDDEN).await["code"], "forbidden");
    let foreign = app.get(&format!("/api/v1/telemetry/{id}?metric=t&{window}"), &bob).await;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    let unknown = edgewatch_protocol::DeviceId::new();
    let answer = app.get(&format!("/api/v1/telemetry/{unknown}/metrics"), &alice).await;
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let anonymous = app
        .client
        .get(format!("{}/api/v1/telemetry/{id}/latest", app.monitoring))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Bad parameters: 422 with the field named, before the store is asked.
    for (query, field) in [
        ("metric=t&from=2026-11-26T11:00:00Z&to=2026-11-26T10:00:00Z", "from"),
        ("metric=t&from=2020-01-01T00:00:00Z&to=2026-11-26T10:00:00Z&step=1m", "step"),
        ("metric=t&step=500ms", "step"),
        ("metric=t&step=fortnight", "step"),
        ("metric=t&step=1m&agg=median", "agg"),
        ("metric=t&agg=avg", "step"),
        ("metric=t&limit=10001", "limit"),
        ("metric=t&from=yesterday", "from"),
        ("metric=Not%20A%20Name", "metric"),
        ("from=2026-11-26T10:00:00Z", "metric"),
    ] {
        let answer = app.get(&format!("/api/v1/telemetry/{id}?{query}"), &alice).await;
        let error = error_field(answer, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert!(error["fields"].get(field).is_some(), "{query}: {error}");
    }
    let bad_id = app.get("/api/v1/telemetry/not-a-uuid/latest", &alice).await;
    assert_eq!(bad_id.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let spec: Value = app.get("/api/v1/openapi.json", &alice).await.json().await.unwrap();
    assert!(spec["paths"]["/api/v1/telemetry/{device_id}"].is_object());
}

#[tokio::test]
async fn ingest_to_query_embedded() {
    ingest_to_query(Shape::Embedded).await;
}

#[tokio::test]
async fn ingest_to_query_distributed() {
    ingest_to_query(Shape::Distributed).await;
}

/// A redelivered batch (a publisher retry, a consumer crash) is stored once.
#[tokio::test]
async fn redelivered_batches_are_stored_once() {
    let app = spawn_app(Shape::Distributed).await;
    let alice = app.user("carol@example.com").await;
    let device = app.device(&alice, "meter").await;
    let readings = json!([
        {"seq": 1, "ts": "2026-11-26T10:00:00Z", "metrics": {"kwh": 1.5}},
        {"seq": 2, "ts": "2026-11-26T10:00:10Z", "metrics": {"kwh": 2.5}},
    ]);
    app.ingest(&device, readings.clone()).await;
    app.ingest(&device, readings).await;
    app.ingest(&device, json!([{"seq": 3, "ts": "2026-11-26T10:00:20Z", "metrics": {"kwh": 3.0}}]))
        .await;
    app.wait_for_seq(&device, &alice, 3).await;
    let window = "from=2026-11-26T10:00:00Z&to=2026-11-26T11:00:00Z";
    let hourly: Value = app
        .get(
            &format!("/api/v1/telemetry/{}?metric=kwh&{window}&step=1h&agg=sum", device.id),
            &alice,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hourly["points"], json!([["2026-11-26T10:00:00.000Z", 7.0]]));
}

/// Bodies that are not batches go to the dead-letter queue and do not hold up the queue.
#[tokio::test]
async fn poison_messages_are_dead_lettered() {
    use edgewatch_common::bus::{Message, dead_letter_queue};
    use edgewatch_protocol::MONITORING_QUEUE;

    let app = spawn_app(Shape::Distributed).await;
    let alice = app.user("dave@example.com").await;
    let device = app.device(&alice, "probe").await;
    let routing = format!("telemetry.{}", device.id);
    app.bus.publish(Message::new(&routing, &b"{not json"[..])).await.unwrap();
    app.bus
        .publish(Message::new(&routing, &br#"{"device_id":"x","readings":[]}"#[..]))
        .await
        .unwrap();
    app.ingest(&device, json!([{"seq": 1, "ts": "2026-11-26T10:00:00Z", "metrics": {"x": 1}}]))
        .await;
    app.wait_for_seq(&device, &alice, 1).await;
    let mut dead = app.bus.subscribe(&dead_letter_queue(MONITORING_QUEUE), 10).await.unwrap();
    for expected in [&b"{not json"[..], &br#"{"device_id":"x","readings":[]}"#[..]] {
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(10), dead.next())
            .await
            .expect("a dead letter")
            .unwrap();
        assert_eq!(&delivery.message.body[..], expected);
        delivery.ack().await.unwrap();
    }
}

/// FerretDB stops: messages wait unacked in RabbitMQ, readiness goes red, nothing crashes; when
/// it returns everything is written exactly once.
#[tokio::test]
async fn store_outage_holds_messages_until_the_store_returns() {
    use edgewatch_common::testkit::services;
    use std::time::Duration;

    let mut ferretdb = services::private_ferretdb().await;
    let store_url = format!("{}/outage", ferretdb.url());
    let app = spawn_app_with(Shape::Distributed, |c| c.store_url = store_url).await;
    let alice = app.user("judy@example.com").await;
    let device = app.device(&alice, "cellar").await;
    let reading = |seq: u64| json!([{"seq": seq, "ts": format!("2026-11-26T10:00:{seq:02}Z"), "metrics": {"x": 1}}]);
    app.ingest(&device, reading(1)).await;
    app.wait_for_seq(&device, &alice, 1).await;

    ferretdb.stop().await;
    for seq in 2..=4 {
        app.ingest(&device, reading(seq)).await;
    }
    let ready = format!("{}/readyz", app.monitoring);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = app.client.get(&ready).send().await.unwrap().status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "readiness never went red");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Queries fail cleanly meanwhile.
    let answer = app.get(&format!("/api/v1/telemetry/{}/latest", device.id), &alice).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);

    ferretdb.restart().await;
    app.wait_for_seq(&device, &alice, 4).await;
    let window = "from=2026-11-26T10:00:00Z&to=2026-11-26T11:00:00Z";
    let count: Value = app
        .get(
            &format!("/api/v1/telemetry/{}?metric=x&{window}&step=1h&agg=count", device.id),
            &alice,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(count["points"], json!([["2026-11-26T10:00:00.000Z", 4.0]]));
    let raw: Value = app
        .get(&format!("/api/v1/telemetry/{}?metric=x&{window}", device.id), &alice)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw["points"].as_array().unwrap().len(), 4);
    assert_eq!(app.client.get(&ready).send().await.unwrap().status(), StatusCode::OK);
}

/// The embedded shape serves the dashboard's files next to the API.
#[tokio::test]
async fn static_files_are_served_when_configured() {
    let dir = std::env::temp_dir()
        .join(format!("edgewatch-static-{}", edgewatch_protocol::DeviceId::new()));
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("index.html"), "<title>edgewatch</title>").unwrap();
    std::fs::write(dir.join("assets/app.js"), "console.log(1)").unwrap();
    let static_dir = dir.clone();
    let app = spawn_app_with(Shape::Embedded, |c| c.static_dir = Some(static_dir)).await;
    let page = app.client.get(format!("{}/", app.monitoring)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.text().await.unwrap(), "<title>edgewatch</title>");
    let script = app.client.get(format!("{}/assets/app.js", app.monitoring)).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"].to_str().unwrap().contains("javascript"));
    // The API still answers beside them.
    assert_eq!(
        app.client.get(format!("{}/healthz", app.monitoring)).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// The `tier` series of `edgewatch_monitoring_late_readings_total` on `/metrics` (0 if absent).
async fn late_counter(app: &crate::helpers::TestApp, tier: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.monitoring))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("edgewatch_monitoring_late_readings_total{{tier=\"{tier}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// A device back after 8 and 40 days offline, with the default horizons (raw 7 days, 1-minute
/// rollups 30 days): its late readings feed the rollups that cover them, retention then drops
/// only what is past each tier's horizon, and what it drops is counted. Times are relative to
/// now, so the test holds on any date.
async fn late_readings(shape: Shape) {
    use edgewatch_monitoring::{config::RetentionConfig, retention::purge_once};
    use edgewatch_protocol::Timestamp;

    const HOUR: i64 = 3_600_000;
    let app = spawn_app_with(shape, |c| c.retention = RetentionConfig::default()).await;
    let alice = app.user("erin@example.com").await;
    let device = app.device(&alice, "back-from-the-field").await;
    let now = Timestamp::now().as_millis();
    // The start of an hour `days` ago; its reading sits 30 s into that hour.
    let hour_ago =
        |days: i64| Timestamp::from_millis(now - days * 24 * HOUR).unwrap().truncate(HOUR);
    let (eight, forty) = (hour_ago(8), hour_ago(40));
    let at = |hour: Timestamp| Timestamp::from_millis(hour.as_millis() + 30_000).unwrap();
    let (raw_before, minute_before) =
        (late_counter(&app, "raw").await, late_counter(&app, "minute").await);

    app.ingest(
        &device,
        json!([
            {"seq": 1, "ts": at(forty), "metrics": {"x": 4.0}},
            {"seq": 2, "ts": at(eight), "metrics": {"x": 2.0}},
            {"seq": 3, "ts": Timestamp::from_millis(now - 60_000).unwrap(), "metrics": {"x": 1.0}},
        ]),
    )
    .await;
    app.wait_for_seq(&device, &alice, 3).await;
    // At least: the other shape's test counts into the same process-wide counters meanwhile
    // (the exact counts are checked in `retention`'s unit test).
    assert!(late_counter(&app, "raw").await - raw_before >= 2.0);
    assert!(late_counter(&app, "minute").await - minute_before >= 1.0);

    purge_once(app.store.as_ref(), &RetentionConfig::default(), Timestamp::now()).await.unwrap();
    let id = &device.id;
    let query = |hour: Timestamp, rest: &str| {
        let to = Timestamp::from_millis(hour.as_millis() + HOUR).unwrap();
        format!("/api/v1/telemetry/{id}?metric=x&from={hour}&to={to}{rest}")
    };
    let count = |answer: Value| -> f64 {
        answer["points"].as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap_or(0.0)).sum()
    };
    for (hour, raw, minutes, hours) in [(eight, 0.0, 1.0, 1.0), (forty, 0.0, 0.0, 1.0)] {
        let points: Value = app.get(&query(hour, ""), &alice).await.json().await.unwrap();
        assert_eq!(points["points"].as_array().unwrap().len() as f64, raw, "raw {hour}: {points}");
        for (step, expected) in [("1m", minutes), ("1h", hours)] {
            let answer: Value = app
                .get(&query(hour, &format!("&step={step}&agg=count")), &alice)
                .await
                .json()
                .await
                .unwrap();
            assert_eq!(count(answer.clone()), expected, "{step} {hour}: {answer}");
        }
    }
}

#[tokio::test]
async fn late_readings_feed_their_rollups_and_drops_are_counted_embedded() {
    late_readings(Shape::Embedded).await;
}

#[tokio::test]
async fn late_readings_feed_their_rollups_and_drops_are_counted_distributed() {
    late_readings(Shape::Distributed).await;
}
