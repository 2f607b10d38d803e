use std::sync::Arc;

use edgewatch_common::{
    telemetry_store::{self, StoreError, TelemetryStore, sqlite::SqliteStore},
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
