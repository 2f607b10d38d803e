//! The MongoDB driver against FerretDB v1.24: the operations the monitoring store relies on.

use edgewatch_common::testkit::services;
use futures_util::TryStreamExt;
use mongodb::{
    Client, IndexModel,
    bson::{Document, doc},
    options::{IndexOptions, UpdateOptions},
};

#[tokio::test]
async fn mongodb_driver_round_trips_through_ferretdb() {
    let (url, db_name) = services::mongodb();
    let client = Client::with_uri_str(&url).await.expect("client");
    let db = client.database(&db_name);
    let readings = db.collection::<Document>("readings");

    // The exactly-once key: a unique index on (device_id, seq).
    let unique = IndexModel::builder()
        .keys(doc! {"device_id": 1, "seq": 1})
        .options(IndexOptions::builder().unique(true).build())
        .build();
    readings.create_index(unique).await.expect("create unique index");

    let docs: Vec<Document> = (1..=5)
        .map(|seq| doc! {"device_id": "d1", "seq": seq, "ts": 1_000_i64 * seq, "m": {"x": seq as f64 * 1.5}})
        .collect();
    let inserted = readings.insert_many(docs).await.expect("insert_many");
    assert_eq!(inserted.inserted_ids.len(), 5);

    let duplicate = readings.insert_one(doc! {"device_id": "d1", "seq": 3}).await;
    let err = duplicate.expect_err("the unique index must refuse a second (device_id, seq)");
    assert!(err.to_string().contains("E11000") || err.to_string().contains("duplicate"), "{err}");

    let found: Vec<Document> = readings
        .find(doc! {"device_id": "d1", "ts": {"$gte": 2_000_i64, "$lt": 5_000_i64}})
        .sort(doc! {"ts": 1})
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    let seqs: Vec<i64> = found.iter().map(|d| d.get_i64("seq").unwrap()).collect();
    assert_eq!(seqs, vec![2, 3, 4]);
    assert_eq!(found[0].get_document("m").unwrap().get_f64("x").unwrap(), 3.0);

    // Rollups maintained at write time: $inc, $min, $max upserts.
    let rollups = db.collection::<Document>("rollups_1m");
    for value in [4.0, 1.0, 7.0] {
        rollups
            .update_one(
                doc! {"_id": {"device_id": "d1", "metric": "x", "bucket": 60_000_i64}},
                doc! {"$inc": {"count": 1_i64, "sum": value}, "$min": {"min": value}, "$max": {"max": value}},
            )
            .with_options(UpdateOptions::builder().upsert(true).build())
            .await
            .expect("upsert rollup");
    }
    let bucket = rollups.find_one(doc! {}).await.expect("find_one").expect("one bucket");
    assert_eq!(bucket.get_i64("count").unwrap(), 3);
    assert_eq!(bucket.get_f64("sum").unwrap(), 12.0);
    assert_eq!(bucket.get_f64("min").unwrap(), 1.0);
    assert_eq!(bucket.get_f64("max").unwrap(), 7.0);

    // Retention is a periodic delete.
    let deleted = readings.delete_many(doc! {"ts": {"$lt": 3_000_i64}}).await.expect("delete_many");
    assert_eq!(deleted.deleted_count, 2);
    assert_eq!(readings.count_documents(doc! {}).await.expect("count"), 3);

    db.drop().await.expect("drop database");
}
