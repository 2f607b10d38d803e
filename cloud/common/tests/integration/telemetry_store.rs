use std::sync::Arc;

use edgewatch_common::{
    telemetry_store::{self, StoreError, TelemetryStore, mongo::MongoStore, sqlite::SqliteStore},
    testkit::{conformance, services},
};

#[tokio::test]
async fn sqlite_store_conformance() {
    conformance::telemetry_store::run(|| async {
        let url = services::sqlite_url("telemetry.db");
        Arc::new(SqliteStore::open(&url).await.expect("open SQLite store"))
            as Arc<dyn TelemetryStore>
    })
    .await;
}

#[tokio::test]
async fn sqlite_store_keeps_data_across_reopen() {
    use edgewatch_protocol::{Batch, DeviceId};
    let url = services::sqlite_url("reopen.db");
    let device = DeviceId::new();
    let batch = Batch::from_json(
        format!(r#"{{"device_id":"{device}","readings":[{{"seq":1,"ts":"2026-11-26T20:00:00Z","metrics":{{"x":1}}}}]}}"#)
            .as_bytes(),
    )
    .unwrap();
    SqliteStore::open(&url).await.unwrap().write(std::slice::from_ref(&batch)).await.unwrap();
    let reopened = SqliteStore::open(&url).await.unwrap();
    assert_eq!(
        reopened.write(&[batch]).await.unwrap().duplicates,
        1,
        "dedupe keys survive a restart"
    );
    assert_eq!(reopened.latest(device).await.unwrap().unwrap().seq.get(), 1);
}

#[tokio::test]
async fn store_urls_pick_the_adapter_and_bad_paths_fail_clearly() {
    assert!(matches!(
        telemetry_store::connect("nosuch://x").await,
        Err(StoreError::UnsupportedUrl(_))
    ));
    let err = telemetry_store::connect("sqlite:///nonexistent-dir/sub/t.db")
        .await
        .err()
        .expect("must fail");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err}");
}

use services::mongodb_database as mongodb_url;

#[tokio::test]
async fn mongodb_store_conformance_on_ferretdb() {
    conformance::telemetry_store::run(|| async {
        Arc::new(MongoStore::open(&mongodb_url()).await.expect("open MongoDB store"))
            as Arc<dyn TelemetryStore>
    })
    .await;
}

/// A writer that stopped between inserting readings and adding them to the rollups: the
/// redelivered batch (or the repair sweep) finishes the rollups once, never twice.
#[tokio::test]
async fn mongodb_store_finishes_half_done_writes_exactly_once() {
    use edgewatch_common::telemetry_store::{Tier, TimeRange, mongo::PENDING_LEASE_MS};
    use edgewatch_protocol::{Batch, DeviceId, MetricName, Timestamp};
    use mongodb::bson::doc;

    let url = mongodb_url();
    let store = MongoStore::open(&url).await.expect("open");
    let raw = mongodb::Client::with_uri_str(&url).await.unwrap().default_database().unwrap();
    let readings = raw.collection::<mongodb::bson::Document>("readings");
    let batch = |device: DeviceId, seqs: std::ops::RangeInclusive<u64>| {
        let readings: Vec<String> = seqs
            .map(|s| {
                format!(r#"{{"seq":{s},"ts":"2026-11-26T20:00:{s:02}Z","metrics":{{"x":{s}}}}}"#)
            })
            .collect();
        Batch::from_json(
            format!(r#"{{"device_id":"{device}","readings":[{}]}}"#, readings.join(",")).as_bytes(),
        )
        .unwrap()
    };
    let x = MetricName::parse("x").unwrap();
    let all = TimeRange::new(Timestamp::from_millis(0).unwrap(), Timestamp::now()).unwrap();
    let stale = Timestamp::now().as_millis() - PENDING_LEASE_MS - 1;

    // Redelivery path: readings 1..=3 inserted and still pending past the lease, no rollups.
    let device = DeviceId::new();
    for s in 1..=3_i64 {
        readings
            .insert_one(doc! {"_id": format!("{device}:{s}"), "d": device.to_string(), "q": s,
            "t": Timestamp::parse("2026-11-26T20:00:00Z").unwrap().as_millis() + s * 1000,
            "m": [{"k": "x", "v": s as f64}], "p": stale})
            .await
            .unwrap();
    }
    let outcome = store.write(&[batch(device, 1..=3)]).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 3));
    let buckets = store.rollups(device, &x, Tier::Minute, all).await.unwrap();
    assert_eq!((buckets.len(), buckets[0].count, buckets[0].sum), (1, 3, 6.0));
    store.write(&[batch(device, 1..=3)]).await.unwrap();
    let again = store.rollups(device, &x, Tier::Hour, all).await.unwrap();
    assert_eq!((again[0].count, again[0].sum), (3, 6.0), "a second redelivery adds nothing");
    assert_eq!(store.latest(device).await.unwrap().unwrap().seq.get(), 3);

    // Sweep path: a pending reading nobody redelivers.
    let lonely = DeviceId::new();
    readings
        .insert_one(doc! {"_id": format!("{lonely}:7"), "d": lonely.to_string(), "q": 7_i64,
        "t": Timestamp::parse("2026-11-26T20:00:00Z").unwrap().as_millis(),
        "m": [{"k": "x", "v": 2.5}], "p": stale})
        .await
        .unwrap();
    assert!(store.repair().await.unwrap() >= 1);
    assert_eq!(store.repair().await.unwrap(), 0, "nothing left pending");
    let buckets = store.rollups(lonely, &x, Tier::Hour, all).await.unwrap();
    assert_eq!((buckets.len(), buckets[0].count, buckets[0].sum), (1, 1, 2.5));

    // A fresh pending reading (another writer's, within the lease) is left to that writer.
    let busy = DeviceId::new();
    readings
        .insert_one(doc! {"_id": format!("{busy}:1"), "d": busy.to_string(), "q": 1_i64,
        "t": Timestamp::parse("2026-11-26T20:00:01Z").unwrap().as_millis(),
        "m": [{"k": "x", "v": 1.0}], "p": Timestamp::now().as_millis()})
        .await
        .unwrap();
    store.write(&[batch(busy, 1..=1)]).await.unwrap();
    assert!(store.rollups(busy, &x, Tier::Hour, all).await.unwrap().is_empty());
}
