//! Buffer append and drain throughput (docs/benchmarks.md, "Edge agent").
//!
//! `cargo run --release -p edgewatch-agent --example agent_bench -- [READINGS] [METRICS] [PER_APPEND]`
//!
//! - append: READINGS readings of METRICS metrics into a fresh buffer, PER_APPEND readings per
//!   transaction (each transaction one fsync, `synchronous=FULL`), and the same one reading per
//!   transaction (the worst case: a sensor reading at a time);
//! - drain: the buffer emptied through the HTTP uplink into the devices service in this process
//!   (SQLite registry, in-memory bus with a consumer acking everything), rate limit off.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use edgewatch_agent::{
    buffer::{Buffer, BufferOptions, NewReading, SharedBuffer},
    config::RuntimeConfig,
    enroll,
    uplink::{self, http::HttpUplink},
};
use edgewatch_common::{
    auth::{Principal, Role},
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::{DevicesConfig, domain::DeviceInput};
use edgewatch_protocol::{DeviceId, MONITORING_QUEUE, MetricName, Timestamp, UserId};
use tokio::sync::{Notify, watch};

fn readings(count: usize, metrics: usize) -> Vec<NewReading> {
    let names: Vec<MetricName> =
        (0..metrics).map(|m| MetricName::parse(format!("bench.metric_{m}")).unwrap()).collect();
    (0..count)
        .map(|i| NewReading {
            ts: Timestamp::now(),
            metrics: names.iter().map(|n| (n.clone(), i as f64 * 0.5)).collect::<BTreeMap<_, _>>(),
            tags: Default::default(),
        })
        .collect()
}

fn temp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("edgewatch-agent-bench-{}", DeviceId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[allow(clippy::print_stdout)]
fn report(what: &str, count: usize, elapsed: Duration) {
    println!(
        "{what}: {count} readings in {:.3} s = {:.0} readings/s",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let count = args.first().copied().unwrap_or(200_000);
    let metrics = args.get(1).copied().unwrap_or(10);
    let per_append = args.get(2).copied().unwrap_or(1_000);

    // Append, batched.
    let path = temp("buffer.db");
    let mut buffer = Buffer::open(&path, BufferOptions::default()).unwrap();
    let input = readings(count, metrics);
    let started = Instant::now();
    let mut input = input.into_iter();
    loop {
        let chunk: Vec<_> = input.by_ref().take(per_append).collect();
        if chunk.is_empty() {
            break;
        }
        buffer.append(chunk).unwrap();
    }
    report(
        &format!("append ({metrics} metrics, {per_append} per transaction)"),
        count,
        started.elapsed(),
    );

    // Append, one reading per transaction.
    let single = 2_000.min(count);
    let mut other = Buffer::open(&temp("single.db"), BufferOptions::default()).unwrap();
    let started = Instant::now();
    for reading in readings(single, metrics) {
        other.append(vec![reading]).unwrap();
    }
    report(&format!("append ({metrics} metrics, 1 per transaction)"), single, started.elapsed());

    // Drain through HTTP into the devices service.
    let shutdown = Shutdown::new();
    let config = DevicesConfig {
        database_url: services::sqlite_url("devices.db"),
        bus_url: "memory://".into(),
        service_token: "agent-bench-service-token".into(),
        signing_url: "http://127.0.0.1:9".into(),
        ..DevicesConfig::default()
    };
    let (router, core) = edgewatch_devices::build(&config, &shutdown).await.unwrap();
    let mut subscription = core.bus().subscribe(MONITORING_QUEUE, 200).await.unwrap();
    tokio::spawn(async move {
        while let Some(delivery) = subscription.next().await {
            delivery.ack().await.unwrap();
        }
    });
    let url = serve_on_loopback(router, &shutdown).await;
    let admin = Principal { user_id: UserId::new(), role: Role::Admin, session_id: "bench".into() };
    let input = DeviceInput {
        name: "bench".into(),
        kind: None,
        tags: vec![],
        location: None,
        metadata: Default::default(),
    };
    let (_, token) = core.create(&admin, input).await.unwrap();
    let credentials =
        enroll::enroll(&reqwest::Client::new(), &url, &token, &temp("credentials.json"))
            .await
            .unwrap();
    let device = credentials.device_id;
    let uplink = Arc::new(HttpUplink::new(&url, device, &credentials.device_secret).unwrap());
    let shared = SharedBuffer::new(buffer);
    let batch = if metrics > 20 { 500 } else { 1_000 };
    let (_tx, config) = watch::channel(RuntimeConfig {
        drain_rate: u32::MAX,
        batch_max_readings: batch,
        ..RuntimeConfig::default()
    });
    let stop = Shutdown::new();
    let started = Instant::now();
    let drain = tokio::spawn(uplink::drain(
        shared.clone(),
        uplink,
        device,
        config,
        Arc::new(Notify::new()),
        stop.clone(),
    ));
    loop {
        let (pending, _) = shared.with(|b| Ok(b.depth())).await.unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    drain.await.unwrap();
    let uploaded = shared.with(|b| b.stats()).await.unwrap().uploaded_readings;
    assert_eq!(uploaded as usize, count, "every reading acknowledged");
    report(&format!("drain over HTTP ({metrics} metrics, {batch} per batch)"), count, elapsed);
    shutdown.cancel();
}
