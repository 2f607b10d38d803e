//! HTTP ingest throughput and latency against PostgreSQL + RabbitMQ (the test services):
//! 50 enrolled devices post batches of 100 readings concurrently; every 202 means the batch was
//! confirmed by RabbitMQ. A consumer drains the monitoring queue so the broker does not fill up.
//!
//! Run:
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-devices --example ingest_bench -- [SECONDS] [DEVICES]

use std::time::{Duration, Instant};

use edgewatch_common::{
    bus::{Bus, Topology, amqp::AmqpBus},
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::DevicesConfig;
use edgewatch_protocol::MONITORING_QUEUE;
use edgewatch_signing::SigningConfig;
use serde_json::{Value, json};

const TOKEN: &str = "bench-service-token-0123456789";

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

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let shutdown = Shutdown::new();
    let signing_config = SigningConfig {
        keys_dir: std::env::temp_dir()
            .join(format!("edgewatch-bench-keys-{}", edgewatch_protocol::DeviceId::new())),
        service_token: TOKEN.into(),
        database_url: services::sqlite_url("signing.db"),
        ..SigningConfig::default()
    };
    let signing =
        serve_on_loopback(edgewatch_signing::build(&signing_config).await.unwrap().0, &shutdown)
            .await;
    let amqp = services::amqp_vhost().await;
    let config = DevicesConfig {
        signing_url: signing.clone(),
        service_token: TOKEN.into(),
        database_url: services::postgres_database().await,
        bus_url: amqp.clone(),
        ..DevicesConfig::default()
    };
    let devices =
        serve_on_loopback(edgewatch_devices::build(&config, &shutdown).await.unwrap().0, &shutdown)
            .await;

    // Drain the queue as monitoring would.
    let bus = AmqpBus::connect(&amqp, Topology::standard()).await.unwrap();
    let mut sub = bus.subscribe(MONITORING_QUEUE, 500).await.unwrap();
    tokio::spawn(async move {
        while let Some(delivery) = sub.next().await {
            let _ = delivery.ack().await;
        }
    });

    let http = reqwest::Client::new();
    let user = json!({"email": "bench@example.com", "password": "correct horse battery"});
    http.post(format!("{signing}/api/v1/auth/register")).json(&user).send().await.unwrap();
    let login: Value = http
        .post(format!("{signing}/api/v1/auth/login"))
        .json(&user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap();
    let mut enrolled = Vec::new();
    for i in 0..clients {
        let name = format!("bench-{i}");
        enrolled
            .push(edgewatch_common::testkit::enroll_device(&http, &devices, access, &name).await);
    }

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = enrolled
        .into_iter()
        .map(|(id, secret)| {
            let (http, devices) = (http.clone(), devices.clone());
            tokio::spawn(async move {
                let url = format!("{devices}/api/v1/devices/{id}/telemetry");
                let mut latencies = Vec::new();
                let mut seq = 1;
                while Instant::now() < deadline {
                    let body = batch(&id, seq);
                    let t = Instant::now();
                    let answer = http
                        .post(&url)
                        .bearer_auth(&secret)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(answer.status(), 202, "{}", answer.text().await.unwrap_or_default());
                    latencies.push(t.elapsed());
                    seq += 100;
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies[((latencies.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    };
    let readings = latencies.len() as f64 * 100.0;
    println!(
        "HTTP ingest, {clients} devices, batches of 100 (5 metrics), PostgreSQL + RabbitMQ with confirms, {:.1} s:",
        elapsed.as_secs_f64()
    );
    println!(
        "  {:.0} readings/s ({} batches), latency to 202: p50 {:.1} ms, p99 {:.1} ms",
        readings / elapsed.as_secs_f64(),
        latencies.len(),
        pct(0.5),
        pct(0.99)
    );
    shutdown.cancel();
}
