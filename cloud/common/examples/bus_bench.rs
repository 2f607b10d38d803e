//! Publish throughput and latency of the bus adapters, side by side, with the message shape of
//! telemetry ingest (a batch of 100 readings x 10 metrics, ~25 KB of JSON) and a consumer that
//! acks everything, so the numbers include the broker's confirm and the queue's turnover.
//!
//! Run (needs the test services for RabbitMQ; the SQLite file goes to the temporary directory,
//! which must be a real disk, not tmpfs, for the sync to cost what it costs):
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-common --features testkit --example bus_bench -- \
//!     [MESSAGES] [CONCURRENCY] [memory,sqlite,sqlite-normal,amqp]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use edgewatch_common::{
    bus::{
        Bus, Message, Topology,
        amqp::AmqpBus,
        memory::MemoryBus,
        sqlite::{Durability, SqliteBus},
    },
    testkit::services,
};
use edgewatch_protocol::{Batch, MONITORING_QUEUE};

fn batch() -> Batch {
    let metrics: String =
        (0..10).map(|m| format!("\"metric.m{m}\": {}.5", m * 11)).collect::<Vec<_>>().join(",");
    let readings: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"{{"seq": {}, "ts": "2026-11-26T20:00:{:02}.000Z", "metrics": {{{metrics}}}}}"#,
                i + 1,
                i % 60
            )
        })
        .collect();
    let json = format!(
        r#"{{"device_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "readings": [{}]}}"#,
        readings.join(",")
    );
    Batch::from_json(json.as_bytes()).expect("valid bench batch")
}

struct Report {
    messages: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn run(bus: Arc<dyn Bus>, messages: usize, concurrency: usize) -> Report {
    let mut sub = bus.subscribe(MONITORING_QUEUE, 500).await.expect("subscribe");
    let consumer = tokio::spawn(async move {
        let mut seen = 0;
        while seen < messages {
            let Some(delivery) = sub.next().await else { break };
            delivery.ack().await.expect("ack");
            seen += 1;
        }
    });
    let message = Message::telemetry(&batch(), None);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (bus, message) = (Arc::clone(&bus), message.clone());
            let share = messages / concurrency + usize::from(w < messages % concurrency);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(share);
                for _ in 0..share {
                    let t = Instant::now();
                    bus.publish(message.clone()).await.expect("publish");
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(messages);
    for worker in workers {
        latencies.extend(worker.await.expect("worker"));
    }
    consumer.await.expect("consumer");
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    Report { messages, elapsed, latencies }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[allow(clippy::print_stdout)]
fn print(name: &str, r: &Report) {
    let rate = r.messages as f64 / r.elapsed.as_secs_f64();
    println!(
        "{name:<22} {:>8} msgs {:>9.0} msgs/s {:>11.0} readings/s   publish p50 {:>7.2} ms  p99 {:>7.2} ms",
        r.messages,
        rate,
        rate * 100.0,
        percentile(&r.latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&r.latencies, 0.99).as_secs_f64() * 1e3,
    );
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let concurrency: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(32);
    let adapters = args.next().unwrap_or_else(|| "memory,sqlite,sqlite-normal,amqp".into());
    println!(
        "bus_bench: {messages} telemetry messages (100 readings x 10 metrics), {concurrency} concurrent publishers"
    );
    for adapter in adapters.split(',') {
        let (name, bus): (&str, Arc<dyn Bus>) = match adapter {
            "memory" => {
                ("in-process (memory)", Arc::new(MemoryBus::new(Topology::standard(), 1_000_000)))
            }
            "sqlite" | "sqlite-normal" => {
                let (name, durability) = if adapter == "sqlite" {
                    ("SQLite, sync FULL", Durability::PowerCut)
                } else {
                    ("SQLite, sync NORMAL", Durability::ProcessCrash)
                };
                let url = services::sqlite_url("bus.db");
                let path = url.trim_start_matches("sqlite://");
                let bus = SqliteBus::open_with(path, Topology::standard(), 1_000_000, durability)
                    .await
                    .expect("open the bus file");
                (name, Arc::new(bus))
            }
            "amqp" => {
                let url = services::amqp_vhost().await;
                let bus = AmqpBus::connect(&url, Topology::standard()).await.expect("connect");
                ("RabbitMQ (confirms)", Arc::new(bus))
            }
            other => panic!("unknown adapter `{other}`: memory, sqlite, sqlite-normal or amqp"),
        };
        print(name, &run(bus, messages, concurrency).await);
    }
}
