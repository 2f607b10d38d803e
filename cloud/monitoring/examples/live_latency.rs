//! End-to-end latency from bus publish to Socket.IO client receipt, at a steady rate: the whole
//! distributed stack in-process (signing, devices, monitoring on RabbitMQ + FerretDB), one real
//! `socket.io-client` (tests/live-client) subscribed to one device, and batches of 10 readings
//! published straight to the bus with `ts` = the publish time. The client stamps each receipt;
//! both clocks are this machine's.
//!
//! Run (needs the test services and `npm ci --prefix cloud/monitoring/tests/live-client`):
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-monitoring --example live_latency -- [READINGS_PER_S] [SECONDS]

#[path = "../tests/api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::{path::PathBuf, process::Stdio, time::Duration};

use edgewatch_common::bus::Message;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Timestamp};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
};

const PER_BATCH: u64 = 10;

#[allow(clippy::print_stdout)]
#[tokio::main]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let rate = args.first().copied().unwrap_or(1_000).max(PER_BATCH);
    let seconds = args.get(1).copied().unwrap_or(10).max(1);

    let app = helpers::spawn_app(helpers::Shape::Distributed).await;
    let token = app.user("bench@example.com").await;
    let device = app.device(&token, "bench").await;
    let device_id = DeviceId::parse(&device.id).expect("device id");

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/live-client");
    let mut child = Command::new("node")
        .arg(dir.join("client.mjs"))
        .args([app.monitoring.as_str(), token.as_str()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node and tests/live-client must be installed");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let subscribe = json!({"emit": "subscribe", "data": {"device_id": device.id}}).to_string();
    stdin.write_all(format!("{subscribe}\n").as_bytes()).await.expect("subscribe");

    let collector = tokio::spawn(async move {
        let mut latencies = Vec::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let record: Value = serde_json::from_str(&line).expect("client JSON");
            match record["kind"].as_str() {
                Some("ack") => assert_eq!(record["ack"]["ok"], true, "subscribe: {record}"),
                Some("telemetry") => {
                    let sent = Timestamp::parse(record["data"]["ts"].as_str().expect("ts"))
                        .expect("ts")
                        .as_millis();
                    latencies.push(record["at"].as_i64().expect("at") - sent);
                }
                _ => {}
            }
        }
        latencies
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let batches = rate * seconds / PER_BATCH;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(PER_BATCH as f64 / rate as f64));
    let metric = MetricName::parse("bench.value").expect("name");
    for n in 0..batches {
        tick.tick().await;
        let now = Timestamp::now();
        let readings = (0..PER_BATCH)
            .map(|i| Reading {
                seq: Seq::new(n * PER_BATCH + i + 1).expect("seq"),
                ts: now,
                metrics: [(metric.clone(), i as f64)].into(),
                tags: Default::default(),
            })
            .collect();
        let batch = Batch::new(device_id, readings).expect("batch");
        app.bus.publish(Message::telemetry(&batch, None)).await.expect("publish");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(stdin);
    let mut latencies = collector.await.expect("collector");
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!("| readings/s | readings received | p50 | p99 | max |");
    println!("|---|---|---|---|---|");
    println!(
        "| {rate} | {} of {} | {} ms | {} ms | {} ms |",
        latencies.len(),
        batches * PER_BATCH,
        at(0.5),
        at(0.99),
        latencies.last().copied().unwrap_or_default()
    );
}
