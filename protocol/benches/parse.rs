//! Parsing and encoding speed of the ingest shape: a batch of 100 readings of 10 metrics each,
//! the unit an agent sends and `devices` validates on every request.
//!
//! Run: `cargo bench -p edgewatch-protocol --bench parse`

use std::{collections::BTreeMap, hint::black_box};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Tags, Timestamp};

fn ingest_batch() -> Batch {
    let names: Vec<MetricName> = [
        "cpu.usage_pct",
        "load.1m",
        "load.5m",
        "mem.used_bytes",
        "mem.available_bytes",
        "swap.used_bytes",
        "net.eth0.rx_bytes",
        "net.eth0.tx_bytes",
        "temp.cpu_thermal_c",
        "uptime_s",
    ]
    .iter()
    .map(|n| MetricName::parse(*n).unwrap())
    .collect();
    let readings = (0..100u64)
        .map(|i| Reading {
            seq: Seq::new(1_000 + i).unwrap(),
            ts: Timestamp::from_millis(1_795_651_200_000 + i as i64 * 1_000).unwrap(),
            metrics: names
                .iter()
                .enumerate()
                .map(|(j, n)| (n.clone(), (i * 7 + j as u64) as f64 * 1.37))
                .collect::<BTreeMap<_, _>>(),
            tags: Tags::new(),
        })
        .collect();
    Batch::new(DeviceId::new(), readings).unwrap()
}

fn bench(c: &mut Criterion) {
    let batch = ingest_batch();
    let json = serde_json::to_vec(&batch).unwrap();
    let mut group = c.benchmark_group("batch_100x10");
    group.throughput(Throughput::Elements(100));
    group.bench_function("from_json", |b| b.iter(|| Batch::from_json(black_box(&json)).unwrap()));
    group.bench_function("to_json", |b| b.iter(|| serde_json::to_vec(black_box(&batch)).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
