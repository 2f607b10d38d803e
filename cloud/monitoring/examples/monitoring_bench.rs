//! The monitoring issue's benchmarks, each side by side in one run:
//!
//! - `consume [MESSAGES] [all|sqlite|ferretdb]`: the sustained consume-and-store rate from
//!   RabbitMQ (messages of 100 readings x 10 metrics, 50 devices, published beforehand) into
//!   SQLite and into FerretDB, and FerretDB's own raw `insert_many` rate for the same reading
//!   documents (the ceiling).
//! - `query [READINGS] [FERRETDB_READINGS] [WRITERS]`: the time of a 30-day, 1-hour-step chart
//!   of one metric once READINGS readings x 10 metrics (default 1,000,000 = 10 million points)
//!   are stored, per store; FerretDB is seeded with FERRETDB_READINGS (default READINGS, 0 to
//!   skip it) from WRITERS concurrent writers (default 1).
//!
//! Run (needs the test services):
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-monitoring --example monitoring_bench -- consume 2000
//!   cargo run --release -p edgewatch-monitoring --example monitoring_bench -- query 1000000 100000

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use edgewatch_common::{
    bus::{Bus, Message, Topology, amqp::AmqpBus},
    shutdown::Shutdown,
    telemetry_store::{
        self, Agg, Bucket, LatestReading, MetricSpan, Point, Purge, StoreError, TelemetryStore,
        Tier, TimeRange, WriteOutcome, aggregate,
    },
    testkit::services,
};
use edgewatch_monitoring::consumer::Consumer;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Timestamp};
use futures_util::future::join_all;
use mongodb::bson::doc;

const DEVICES: usize = 50;
const PER_BATCH: usize = 100;
const METRICS: usize = 10;
/// 2026-10-27T00:00:00Z: 30 days before the date.
const START_MS: i64 = 1_793_059_200_000;

fn reading(seq: u64, ts_ms: i64) -> Reading {
    Reading {
        seq: Seq::new(seq).expect("small seq"),
        ts: Timestamp::from_millis(ts_ms).expect("in range"),
        metrics: (0..METRICS)
            .map(|m| {
                let value = 20.0 + (seq as f64 / 50.0 + m as f64).sin() * 5.0;
                (MetricName::parse(format!("sensor.m{m}")).expect("valid"), value)
            })
            .collect(),
        tags: Default::default(),
    }
}

/// Message `n` of the run: the next 100 readings of device `n % DEVICES`, a second apart.
fn batch(devices: &[DeviceId], n: usize, spacing_ms: i64) -> Batch {
    let device = devices[n % DEVICES];
    let first = (n / DEVICES * PER_BATCH) as u64 + 1;
    let readings = (0..PER_BATCH as u64)
        .map(|i| reading(first + i, START_MS + (first + i) as i64 * spacing_ms))
        .collect();
    Batch::new(device, readings).expect("valid batch")
}

/// Counts what the consumer stores, so the run knows when it is done.
struct Counting {
    inner: Arc<dyn TelemetryStore>,
    stored: AtomicUsize,
}

#[async_trait]
impl TelemetryStore for Counting {
    async fn write(&self, batches: &[Batch]) -> Result<WriteOutcome, StoreError> {
        let outcome = self.inner.write(batches).await?;
        self.stored.fetch_add(outcome.accepted + outcome.duplicates, Ordering::Relaxed);
        Ok(outcome)
    }
    async fn latest(&self, device: DeviceId) -> Result<Option<LatestReading>, StoreError> {
        self.inner.latest(device).await
    }
    async fn metrics(&self, device: DeviceId) -> Result<Vec<MetricSpan>, StoreError> {
        self.inner.metrics(device).await
    }
    async fn raw(
        &self,
        device: DeviceId,
        metric: &MetricName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        self.inner.raw(device, metric, range, limit).await
    }
    async fn rollups(
        &self,
        device: DeviceId,
        metric: &MetricName,
        tier: Tier,
        range: TimeRange,
    ) -> Result<Vec<Bucket>, StoreError> {
        self.inner.rollups(device, metric, tier, range).await
    }
    async fn purge(&self, what: Purge, before: Timestamp) -> Result<u64, StoreError> {
        self.inner.purge(what, before).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

/// Publishes `messages` batches to a fresh vhost, then times the consumer draining them into
/// the store at `store_url`. Returns readings/s.
#[allow(clippy::print_stdout)]
async fn consume(label: &str, store_url: &str, messages: usize, prefetch: u16) -> f64 {
    let devices: Vec<DeviceId> = (0..DEVICES).map(|_| DeviceId::new()).collect();
    let url = services::amqp_vhost().await;
    let bus: Arc<dyn Bus> =
        Arc::new(AmqpBus::connect(&url, Topology::standard()).await.expect("RabbitMQ"));
    let all: Vec<usize> = (0..messages).collect();
    for chunk in all.chunks(64) {
        join_all(chunk.iter().map(|&n| {
            let bus = Arc::clone(&bus);
            let message = Message::telemetry(&batch(&devices, n, 1_000), None);
            async move { bus.publish(message).await.expect("publish") }
        }))
        .await;
    }
    let store = Arc::new(Counting {
        inner: telemetry_store::connect(store_url).await.expect("store"),
        stored: AtomicUsize::new(0),
    });
    let shutdown = Shutdown::new();
    let consumer = Consumer {
        bus,
        store: Arc::clone(&store) as Arc<dyn TelemetryStore>,
        live: None,
        prefetch,
        linger: Duration::from_millis(20),
        healthy: Arc::new(AtomicBool::new(true)),
        retention: edgewatch_monitoring::config::RetentionConfig::default(),
    };
    let target = messages * PER_BATCH;
    let started = Instant::now();
    let task = tokio::spawn(consumer.run(shutdown.clone()));
    while store.stored.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    shutdown.cancel();
    task.await.expect("consumer");
    let rate = target as f64 / elapsed.as_secs_f64();
    println!(
        "| {label} | {messages} | {target} | {:.1} s | {rate:.0} | {:.0} |",
        elapsed.as_secs_f64(),
        rate * METRICS as f64
    );
    rate
}

/// FerretDB's own rate for the reading documents the store writes, inserted unordered in chunks
/// of `chunk` documents (what one consumer gathering writes), 50 devices. Returns readings/s.
#[allow(clippy::print_stdout)]
async fn ferretdb_ceiling(messages: usize, chunk: usize) -> f64 {
    let url = services::mongodb_database();
    let db = mongodb::Client::with_uri_str(&url)
        .await
        .expect("FerretDB")
        .default_database()
        .expect("database in URL");
    let readings = db.collection::<mongodb::bson::Document>("readings");
    readings
        .create_index(mongodb::IndexModel::builder().keys(doc! {"d": 1, "t": 1}).build())
        .await
        .expect("index");
    let devices: Vec<DeviceId> = (0..DEVICES).map(|_| DeviceId::new()).collect();
    let mut docs = Vec::with_capacity(messages * PER_BATCH);
    for n in 0..messages {
        let batch = batch(&devices, n, 1_000);
        let device = batch.device_id().to_string();
        for reading in batch.readings() {
            let metrics: Vec<_> =
                reading.metrics.iter().map(|(k, v)| doc! {"k": k.as_str(), "v": *v}).collect();
            docs.push(doc! {
                "_id": format!("{device}:{}", reading.seq.get()),
                "d": device.as_str(),
                "q": reading.seq.get() as i64,
                "t": reading.ts.as_millis(),
                "m": metrics,
            });
        }
    }
    let total = docs.len();
    let started = Instant::now();
    for part in docs.chunks(chunk) {
        readings.insert_many(part.to_vec()).ordered(false).await.expect("insert_many");
    }
    let elapsed = started.elapsed();
    let rate = total as f64 / elapsed.as_secs_f64();
    println!(
        "| FerretDB raw `insert_many` (ceiling, no rollups) | {messages} | {total} | {:.1} s | {rate:.0} | {:.0} |",
        elapsed.as_secs_f64(),
        rate * METRICS as f64
    );
    rate
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Seeds one device with `readings` readings spread over 30 days, from `writers` concurrent
/// writers (each its own contiguous slice of time, so they touch different rollup documents),
/// then times the chart query.
#[allow(clippy::print_stdout)]
async fn query(label: &str, store_url: &str, readings: usize, writers: usize) {
    let store = telemetry_store::connect(store_url).await.expect("store");
    let device = DeviceId::new();
    let spacing_ms = 30 * 86_400_000 / readings.max(1) as i64;
    let seeding = Instant::now();
    let written = Arc::new(AtomicUsize::new(0));
    let slice = readings.div_ceil(writers.max(1));
    let seeders = (0..writers.max(1)).map(|w| {
        let (store, written) = (Arc::clone(&store), Arc::clone(&written));
        let (from, to) = (w * slice, ((w + 1) * slice).min(readings));
        async move {
            let mut next = from;
            while next < to {
                let batches: Vec<Batch> = (0..10)
                    .map(|b| next + b * PER_BATCH)
                    .filter(|first| *first < to)
                    .map(|first| {
                        let items = (first..(first + PER_BATCH).min(to))
                            .map(|i| reading(i as u64 + 1, START_MS + i as i64 * spacing_ms))
                            .collect();
                        Batch::new(device, items).expect("valid")
                    })
                    .collect();
                let count = batches.iter().map(|b| b.readings().len()).sum::<usize>();
                next += count;
                store.write(&batches).await.expect("seed");
                let total = written.fetch_add(count, Ordering::Relaxed) + count;
                if total % 100_000 < count {
                    eprintln!(
                        "  {label}: {total}/{readings} readings stored ({:.0?})",
                        seeding.elapsed()
                    );
                }
            }
        }
    });
    join_all(seeders).await;
    let seeded = seeding.elapsed();
    let metric = MetricName::parse("sensor.m3").expect("valid");
    let range = TimeRange::new(
        Timestamp::from_millis(START_MS).expect("ts"),
        Timestamp::from_millis(START_MS + 30 * 86_400_000).expect("ts"),
    )
    .expect("range");
    let mut times = Vec::new();
    let mut points = 0;
    for _ in 0..50 {
        let started = Instant::now();
        points = aggregate(store.as_ref(), device, &metric, range, 3_600_000, Agg::Avg)
            .await
            .expect("query")
            .len();
        times.push(started.elapsed());
    }
    times.sort();
    let counted: f64 = aggregate(store.as_ref(), device, &metric, range, 3_600_000, Agg::Count)
        .await
        .expect("count")
        .iter()
        .map(|p| p.value)
        .sum();
    assert_eq!(counted as usize, readings, "the hourly rollups count every stored reading");
    println!(
        "| {label} | {} | {points} | {:.2} ms | {:.2} ms | {:.0} s |",
        readings * METRICS,
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        seeded.as_secs_f64()
    );
}

#[allow(clippy::print_stdout)]
#[tokio::main]
async fn main() {
    edgewatch_common::observability::init_tracing(&edgewatch_common::config::LogConfig {
        filter: "warn".into(),
        ..Default::default()
    });
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |default: usize| args.get(1).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("consume") => {
            let messages = count(2_000);
            let only = args.get(2).map(String::as_str).unwrap_or("all");
            if !["all", "sqlite", "ferretdb"].contains(&only) {
                eprintln!("consume: the third argument is one of all, sqlite, ferretdb");
                std::process::exit(2);
            }
            println!("| path | messages | readings | time | readings/s | points/s |");
            println!("|---|---|---|---|---|---|");
            if only != "sqlite" {
                let ceiling = ferretdb_ceiling(messages, 64 * PER_BATCH).await;
                let ferret = consume(
                    "RabbitMQ -> FerretDB (rollups)",
                    &services::mongodb_database(),
                    messages,
                    64,
                )
                .await;
                println!("\nFerretDB store / ceiling: {:.0} %\n", ferret / ceiling * 100.0);
            }
            if only != "ferretdb" {
                consume(
                    "RabbitMQ -> SQLite (rollups)",
                    &services::sqlite_url("bench.db"),
                    messages,
                    64,
                )
                .await;
            }
        }
        Some("query") => {
            let readings = count(1_000_000);
            println!("| store | points stored | buckets answered | p50 | p99 | seeding |");
            println!("|---|---|---|---|---|---|");
            // A third argument may seed FerretDB with fewer readings (0: SQLite only) when the
            // full count would take too long (the chart reads the same 30 day documents either
            // way); a fourth sets its concurrent writers (default 1).
            let ferret = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(readings);
            query("SQLite", &services::sqlite_url("query.db"), readings, 1).await;
            let writers = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
            if ferret > 0 {
                query("FerretDB", &services::mongodb_database(), ferret, writers).await;
            }
        }
        _ => eprintln!(
            "usage: monitoring_bench consume [MESSAGES] [all|sqlite|ferretdb] \
             | query [READINGS] [FERRETDB_READINGS] [WRITERS]"
        ),
    }
}
