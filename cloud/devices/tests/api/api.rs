//! The HTTP API, on both shapes.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Shape, error_code, spawn_app};

const SHAPES: [Shape; 2] = [Shape::Embedded, Shape::Distributed];

fn batch(device_id: &str, seqs: &[u64]) -> Vec<u8> {
    let readings: Vec<Value> = seqs
        .iter()
        .map(|s| json!({"seq": s, "ts": "2026-11-26T20:00:00.123Z", "metrics": {"cpu.usage_pct": 12.5}}))
        .collect();
    serde_json::to_vec(&json!({"device_id": device_id, "readings": readings})).unwrap()
}

#[tokio::test]
async fn registry_crud_with_ownership() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let admin = app.user("ada@example.com").await;
        let bob = app.user("bob@example.com").await;
        let carl = app.user("carl@example.com").await;

        let (device, token) = app
            .device(&bob, json!({"name": " Greenhouse ", "kind": "pi4", "tags": ["North"], "location": {"lat": 47.6, "lon": -122.3}, "metadata": {"floor": 1}}))
            .await;
        assert_eq!(device["name"], "Greenhouse", "{shape:?}");
        assert_eq!(device["tags"], json!(["north"]));
        assert_eq!(device["status"], "never_seen");
        assert_eq!(device["config_version"], 0);
        assert!(token.len() >= 40);
        let id = device["id"].as_str().unwrap();
        let path = format!("/api/v1/devices/{id}");

        let listed: Value =
            app.call(Method::GET, "/api/v1/devices", &bob, None).await.json().await.unwrap();
        assert_eq!(listed["items"].as_array().unwrap().len(), 1);
        assert!(listed["items"][0].get("enrollment_token").is_none(), "the token is shown once");
        let all: Value =
            app.call(Method::GET, "/api/v1/devices", &admin, None).await.json().await.unwrap();
        assert_eq!(all["items"].as_array().unwrap().len(), 1, "an admin sees every device");
        let none: Value =
            app.call(Method::GET, "/api/v1/devices", &carl, None).await.json().await.unwrap();
        assert_eq!(none["items"], json!([]));

        for method in [Method::GET, Method::DELETE] {
            assert_eq!(
                error_code(app.call(method, &path, &carl, None).await, StatusCode::FORBIDDEN).await,
                "forbidden"
            );
        }
        let theft = app.call(Method::PATCH, &path, &carl, Some(json!({"name": "mine"}))).await;
        assert_eq!(theft.status(), StatusCode::FORBIDDEN);
        let rotate = app.call(Method::POST, &format!("{path}/credentials"), &carl, None).await;
        assert_eq!(rotate.status(), StatusCode::FORBIDDEN);

        let patched: Value = app
            .call(
                Method::PATCH,
                &path,
                &bob,
                Some(json!({"name": "Greenhouse 2", "location": null, "unknown": 1})),
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            (patched["name"].as_str(), &patched["location"], &patched["kind"]),
            (Some("Greenhouse 2"), &json!(null), &json!("pi4"))
        );
        let read: Value = app.call(Method::GET, &path, &admin, None).await.json().await.unwrap();
        assert_eq!(read, patched);

        let bad = app
            .call(Method::PATCH, &path, &bob, Some(json!({"location": {"lat": 100, "lon": 0}})))
            .await;
        assert_eq!(error_code(bad, StatusCode::UNPROCESSABLE_ENTITY).await, "invalid_field");
        let bad = app.call(Method::POST, "/api/v1/devices", &bob, Some(json!({"name": ""}))).await;
        assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let anonymous = app.client.get(app.url("/api/v1/devices")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            app.call(Method::GET, "/api/v1/devices/not-a-uuid", &bob, None).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let missing = format!("/api/v1/devices/{}", edgewatch_protocol::DeviceId::new());
        assert_eq!(
            error_code(app.call(Method::GET, &missing, &bob, None).await, StatusCode::NOT_FOUND)
                .await,
            "not_found"
        );

        assert_eq!(
            app.call(Method::DELETE, &path, &bob, None).await.status(),
            StatusCode::NO_CONTENT
        );
        assert_eq!(app.call(Method::GET, &path, &bob, None).await.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn search_and_cursor_paging() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let bob = app.user("bob@example.com").await;
        for i in 0..7 {
            let tags = if i % 2 == 0 { json!(["even"]) } else { json!(["odd"]) };
            app.device(&bob, json!({"name": format!("sensor-{i}"), "tags": tags, "kind": "esp32"}))
                .await;
        }
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/devices?limit=3&cursor={c}"),
                None => "/api/v1/devices?limit=3".to_owned(),
            };
            let page: Value = app.call(Method::GET, &path, &bob, None).await.json().await.unwrap();
            names.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d["name"].as_str().unwrap().to_owned()),
            );
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(names, (0..7).map(|i| format!("sensor-{i}")).collect::<Vec<_>>(), "{shape:?}");
        let count = |path: &str| {
            let app = &app;
            let bob = bob.clone();
            let path = path.to_owned();
            async move {
                let page: Value =
                    app.call(Method::GET, &path, &bob, None).await.json().await.unwrap();
                page["items"].as_array().unwrap().len()
            }
        };
        assert_eq!(count("/api/v1/devices?tag=even").await, 4);
        assert_eq!(count("/api/v1/devices?q=SENSOR-3").await, 1);
        assert_eq!(count("/api/v1/devices?q=od").await, 3, "text search covers tags");
        assert_eq!(count("/api/v1/devices?kind=esp32&status=never_seen").await, 7);
        assert_eq!(count("/api/v1/devices?status=online").await, 0);
        for bad in ["limit=0", "limit=501", "cursor=garbage", "status=sleeping", "limit=-1"] {
            let answer = app.call(Method::GET, &format!("/api/v1/devices?{bad}"), &bob, None).await;
            assert_eq!(
                error_code(answer, StatusCode::UNPROCESSABLE_ENTITY).await,
                "invalid_field",
                "{bad}"
            );
        }
    }
}

#[tokio::test]
async fn enrollment_ingest_and_credentials() {
    for shape in SHAPES {
        let mut app = spawn_app(shape).await;
        let bob = app.user("bob@example.com").await;
        let (device, token) = app.device(&bob, json!({"name": "greenhouse"})).await;
        let id = device["id"].as_str().unwrap().to_owned();

        let enrolled: Value = app.enroll(&token).await.json().await.unwrap();
        assert_eq!(enrolled["device_id"], json!(id), "{shape:?}");
        assert_eq!(enrolled["http"]["base_url"], "http://edge.example:8080");
        assert_eq!(enrolled["mqtt"]["port"], 1883);
        let secret = enrolled["device_secret"].as_str().unwrap().to_owned();
        assert_eq!(
            error_code(app.enroll(&token).await, StatusCode::UNAUTHORIZED).await,
            "invalid_enrollment_token"
        );

        let accepted = app.ingest(&id, &secret, &batch(&id, &[1, 2])).await;
        assert_eq!(accepted.status(), StatusCode::ACCEPTED);
        assert_eq!(
            accepted.json::<Value>().await.unwrap(),
            json!({"accepted": 2, "duplicates": 0})
        );
        let delivery = tokio::time::timeout(Duration::from_secs(10), app.telemetry.next())
            .await
            .unwrap()
            .unwrap();
        // The same batch again (its 202 was lost), then one that overlaps it: the readings
        // already received are reported, and handed on all the same.
        for (seqs, duplicates) in [(&[1, 2][..], 2), (&[2, 3][..], 1)] {
            let again = app.ingest(&id, &secret, &batch(&id, seqs)).await;
            assert_eq!(
                again.json::<Value>().await.unwrap(),
                json!({"accepted": seqs.len(), "duplicates": duplicates})
            );
            let repeated = tokio::time::timeout(Duration::from_secs(10), app.telemetry.next())
                .await
                .unwrap()
                .unwrap();
            repeated.ack().await.unwrap();
        }
        assert_eq!(delivery.message.routing_key, format!("telemetry.{id}"));
        assert_eq!(delivery.message.message_id.as_deref(), Some(format!("{id}:1").as_str()));
        assert_eq!(delivery.message.request_id.as_deref(), Some("ingest-test-1"));
        let on_bus = edgewatch_protocol::Batch::from_json(&delivery.message.body).unwrap();
        assert_eq!(on_bus.readings().len(), 2);
        delivery.ack().await.unwrap();
        let seen: Value = app
            .call(Method::GET, &format!("/api/v1/devices/{id}"), &bob, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(seen["status"], "online");
        assert!(seen["last_seen_at"].is_string());

        // Bad input: refused whole, nothing on the bus.
        let other = edgewatch_protocol::DeviceId::new().to_string();
        assert_eq!(
            error_code(app.ingest(&id, &secret, &batch(&other, &[3])).await, StatusCode::FORBIDDEN)
                .await,
            "forbidden"
        );
        assert_eq!(
            error_code(app.ingest(&id, "wrong", &batch(&id, &[3])).await, StatusCode::UNAUTHORIZED)
                .await,
            "invalid_device_credential"
        );
        assert_eq!(
            app.ingest(&other, &secret, &batch(&other, &[3])).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            error_code(app.ingest(&id, &secret, b"{not json").await, StatusCode::BAD_REQUEST).await,
            "malformed_json"
        );
        let invalid = app.ingest(&id, &secret, &batch(&id, &[5, 5])).await;
        let body: Value = invalid.json().await.unwrap();
        assert_eq!(
            body["error"]["fields"]["readings[1].seq"],
            "seq 5 appears more than once in the batch"
        );
        let huge = vec![b' '; edgewatch_protocol::limits::MAX_BATCH_BYTES + 1];
        assert_eq!(app.ingest(&id, &secret, &huge).await.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let quiet = tokio::time::timeout(Duration::from_millis(500), app.telemetry.next()).await;
        assert!(quiet.is_err(), "refused batches must not reach the bus");

        // Rotation: the old secret stops at once; deletion: every secret stops.
        let rotated: Value = app
            .call(Method::POST, &format!("/api/v1/devices/{id}/credentials"), &bob, None)
            .await
            .json()
            .await
            .unwrap();
        let new_secret = rotated["device_secret"].as_str().unwrap();
        assert_eq!(
            app.ingest(&id, &secret, &batch(&id, &[6])).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.ingest(&id, new_secret, &batch(&id, &[6])).await.status(),
            StatusCode::ACCEPTED
        );
        app.call(Method::DELETE, &format!("/api/v1/devices/{id}"), &bob, None).await;
        assert_eq!(
            app.ingest(&id, new_secret, &batch(&id, &[7])).await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The agent sends gzip; the limit holds for the inflated batch, and every refusal is the
/// contract's error body.
#[tokio::test]
async fn gzip_batches_are_inflated_within_the_batch_limit() {
    let mut app = spawn_app(Shape::Embedded).await;
    let bob = app.user("bob@example.com").await;
    let (device, token) = app.device(&bob, json!({"name": "pi"})).await;
    let id = device["id"].as_str().unwrap().to_owned();
    let enrolled: Value = app.enroll(&token).await.json().await.unwrap();
    let secret = enrolled["device_secret"].as_str().unwrap().to_owned();

    let accepted =
        app.ingest_encoded(&id, &secret, Some("gzip"), &gzip(&batch(&id, &[1, 2]))).await;
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    assert_eq!(accepted.json::<Value>().await.unwrap(), json!({"accepted": 2, "duplicates": 0}));
    let delivery =
        tokio::time::timeout(Duration::from_secs(10), app.telemetry.next()).await.unwrap().unwrap();
    let on_bus = edgewatch_protocol::Batch::from_json(&delivery.message.body).unwrap();
    assert_eq!(on_bus.readings().len(), 2);
    delivery.ack().await.unwrap();

    // 8 MiB of spaces compress to a few KiB: refused once inflated past 1 MiB.
    let bomb = gzip(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    let answer = app.ingest_encoded(&id, &secret, Some("gzip"), &bomb).await;
    assert_eq!(error_code(answer, StatusCode::PAYLOAD_TOO_LARGE).await, "payload_too_large");
    let answer = app.ingest_encoded(&id, &secret, Some("gzip"), b"not gzip at all").await;
    assert_eq!(error_code(answer, StatusCode::BAD_REQUEST).await, "malformed_request");
    let answer = app.ingest_encoded(&id, &secret, Some("br"), &batch(&id, &[3])).await;
    assert_eq!(
        error_code(answer, StatusCode::UNSUPPORTED_MEDIA_TYPE).await,
        "unsupported_media_type"
    );
    // A plain body over the limit gets the contract's body too.
    let huge = vec![b' '; edgewatch_protocol::limits::MAX_BATCH_BYTES + 1];
    let answer = app.ingest(&id, &secret, &huge).await;
    assert_eq!(error_code(answer, StatusCode::PAYLOAD_TOO_LARGE).await, "payload_too_large");
    let quiet = tokio::time::timeout(Duration::from_millis(300), app.telemetry.next()).await;
    assert!(quiet.is_err(), "refused batches must not reach the bus");
}

#[tokio::test]
async fn ingest_answers_503_when_the_bus_cannot_take_the_batch() {
    let app = spawn_app(Shape::Distributed).await;
    let bob = app.user("bob@example.com").await;
    let (device, token) = app.device(&bob, json!({"name": "greenhouse"})).await;
    let id = device["id"].as_str().unwrap().to_owned();
    let enrolled: Value = app.enroll(&token).await.json().await.unwrap();
    let secret = enrolled["device_secret"].as_str().unwrap();

    // Take the bus away: delete the service's vhost, which closes its connections.
    let vhost = app.amqp_url.as_deref().unwrap().rsplit('/').next().unwrap().to_owned();
    let admin = edgewatch_common::testkit::services::require("EDGEWATCH_TEST_AMQP_ADMIN_URL");
    let (scheme, rest) = admin.split_once("://").unwrap();
    let (credentials, host) = rest.split_once('@').unwrap();
    let (user, password) = credentials.split_once(':').unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("{scheme}://{host}/api/vhosts/{vhost}"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert!(deleted.status().is_success());

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = app.ingest(&id, secret, &batch(&id, &[1])).await;
        if answer.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert!(answer.headers().contains_key("retry-after"));
            assert_eq!(error_code(answer, StatusCode::SERVICE_UNAVAILABLE).await, "unavailable");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still {} with the bus gone",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
}

/// What a new subscriber to a device's config topic gets first: the broker's retained message.
/// Retries with fresh subscribers until the retained message has `version` (the push travels
/// through the service's MQTT client asynchronously).
async fn retained_config(device_id: &str, version: u64) -> Value {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let url = edgewatch_common::testkit::services::require("EDGEWATCH_TEST_MQTT_URL");
    let (host, port) = url.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for attempt in 0.. {
        let client_id = format!("test-{}-{attempt}", &device_id[..8]);
        let mut options = MqttOptions::new(client_id, host, port.parse().unwrap());
        options.set_keep_alive(Duration::from_secs(10));
        let (client, mut events) = AsyncClient::new(options, 16);
        client
            .subscribe(format!("edgewatch/v1/devices/{device_id}/config"), QoS::AtLeastOnce)
            .await
            .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                if let Event::Incoming(Packet::Publish(publish)) = events.poll().await.unwrap() {
                    return publish;
                }
            }
        })
        .await;
        let _ = client.disconnect().await;
        if let Ok(publish) = first {
            let message: Value = serde_json::from_slice(&publish.payload).unwrap();
            if publish.retain && message["version"].as_u64() == Some(version) {
                return message;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no retained config version {version} for {device_id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

#[tokio::test]
async fn config_is_versioned_pushed_retained_and_served_to_the_device() {
    for shape in SHAPES {
        let app = spawn_app(shape).await;
        let bob = app.user("bob@example.com").await;
        let carl = app.user("carl@example.com").await;
        let (device, token) = app.device(&bob, json!({"name": "greenhouse"})).await;
        let id = device["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v1/devices/{id}/config");
        let empty: Value = app.call(Method::GET, &path, &bob, None).await.json().await.unwrap();
        assert_eq!(
            (empty["version"].as_u64(), &empty["config"]),
            (Some(0), &json!({})),
            "{shape:?}"
        );

        for (version, interval) in [(1, 10), (2, 5)] {
            let put = app
                .call(Method::PUT, &path, &bob, Some(json!({"config": {"interval_s": interval}})))
                .await;
            let view: Value = put.json().await.unwrap();
            assert_eq!(
                (view["version"].as_u64(), &view["config"]),
                (Some(version), &json!({"interval_s": interval}))
            );
            assert!(view["updated_at"].is_string());
        }
        let pushed = retained_config(&id, 2).await;
        assert_eq!(
            pushed,
            json!({"version": 2, "config": {"interval_s": 5}}),
            "a late subscriber gets the newest"
        );

        let enrolled: Value = app.enroll(&token).await.json().await.unwrap();
        let secret = enrolled["device_secret"].as_str().unwrap();
        let current = app
            .client
            .get(app.url(&format!("{path}/current")))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap();
        assert_eq!(
            current.json::<Value>().await.unwrap(),
            json!({"version": 2, "config": {"interval_s": 5}})
        );
        let refused = app
            .client
            .get(app.url(&format!("{path}/current")))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

        assert_eq!(
            app.call(Method::PUT, &path, &carl, Some(json!({"config": {}}))).await.status(),
            StatusCode::FORBIDDEN
        );
        let not_object = app.call(Method::PUT, &path, &bob, Some(json!({"config": [1, 2]}))).await;
        assert_eq!(not_object.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let record: Value = app
            .call(Method::GET, &format!("/api/v1/devices/{id}"), &bob, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(record["config_version"], 2);
    }
}

#[tokio::test]
async fn a_credential_cache_outage_never_lets_an_old_secret_through() {
    let mut redis = edgewatch_common::testkit::services::private_redis().await;
    let url = redis.url();
    let app =
        crate::helpers::spawn_app_with(Shape::Distributed, |config| config.cache_url = url).await;
    let bob = app.user("bob@example.com").await;
    let (device, token) = app.device(&bob, json!({"name": "greenhouse"})).await;
    let id = device["id"].as_str().unwrap().to_owned();
    let enrolled: Value = app.enroll(&token).await.json().await.unwrap();
    let secret = enrolled["device_secret"].as_str().unwrap().to_owned();
    assert_eq!(app.ingest(&id, &secret, &batch(&id, &[1])).await.status(), StatusCode::ACCEPTED);

    redis.stop().await;
    // Ingest keeps working from the database while the cache is down...
    assert_eq!(app.ingest(&id, &secret, &batch(&id, &[2])).await.status(), StatusCode::ACCEPTED);
    assert_eq!(
        app.ingest(&id, "wrong", &batch(&id, &[3])).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // ...but a rotation that cannot evict the cached secret is refused, so the old one stays valid
    // and nothing half-done happens.
    let rotate =
        app.call(Method::POST, &format!("/api/v1/devices/{id}/credentials"), &bob, None).await;
    assert_eq!(error_code(rotate, StatusCode::SERVICE_UNAVAILABLE).await, "unavailable");
    assert_eq!(app.ingest(&id, &secret, &batch(&id, &[4])).await.status(), StatusCode::ACCEPTED);

    redis.restart().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rotated = loop {
        let answer =
            app.call(Method::POST, &format!("/api/v1/devices/{id}/credentials"), &bob, None).await;
        if answer.status() == StatusCode::OK {
            break answer.json::<Value>().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation did not recover: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(
        app.ingest(&id, &secret, &batch(&id, &[5])).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let new_secret = rotated["device_secret"].as_str().unwrap();
    assert_eq!(app.ingest(&id, new_secret, &batch(&id, &[5])).await.status(), StatusCode::ACCEPTED);
}
