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

/// Writes for many devices: hundreds of updates of existing bucket documents in one call.
/// FerretDB v1.24 holds a pooled connection per update statement that found its document until
/// the command ends, so the store must split them into small commands; one command of them all
/// hung FerretDB for good.
#[tokio::test]
async fn mongodb_store_writes_many_devices_in_one_call() {
    use edgewatch_common::telemetry_store::{Tier, TimeRange};
    use edgewatch_protocol::{Batch, DeviceId, MetricName, Timestamp};

    let store = MongoStore::open(&mongodb_url()).await.expect("open");
    // 150 devices, each with readings in two hours and two days: 300 hour, 300 day and 150
    // catalogue updates.
    let devices: Vec<DeviceId> = (0..150).map(|_| DeviceId::new()).collect();
    let batches = |first_seq: u64| -> Vec<Batch> {
        devices
            .iter()
            .map(|device| {
                let (a, b) = (first_seq, first_seq + 1);
                Batch::from_json(
                    format!(
                        r#"{{"device_id":"{device}","readings":[
                        {{"seq":{a},"ts":"2026-11-26T23:59:0{a}Z","metrics":{{"x":1,"y":2}}}},
                        {{"seq":{b},"ts":"2026-11-27T00:01:0{b}Z","metrics":{{"x":3,"y":4}}}}]}}"#
                    )
                    .as_bytes(),
                )
                .unwrap()
            })
            .collect()
    };
    // The first call creates every document, the second updates them all.
    for first_seq in [1, 3] {
        let batches = batches(first_seq);
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(120), store.write(&batches))
                .await
                .expect("the write finishes (FerretDB's connection pool is not exhausted)")
                .expect("stored");
        assert_eq!(outcome.accepted, 300);
    }
    let x = MetricName::parse("x").unwrap();
    let day = TimeRange::new(
        Timestamp::parse("2026-11-26T00:00:00Z").unwrap(),
        Timestamp::parse("2026-11-28T00:00:00Z").unwrap(),
    )
    .unwrap();
    for device in [devices[0], devices[149]] {
        let hours = store.rollups(device, &x, Tier::Hour, day).await.unwrap();
        assert_eq!(hours.iter().map(|b| b.count).collect::<Vec<_>>(), vec![2, 2]);
        assert_eq!(hours.iter().map(|b| b.sum).sum::<f64>(), 8.0);
    }
}

/// A writer that stopped half-way: the repair sweep finishes its write, once, even when some of
/// its buckets were already updated; redeliveries meet only duplicates.
#[tokio::test]
async fn mongodb_store_finishes_half_done_writes_exactly_once() {
    use edgewatch_common::telemetry_store::{Tier, TimeRange, mongo::PENDING_LEASE_MS};
    use edgewatch_protocol::{Batch, DeviceId, MetricName, Timestamp};
    use mongodb::bson::{Document, doc};

    let url = mongodb_url();
    let store = MongoStore::open(&url).await.expect("open");
    let raw = mongodb::Client::with_uri_str(&url).await.unwrap().default_database().unwrap();
    let readings = raw.collection::<Document>("readings");
    let journal = raw.collection::<Document>("journal");
    let x = MetricName::parse("x").unwrap();
    let all = TimeRange::new(Timestamp::from_millis(0).unwrap(), Timestamp::now()).unwrap();
    let stale = Timestamp::now().as_millis() - PENDING_LEASE_MS - 1;
    let at = |s: i64| Timestamp::parse("2026-11-26T20:00:00Z").unwrap().as_millis() + s * 1000;
    let sums = |device: DeviceId| {
        let store = &store;
        let x = &x;
        async move {
            let minute = store.rollups(device, x, Tier::Minute, all).await.unwrap();
            let hour = store.rollups(device, x, Tier::Hour, all).await.unwrap();
            let points = store.raw(device, x, all, 100).await.unwrap();
            (
                minute.iter().map(|b| b.count).sum::<u64>(),
                hour.iter().map(|b| b.sum).sum::<f64>(),
                points.len(),
            )
        }
    };

    // Crashed after inserting its readings, before any bucket.
    let device = DeviceId::new();
    let ids: Vec<String> = (1..=3).map(|s| format!("{device}:{s}")).collect();
    journal.insert_one(doc! {"_id": "crashed-1", "ids": &ids, "w": stale}).await.unwrap();
    for s in 1..=3_i64 {
        readings
            .insert_one(doc! {"_id": format!("{device}:{s}"), "d": device.to_string(), "q": s,
            "t": at(s), "m": [{"k": "x", "v": s as f64}], "j": "crashed-1"})
            .await
            .unwrap();
    }
    let redelivered = Batch::from_json(
        format!(
            r#"{{"device_id":"{device}","readings":[{}]}}"#,
            (1..=3)
                .map(|s| format!(
                    r#"{{"seq":{s},"ts":"2026-11-26T20:00:{s:02}Z","metrics":{{"x":{s}}}}}"#
                ))
                .collect::<Vec<_>>()
                .join(",")
        )
        .as_bytes(),
    )
    .unwrap();
    let outcome = store.write(std::slice::from_ref(&redelivered)).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (0, 3));
    assert_eq!(store.repair().await.unwrap(), 3);
    assert_eq!(sums(device).await, (3, 6.0, 3));
    assert_eq!(store.repair().await.unwrap(), 0, "the journal entry is gone");
    store.write(&[redelivered]).await.unwrap();
    assert_eq!(sums(device).await, (3, 6.0, 3), "a later redelivery adds nothing");
    assert_eq!(store.latest(device).await.unwrap().unwrap().seq.get(), 3);

    // Crashed after its hour buckets, before its day buckets: the sweep adds only the days.
    let other = DeviceId::new();
    let batch = Batch::from_json(
        format!(r#"{{"device_id":"{other}","readings":[{{"seq":1,"ts":"2026-11-26T20:00:01Z","metrics":{{"x":2.5}}}}]}}"#)
            .as_bytes(),
    )
    .unwrap();
    store.write(&[batch]).await.unwrap();
    let written = readings.find_one(doc! {"_id": format!("{other}:1")}).await.unwrap().unwrap();
    let entry = written.get_str("j").unwrap().to_owned();
    journal
        .insert_one(doc! {"_id": &entry, "ids": [format!("{other}:1")], "w": stale})
        .await
        .unwrap();
    raw.collection::<Document>("days")
        .delete_many(doc! {"_id": {"$regex": format!("^{other}")}})
        .await
        .unwrap();
    assert_eq!(store.repair().await.unwrap(), 1);
    assert_eq!(sums(other).await, (1, 2.5, 1), "hours untouched, days restored");

    // A fresh entry belongs to a writer still at work: left alone.
    journal
        .insert_one(
            doc! {"_id": "busy", "ids": [format!("{other}:1")], "w": Timestamp::now().as_millis()},
        )
        .await
        .unwrap();
    assert_eq!(store.repair().await.unwrap(), 0);
}

/// A database written by the point-per-row layout (migration 0001 only, as `edgewatch up` users
/// have it) is converted in place by 0002: points, rollups, latest and the dedupe keys survive,
/// values bit for bit.
#[tokio::test]
async fn sqlite_store_converts_a_point_per_row_database() {
    use edgewatch_common::telemetry_store::{Point, Tier, TimeRange};
    use edgewatch_protocol::{Batch, DeviceId, MetricName, Timestamp};

    let url = services::sqlite_url("old-layout.db");
    let path = url.trim_start_matches("sqlite://");
    let dir = std::path::Path::new(path).parent().unwrap().join("migrations-0001");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("0001_init.sql"),
        include_str!("../../migrations/telemetry-sqlite/0001_init.sql"),
    )
    .unwrap();
    let device = DeviceId::new();
    let t0 = Timestamp::parse("2026-11-26T20:00:00Z").unwrap().as_millis();
    // Values that need all 17 digits to round-trip.
    let (a, b, c) = (0.1 + 0.2, 1.0 / 3.0, -2.5e-300);
    {
        let pool = edgewatch_common::db::sqlite(&url, 1).await.unwrap();
        sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap().run(&pool).await.unwrap();
        let d = device.to_string();
        for (seq, ts) in [(1, t0), (2, t0 + 1_000), (3, t0 + 2_000)] {
            sqlx::query("INSERT INTO readings (device_id, seq, ts) VALUES (?, ?, ?)")
                .bind(&d)
                .bind(seq)
                .bind(ts)
                .execute(&pool)
                .await
                .unwrap();
        }
        // Reading 3 lost its points (a reading with no metrics): it keeps its dedupe key.
        for (metric, seq, value) in [("x.a", 1, a), ("x.b", 1, b), ("x.a", 2, c)] {
            sqlx::query(
                "INSERT INTO points (device_id, metric, ts, seq, value) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&d)
            .bind(metric)
            .bind(t0 + (seq - 1) * 1_000)
            .bind(seq)
            .bind(value)
            .execute(&pool)
            .await
            .unwrap();
        }
        sqlx::query("INSERT INTO rollups VALUES (3600000, ?, 'x.a', ?, 2, ?, ?, ?)")
            .bind(&d)
            .bind(t0 - t0.rem_euclid(3_600_000))
            .bind(a + c)
            .bind(c)
            .bind(a)
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO latest VALUES (?, 2, ?, ?)")
            .bind(&d)
            .bind(t0 + 1_000)
            .bind(format!(r#"{{"x.a":{c}}}"#))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    let store = SqliteStore::open(&url).await.expect("open and migrate the old database");
    let all = TimeRange::new(Timestamp::from_millis(0).unwrap(), Timestamp::now()).unwrap();
    let ts = |ms| Timestamp::from_millis(ms).unwrap();
    let x_a = MetricName::parse("x.a").unwrap();
    assert_eq!(
        store.raw(device, &x_a, all, 10).await.unwrap(),
        vec![Point { ts: ts(t0), value: a }, Point { ts: ts(t0 + 1_000), value: c }]
    );
    assert_eq!(
        store.raw(device, &MetricName::parse("x.b").unwrap(), all, 10).await.unwrap(),
        vec![Point { ts: ts(t0), value: b }]
    );
    let hour = store.rollups(device, &x_a, Tier::Hour, all).await.unwrap();
    assert_eq!((hour.len(), hour[0].count), (1, 2));
    assert_eq!(store.latest(device).await.unwrap().unwrap().seq.get(), 2);

    let again = |seq: u64| {
        Batch::from_json(
            format!(r#"{{"device_id":"{device}","readings":[{{"seq":{seq},"ts":"2026-11-26T20:00:05Z","metrics":{{"x.a":1}}}}]}}"#)
                .as_bytes(),
        )
        .unwrap()
    };
    let outcome = store.write(&[again(1), again(3), again(4)]).await.unwrap();
    assert_eq!((outcome.accepted, outcome.duplicates), (1, 2), "old keys still dedupe");
    assert_eq!(store.raw(device, &x_a, all, 10).await.unwrap().len(), 3);
    assert_eq!(store.latest(device).await.unwrap().unwrap().seq.get(), 4);
}

/// Data written by the first MongoDB layout stays readable next to new writes: the latest
/// pointer in the `latest` collection, raw points as `[ts, value, seq, ...]` arrays, minute
/// rollups in hour documents (now 10-minute ones); retention clears both.
#[tokio::test]
async fn mongodb_store_reads_the_first_layout() {
    use edgewatch_common::telemetry_store::{Point, Purge, Tier, TimeRange};
    use edgewatch_protocol::{Batch, DeviceId, MetricName, Timestamp};
    use mongodb::bson::{Document, doc};

    let url = mongodb_url();
    let raw = mongodb::Client::with_uri_str(&url).await.unwrap().default_database().unwrap();
    let device = DeviceId::new();
    let d = device.to_string();
    let t0 = Timestamp::parse("2026-11-26T20:00:00Z").unwrap().as_millis();
    let insert = |collection: &'static str, document: Document| {
        let raw = raw.clone();
        async move { raw.collection::<Document>(collection).insert_one(document).await.unwrap() }
    };
    insert(
        "readings",
        doc! {"_id": format!("{d}:7"), "d": &d, "q": 7_i64, "t": t0 + 5_000, "m": [{"k": "x.a", "v": 2.5}]},
    )
    .await;
    insert("latest", doc! {"_id": &d, "q": 7_i64}).await;
    insert("catalogue", doc! {"_id": &d, "m": {"x-a": {"f": t0 + 5_000, "l": t0 + 5_000}}}).await;
    insert(
        "hours",
        doc! {"_id": format!("{d}|{t0}"), "b": t0, "s": {"x-a": {"0": {"c": 1_i64, "s": 2.5, "lo": 2.5, "hi": 2.5}}}, "src": [42_i64]},
    )
    .await;
    insert(
        "chunks",
        doc! {"_id": format!("{d}|{t0}|42"), "b": t0, "v": {"x-a": [t0 + 5_000, 2.5, 7_i64]}},
    )
    .await;

    // The store opens on the old data (an upgrade).
    let store = MongoStore::open(&url).await.expect("open");
    let x_a = MetricName::parse("x.a").unwrap();
    let all = TimeRange::new(Timestamp::from_millis(0).unwrap(), Timestamp::now()).unwrap();
    let at = |ms| Timestamp::from_millis(ms).unwrap();
    let latest = store.latest(device).await.unwrap().expect("the legacy pointer is read");
    assert_eq!((latest.seq.get(), latest.metrics[&x_a]), (7, 2.5));
    assert_eq!(
        store.raw(device, &x_a, all, 10).await.unwrap(),
        vec![Point { ts: at(t0 + 5_000), value: 2.5 }]
    );

    // A new write (an older seq, arriving late) adds a packed chunk to the same hour and must not
    // hide the higher legacy pointer.
    // Rollups of the new layout (10-minute documents) for a minute the legacy hour document
    // holds too, and for a later window of that hour.
    let late = Batch::from_json(
        format!(r#"{{"device_id":"{device}","readings":[{{"seq":3,"ts":"2026-11-26T20:00:01Z","metrics":{{"x.a":1.5}}}},{{"seq":4,"ts":"2026-11-26T20:15:00Z","metrics":{{"x.a":4.0}}}}]}}"#)
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(store.write(&[late]).await.unwrap().accepted, 2);
    assert_eq!(store.latest(device).await.unwrap().unwrap().seq.get(), 7);
    assert_eq!(
        store.raw(device, &x_a, all, 10).await.unwrap(),
        vec![
            Point { ts: at(t0 + 1_000), value: 1.5 },
            Point { ts: at(t0 + 5_000), value: 2.5 },
            Point { ts: at(t0 + 900_000), value: 4.0 }
        ],
        "old and new chunks read together, in time order"
    );
    let minutes = store.rollups(device, &x_a, Tier::Minute, all).await.unwrap();
    assert_eq!(
        minutes.iter().map(|b| (b.start.as_millis(), b.count, b.sum)).collect::<Vec<_>>(),
        vec![(t0, 2, 4.0), (t0 + 900_000, 1, 4.0)],
        "a minute in both layouts is one bucket"
    );
    assert_eq!(store.purge(Purge::Rollup(Tier::Minute), at(t0 + 3_600_000)).await.unwrap(), 3);
    assert!(store.rollups(device, &x_a, Tier::Minute, all).await.unwrap().is_empty());
}
