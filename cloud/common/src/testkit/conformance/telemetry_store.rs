//! The telemetry-store conformance suite: exactly-once writes, latest, catalogue, raw ranges,
//! bucketed queries that agree with the raw points on random data, retention.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Tags, Timestamp};
use rand::{RngExt, SeedableRng, rngs::StdRng};

use crate::telemetry_store::{
    Agg, HOUR_MS, MINUTE_MS, Point, Purge, TelemetryStore, Tier, TimeRange, WriteOutcome, aggregate,
};

use super::case;

/// 2026-11-26T00:00:00Z
const T0: i64 = 1_795_651_200_000;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).expect("test time in range")
}

fn name(s: &str) -> MetricName {
    MetricName::parse(s).expect("valid test name")
}

fn reading(seq: u64, at_ms: i64, metrics: &[(&str, f64)]) -> Reading {
    Reading {
        seq: Seq::new(seq).expect("small seq"),
        ts: ts(at_ms),
        metrics: metrics.iter().map(|(n, v)| (name(n), *v)).collect(),
        tags: Tags::new(),
    }
}

fn batch(device: DeviceId, readings: Vec<Reading>) -> Batch {
    Batch::new(device, readings).expect("valid test batch")
}

fn all_time() -> TimeRange {
    TimeRange::new(ts(0), ts(T0 * 2)).expect("range")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Runs every case; `make` returns a fresh, empty store.
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn TelemetryStore>>,
{
    let suite = "telemetry store";
    case(suite, "a write is readable as latest, catalogue and raw points", async {
        let store = make().await;
        let device = DeviceId::new();
        let outcome = store
            .write(&[batch(
                device,
                vec![
                    reading(1, T0, &[("cpu.usage_pct", 10.0), ("mem.used_bytes", 1e9)]),
                    reading(2, T0 + 1_000, &[("cpu.usage_pct", 20.0)]),
                ],
            )])
            .await
            .expect("write");
        assert_eq!(outcome, WriteOutcome { accepted: 2, duplicates: 0 });
        let latest = store.latest(device).await.expect("latest").expect("some latest");
        assert_eq!((latest.seq.get(), latest.ts), (2, ts(T0 + 1_000)));
        assert_eq!(latest.metrics, BTreeMap::from([(name("cpu.usage_pct"), 20.0)]));
        let catalogue = store.metrics(device).await.expect("metrics");
        assert_eq!(catalogue.len(), 2);
        assert_eq!(catalogue[0].name, name("cpu.usage_pct"));
        assert_eq!((catalogue[0].first_ts, catalogue[0].last_ts), (ts(T0), ts(T0 + 1_000)));
        assert_eq!(catalogue[1].name, name("mem.used_bytes"));
        let points = store.raw(device, &name("cpu.usage_pct"), all_time(), 100).await.expect("raw");
        assert_eq!(
            points,
            vec![Point { ts: ts(T0), value: 10.0 }, Point { ts: ts(T0 + 1_000), value: 20.0 }]
        );
        let mem = store.raw(device, &name("mem.used_bytes"), all_time(), 100).await.expect("raw");
        assert_eq!(mem, vec![Point { ts: ts(T0), value: 1e9 }], "one metric out of a reading");
        assert!(
            store.raw(device, &name("cpu"), all_time(), 100).await.expect("raw").is_empty(),
            "a name that is a prefix of a stored one matches nothing"
        );
        assert!(store.latest(DeviceId::new()).await.expect("latest").is_none());
        assert!(store.metrics(DeviceId::new()).await.expect("metrics").is_empty());
        store.ping().await.expect("ping");
    })
    .await;

    case(suite, "redelivered and overlapping batches are stored exactly once", async {
        let store = make().await;
        let device = DeviceId::new();
        let first: Vec<_> =
            (1..=10).map(|s| reading(s, T0 + s as i64 * 1_000, &[("x", s as f64)])).collect();
        let overlap: Vec<_> =
            (6..=15).map(|s| reading(s, T0 + s as i64 * 1_000, &[("x", s as f64)])).collect();
        assert_eq!(store.write(&[batch(device, first.clone())]).await.unwrap().accepted, 10);
        assert_eq!(
            store.write(&[batch(device, first)]).await.unwrap(),
            WriteOutcome { accepted: 0, duplicates: 10 }
        );
        assert_eq!(
            store.write(&[batch(device, overlap)]).await.unwrap(),
            WriteOutcome { accepted: 5, duplicates: 5 }
        );
        let points = store.raw(device, &name("x"), all_time(), 1_000).await.unwrap();
        assert_eq!(points.len(), 15);
        let buckets = store.rollups(device, &name("x"), Tier::Hour, all_time()).await.unwrap();
        assert_eq!(buckets.len(), 1);
        assert_eq!(buckets[0].count, 15);
        assert!(close(buckets[0].sum, (1..=15).sum::<i32>() as f64));
        assert_eq!((buckets[0].min, buckets[0].max), (1.0, 15.0));
    })
    .await;

    case(suite, "several batches in one write, duplicates across them counted", async {
        let store = make().await;
        let (a, b) = (DeviceId::new(), DeviceId::new());
        let outcome = store
            .write(&[
                batch(a, vec![reading(1, T0, &[("x", 1.0)])]),
                batch(b, vec![reading(1, T0, &[("x", 2.0)])]),
                batch(a, vec![reading(1, T0, &[("x", 1.0)]), reading(2, T0 + 1, &[("x", 3.0)])]),
            ])
            .await
            .unwrap();
        assert_eq!(outcome, WriteOutcome { accepted: 3, duplicates: 1 });
        let b_points = store.raw(b, &name("x"), all_time(), 10).await.unwrap();
        assert_eq!(b_points, vec![Point { ts: ts(T0), value: 2.0 }], "devices are kept apart");
        let a_hour = store.rollups(a, &name("x"), Tier::Hour, all_time()).await.unwrap();
        assert_eq!(a_hour.len(), 1);
        assert_eq!((a_hour[0].count, a_hour[0].sum), (2, 4.0), "the repeated key counted once");
    })
    .await;

    case(suite, "latest is the highest seq even when it arrives first", async {
        let store = make().await;
        let device = DeviceId::new();
        store
            .write(&[batch(device, vec![reading(10, T0 + 10_000, &[("x", 10.0)])])])
            .await
            .unwrap();
        store.write(&[batch(device, vec![reading(5, T0 + 5_000, &[("x", 5.0)])])]).await.unwrap();
        let latest = store.latest(device).await.unwrap().unwrap();
        assert_eq!(latest.seq.get(), 10);
        let catalogue = store.metrics(device).await.unwrap();
        assert_eq!(
            (catalogue[0].first_ts, catalogue[0].last_ts),
            (ts(T0 + 5_000), ts(T0 + 10_000))
        );
    })
    .await;

    case(suite, "raw ranges are half-open, ordered and limited", async {
        let store = make().await;
        let device = DeviceId::new();
        let readings: Vec<_> = (0..10)
            .rev()
            .map(|i| reading(i + 1, T0 + i as i64 * 1_000, &[("x", i as f64)]))
            .collect();
        store.write(&[batch(device, readings)]).await.unwrap();
        let range = TimeRange::new(ts(T0 + 2_000), ts(T0 + 5_000)).unwrap();
        let points = store.raw(device, &name("x"), range, 100).await.unwrap();
        assert_eq!(points.iter().map(|p| p.value).collect::<Vec<_>>(), vec![2.0, 3.0, 4.0]);
        let limited = store.raw(device, &name("x"), all_time(), 4).await.unwrap();
        assert_eq!(limited.iter().map(|p| p.value).collect::<Vec<_>>(), vec![0.0, 1.0, 2.0, 3.0]);
        assert!(store.raw(device, &name("y"), all_time(), 4).await.unwrap().is_empty());
    })
    .await;

    case(suite, "bucketed queries agree with aggregating the raw points (random data)", async {
        for seed in 0..4u64 {
            let store = make().await;
            let device = DeviceId::new();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut points = Vec::new();
            let mut readings = Vec::new();
            for seq in 1..=600u64 {
                let at = T0 + rng.random_range(0..(3 * HOUR_MS));
                let value: f64 = rng.random_range(-50.0..50.0);
                points.push((at, value));
                readings.push(reading(seq, at, &[("m", value)]));
            }
            // Several writes, as the consumer does them.
            for chunk in readings.chunks(97) {
                store.write(&[batch(device, chunk.to_vec())]).await.unwrap();
            }
            let from = T0 + rng.random_range(0..HOUR_MS);
            let to = from + rng.random_range(HOUR_MS..2 * HOUR_MS);
            let range = TimeRange::new(ts(from), ts(to)).unwrap();
            for step in [MINUTE_MS, 5 * MINUTE_MS, HOUR_MS, 2 * HOUR_MS, 90_000, 7_000] {
                for agg in [Agg::Avg, Agg::Min, Agg::Max, Agg::Sum, Agg::Count] {
                    let got = aggregate(store.as_ref(), device, &name("m"), range, step, agg)
                        .await
                        .unwrap();
                    let want = naive(&points, from, to, step, agg);
                    assert_eq!(
                        got.len(),
                        want.len(),
                        "seed {seed} step {step} {agg}: bucket count"
                    );
                    for (g, (start, value)) in got.iter().zip(&want) {
                        assert_eq!(g.ts.as_millis(), *start, "seed {seed} step {step} {agg}");
                        assert!(
                            close(g.value, *value),
                            "seed {seed} step {step} {agg}: {} vs {value}",
                            g.value
                        );
                    }
                }
            }
        }
    })
    .await;

    case(suite, "steps below one second and inverted ranges are refused", async {
        let store = make().await;
        assert!(
            aggregate(store.as_ref(), DeviceId::new(), &name("m"), all_time(), 999, Agg::Avg)
                .await
                .is_err()
        );
        assert!(TimeRange::new(ts(T0 + 1), ts(T0)).is_err());
    })
    .await;

    case(suite, "retention deletes raw points and rollups older than the cutoff", async {
        let store = make().await;
        let device = DeviceId::new();
        let readings: Vec<_> =
            (0..6).map(|h| reading(h + 1, T0 + h as i64 * HOUR_MS, &[("x", 1.0)])).collect();
        store.write(&[batch(device, readings)]).await.unwrap();
        let cutoff = ts(T0 + 3 * HOUR_MS);
        assert_eq!(store.purge(Purge::Raw, cutoff).await.unwrap(), 3);
        assert_eq!(store.raw(device, &name("x"), all_time(), 100).await.unwrap().len(), 3);
        assert_eq!(
            store.rollups(device, &name("x"), Tier::Hour, all_time()).await.unwrap().len(),
            6
        );
        assert_eq!(store.purge(Purge::Rollup(Tier::Minute), cutoff).await.unwrap(), 3);
        assert_eq!(store.purge(Purge::Rollup(Tier::Hour), cutoff).await.unwrap(), 3);
        assert_eq!(
            store.rollups(device, &name("x"), Tier::Hour, all_time()).await.unwrap().len(),
            3
        );
        assert_eq!(
            store.rollups(device, &name("x"), Tier::Minute, all_time()).await.unwrap().len(),
            3
        );
    })
    .await;
}

/// The reference: bucket the raw points in the widened range and reduce each bucket.
fn naive(points: &[(i64, f64)], from: i64, to: i64, step: i64, agg: Agg) -> Vec<(i64, f64)> {
    let lo = from - from.rem_euclid(step);
    let hi = if to.rem_euclid(step) == 0 { to } else { to - to.rem_euclid(step) + step };
    let mut buckets: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (at, value) in points {
        if (lo..hi).contains(at) {
            buckets.entry(at - at.rem_euclid(step)).or_default().push(*value);
        }
    }
    buckets
        .into_iter()
        .map(|(start, values)| {
            let value = match agg {
                Agg::Avg => values.iter().sum::<f64>() / values.len() as f64,
                Agg::Min => values.iter().copied().fold(f64::INFINITY, f64::min),
                Agg::Max => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                Agg::Sum => values.iter().sum(),
                Agg::Count => values.len() as f64,
            };
            (start, value)
        })
        .collect()
}
