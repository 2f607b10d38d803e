//! Local sensors through a real broker (Mosquitto): what sensors publish under `sensors/#` is in
//! the buffer as `sensor.<id>.<metric>`; malformed messages are skipped, not fatal.

use std::time::Duration;

use edgewatch_agent::{
    buffer::{Buffer, BufferOptions},
    collect::sensors::SensorSource,
    run::{self, UplinkKind},
};
use edgewatch_common::testkit::services;
use edgewatch_protocol::{DeviceId, Reading, Timestamp};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_util::sync::CancellationToken;

use super::{
    cloud::{broker, temp_dir},
    e2e::options,
};

fn sensor_readings(dir: &std::path::Path, prefix: &str) -> Vec<Reading> {
    let buffer = Buffer::open(&run::buffer_path(dir), BufferOptions::default()).unwrap();
    let mut out = Vec::new();
    buffer
        .for_each_pending(|r| {
            if r.metrics.keys().any(|k| k.as_str().starts_with(prefix)) {
                out.push(r.clone());
            }
            Ok(())
        })
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensor_messages_become_readings() {
    let dir = temp_dir();
    let sensor = format!("t{}", DeviceId::new().as_uuid().simple());
    let mut run_options = options(&dir, Duration::from_secs(3600));
    run_options.uplink = UplinkKind::None;
    run_options.sensors = Some(SensorSource {
        url: services::require("EDGEWATCH_TEST_MQTT_URL"),
        client_id: format!("agent-{sensor}"),
    });
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run::run(run_options, shutdown.clone()));

    let (host, port) = broker();
    let (client, mut eventloop) =
        AsyncClient::new(MqttOptions::new(format!("sensor-{sensor}"), host, port), 16);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let prefix = format!("sensor.{sensor}.");
    // Probe until the agent's subscription is in place: what is published before it is not
    // delivered to a session that does not exist yet.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let topic = format!("sensors/{sensor}/probe");
        client.publish(topic, QoS::AtLeastOnce, false, b"1".as_slice()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !sensor_readings(&dir, &format!("{prefix}probe")).is_empty() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the agent never subscribed to sensors/#");
    }
    let messages: [(&str, &[u8]); 4] = [
        ("temp_c", b"21.5"),
        ("humidity_pct", br#"{"value": 55.0, "ts": "2026-11-27T00:00:00.000Z"}"#),
        ("temp_c", b"not a number"),
        ("temp_c", b"22.25"),
    ];
    for (metric, payload) in messages {
        let topic = format!("sensors/{sensor}/{metric}");
        client.publish(topic, QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    // QoS 1 is at least once: a message redelivered after a reconnect may be stored twice, so
    // wait for the three expected values (first occurrences in publish order), not a count.
    let expected = vec![
        (format!("{prefix}temp_c"), 21.5),
        (format!("{prefix}humidity_pct"), 55.0),
        (format!("{prefix}temp_c"), 22.25),
    ];
    let seen = || -> (Vec<Reading>, Vec<(String, f64)>) {
        let readings: Vec<Reading> = sensor_readings(&dir, &prefix)
            .into_iter()
            .filter(|r| !r.metrics.keys().any(|k| k.as_str().ends_with(".probe")))
            .collect();
        let mut values: Vec<(String, f64)> = Vec::new();
        for (k, v) in readings.iter().flat_map(|r| r.metrics.iter()) {
            if !values.iter().any(|(name, value)| name == k.as_str() && value == v) {
                values.push((k.as_str().to_owned(), *v));
            }
        }
        (readings, values)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let (readings, values) = loop {
        let (readings, values) = seen();
        if values.len() >= expected.len() {
            break (readings, values);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for three sensor readings; the buffer holds {readings:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    assert_eq!(values, expected, "the malformed message must be skipped: {readings:?}");
    let humidity = readings
        .iter()
        .find(|r| r.metrics.keys().any(|k| k.as_str().ends_with("humidity_pct")))
        .unwrap();
    assert_eq!(humidity.ts, Timestamp::parse("2026-11-27T00:00:00.000Z").unwrap());
    assert_eq!(readings[0].tags.get("source").map(String::as_str), Some("sensor"));
}
