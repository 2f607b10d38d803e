//! MQTT bridge throughput and latency against Mosquitto + PostgreSQL + RabbitMQ (the test
//! services): DEVICES device clients (rumqttc) each publish a batch of 100 readings (QoS 1) on
//! their telemetry topic, wait until it is on the bus, and publish the next, for SECONDS. The
//! bridge acks each message to the broker only after RabbitMQ confirmed it. A consumer of the
//! monitoring queue measures publish -> bus latency and counts distinct batches.
//!
//! Closed loop on purpose: Mosquitto queues at most 1,000 messages per session by default and
//! drops the rest, so an open-loop flood would measure the broker's policy, not the bridge.
//!
//! Run:
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-devices --example mqtt_bench -- [SECONDS] [DEVICES]

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use edgewatch_common::{
    auth::{Principal, Role},
    bus::{Bus, amqp::AmqpBus},
    shutdown::Shutdown,
    testkit::services,
};
use edgewatch_devices::{DevicesConfig, domain::DeviceInput};
use edgewatch_protocol::{MONITORING_QUEUE, UserId};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn batch(device_id: &str, first_seq: u64) -> Vec<u8> {
    let readings: Vec<Value> = (0..100)
        .map(|i| {
            json!({"seq": first_seq + i, "ts": "2026-11-26T20:00:00.123Z",
                   "metrics": {"cpu.usage_pct": 12.5, "mem.used_bytes": 734003200, "load.1m": 0.42,
                               "temp.cpu_thermal_c": 51.3, "net.eth0.rx_bytes": 123456789}})
        })
        .collect();
    serde_json::to_vec(&json!({"device_id": device_id, "readings": readings})).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let shutdown = Shutdown::new();
    let amqp = services::amqp_vhost().await;
    let mqtt_url = services::require("EDGEWATCH_TEST_MQTT_URL");
    let config = DevicesConfig {
        // Not called: the bench drives the service core, not its HTTP API.
        signing_url: "http://127.0.0.1:9".into(),
        service_token: "bench-service-token".into(),
        database_url: services::postgres_database().await,
        bus_url: amqp.clone(),
        mqtt_url: Some(mqtt_url.clone()),
        mqtt_share_group: format!("bench-{}", edgewatch_protocol::DeviceId::new()),
        mqtt_client_id: Some(format!("bench-bridge-{}", edgewatch_protocol::DeviceId::new())),
        ..DevicesConfig::default()
    };
    let (_, core) = edgewatch_devices::build(&config, &shutdown).await.unwrap();
    let owner = Principal { user_id: UserId::new(), role: Role::User, session_id: "bench".into() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !core.mqtt_subscribed() {
        assert!(Instant::now() < deadline, "the bridge did not subscribe");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut devices = Vec::new();
    let mut arrived_tx = HashMap::new();
    for i in 0..clients {
        let input = DeviceInput {
            name: format!("bench {i}"),
            kind: None,
            tags: vec![],
            location: None,
            metadata: serde_json::Map::new(),
        };
        let (record, token) = core.create(&owner, input).await.unwrap();
        let enrolled = core.enroll(&token).await.unwrap();
        let (tx, rx) = mpsc::unbounded_channel::<Instant>();
        arrived_tx.insert(record.id.to_string(), tx);
        devices.push((record.id.to_string(), enrolled.device_secret, rx));
    }
    let arrived_tx = Arc::new(arrived_tx);

    // The consumer: as monitoring would, plus arrival times for the senders.
    let bus = AmqpBus::connect(&amqp, edgewatch_common::bus::Topology::standard()).await.unwrap();
    let mut sub = bus.subscribe(MONITORING_QUEUE, 500).await.unwrap();
    let distinct = Arc::new(std::sync::Mutex::new(HashSet::new()));
    {
        let (arrived_tx, distinct) = (Arc::clone(&arrived_tx), Arc::clone(&distinct));
        tokio::spawn(async move {
            while let Some(delivery) = sub.next().await {
                let at = Instant::now();
                let key = delivery.message.routing_key.clone();
                let id = key.trim_start_matches("telemetry.");
                distinct.lock().unwrap().insert(delivery.message.message_id.clone());
                if let Some(tx) = arrived_tx.get(id) {
                    let _ = tx.send(at);
                }
                let _ = delivery.ack().await;
            }
        });
    }

    let (host, port) = mqtt_url.trim_start_matches("mqtt://").rsplit_once(':').unwrap();
    let port: u16 = port.parse().unwrap();
    let started = Instant::now();
    let stop_at = started + Duration::from_secs(seconds);
    let mut senders = Vec::new();
    for (id, secret, mut arrived) in devices {
        let host = host.to_owned();
        senders.push(tokio::spawn(async move {
            let mut options = MqttOptions::new(id.clone(), host, port);
            options.set_credentials(id.clone(), secret).set_max_packet_size(1 << 21, 1 << 21);
            let (client, mut events) = AsyncClient::new(options, 16);
            tokio::spawn(async move { while events.poll().await.is_ok() {} });
            let topic = format!("edgewatch/v1/devices/{id}/telemetry");
            let mut latencies = Vec::new();
            let mut seq = 1u64;
            while Instant::now() < stop_at {
                let sent = Instant::now();
                client
                    .publish(topic.clone(), QoS::AtLeastOnce, false, batch(&id, seq))
                    .await
                    .unwrap();
                match tokio::time::timeout(Duration::from_secs(30), arrived.recv()).await {
                    Ok(Some(at)) => latencies.push(at - sent),
                    _ => panic!("batch {seq} of {id} never reached the bus"),
                }
                seq += 100;
            }
            let _ = client.disconnect().await;
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for sender in senders {
        latencies.extend(sender.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let batches = latencies.len();
    let unique = distinct.lock().unwrap().len();
    println!(
        "{clients} MQTT devices, {seconds} s: {batches} batches ({unique} distinct on the bus), {:.0} readings/s; \
         publish -> bus p50 {:.1} ms, p99 {:.1} ms",
        batches as f64 * 100.0 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    shutdown.cancel();
}
