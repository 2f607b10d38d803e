//! One conformance suite for the registry store, run on PostgreSQL and SQLite.

use std::sync::Arc;

use edgewatch_common::testkit::services;
use edgewatch_devices::repository::{
    DeviceRepository, ListQuery, postgres::PostgresDevices, sqlite::SqliteDevices,
};
use edgewatch_protocol::{DeviceId, DeviceRecord, DeviceStatus, Location, Timestamp, UserId};

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millis(ms).unwrap()
}

fn device(owner: UserId, name: &str, tags: &[&str], kind: Option<&str>) -> DeviceRecord {
    DeviceRecord {
        id: DeviceId::new(),
        name: name.into(),
        kind: kind.map(Into::into),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        location: Some(Location { lat: 47.6, lon: -122.3 }),
        metadata: serde_json::json!({"floor": 2, "notes": "by the door"})
            .as_object()
            .unwrap()
            .clone(),
        owner_id: owner,
        status: DeviceStatus::NeverSeen,
        last_seen_at: None,
        config_version: 0,
        created_at: ts(1_795_651_200_000),
        updated_at: ts(1_795_651_200_000),
    }
}

async fn names(repo: &dyn DeviceRepository, query: ListQuery) -> Vec<String> {
    repo.list(&ListQuery { limit: 100, ..query })
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect()
}

async fn conformance(repo: Arc<dyn DeviceRepository>) {
    repo.ping().await.unwrap();
    let (ada, bob) = (UserId::new(), UserId::new());
    let mut greenhouse = device(ada, "Greenhouse North", &["north", "pi4"], Some("pi4"));
    greenhouse.location = None;
    let barn = device(ada, "Barn 50%_off", &["south"], None);
    let shed = device(bob, "Shed", &["north"], Some("esp32"));
    for (d, token) in [(&greenhouse, "hash-g"), (&barn, "hash-b"), (&shed, "hash-s")] {
        repo.create(d, token, ts(2_000_000_000_000)).await.unwrap();
    }

    let stored = repo.get(greenhouse.id).await.unwrap().unwrap();
    assert_eq!(stored.record, greenhouse, "every field round-trips");
    assert_eq!(stored.secret_hash, None);
    assert_eq!(repo.get(barn.id).await.unwrap().unwrap().record, barn);
    assert!(repo.get(DeviceId::new()).await.unwrap().is_none());

    // Ownership and filters.
    assert_eq!(names(&*repo, ListQuery { owner: Some(ada), ..Default::default() }).await.len(), 2);
    assert_eq!(names(&*repo, ListQuery::default()).await.len(), 3, "no owner filter: everyone's");
    assert_eq!(
        names(&*repo, ListQuery { tag: Some("north".into()), ..Default::default() }).await,
        ["Greenhouse North", "Shed"]
    );
    assert_eq!(
        names(
            &*repo,
            ListQuery { owner: Some(bob), tag: Some("north".into()), ..Default::default() }
        )
        .await,
        ["Shed"]
    );
    assert_eq!(
        names(&*repo, ListQuery { kind: Some("pi4".into()), ..Default::default() }).await,
        ["Greenhouse North"]
    );
    assert_eq!(
        names(&*repo, ListQuery { q: Some("GREEN".into()), ..Default::default() }).await,
        ["Greenhouse North"]
    );
    assert_eq!(
        names(&*repo, ListQuery { q: Some("sout".into()), ..Default::default() }).await,
        ["Barn 50%_off"],
        "text matches tags"
    );
    assert_eq!(
        names(&*repo, ListQuery { q: Some("50%_".into()), ..Default::default() }).await,
        ["Barn 50%_off"]
    );
    assert!(
        names(&*repo, ListQuery { q: Some("%".into()), owner: Some(bob), ..Default::default() })
            .await
            .is_empty(),
        "LIKE wildcards are literal"
    );
    assert!(
        names(
            &*repo,
            ListQuery { q: Some("'; DROP TABLE devices; --".into()), ..Default::default() }
        )
        .await
        .is_empty()
    );
    assert!(
        names(&*repo, ListQuery { status: Some(DeviceStatus::Online), ..Default::default() })
            .await
            .is_empty()
    );

    // Update, seen, secrets.
    let mut renamed = barn.clone();
    renamed.name = "Barn".into();
    renamed.tags = vec!["south".into(), "cows".into()];
    renamed.updated_at = ts(1_795_651_300_000);
    assert!(repo.update(&renamed).await.unwrap());
    assert_eq!(repo.get(barn.id).await.unwrap().unwrap().record, renamed);
    repo.mark_seen(barn.id, ts(1_795_651_400_000)).await.unwrap();
    repo.mark_seen(barn.id, ts(1_795_651_350_000)).await.unwrap();
    let seen = repo.get(barn.id).await.unwrap().unwrap().record;
    assert_eq!(
        (seen.status, seen.last_seen_at),
        (DeviceStatus::Online, Some(ts(1_795_651_400_000))),
        "last_seen never goes back"
    );
    assert_eq!(
        names(&*repo, ListQuery { status: Some(DeviceStatus::Online), ..Default::default() }).await,
        ["Barn"]
    );
    assert!(repo.set_secret(barn.id, "secret-hash").await.unwrap());
    assert_eq!(
        repo.get(barn.id).await.unwrap().unwrap().secret_hash.as_deref(),
        Some("secret-hash")
    );

    // Enrollment: once, before expiry.
    assert_eq!(
        repo.enroll("hash-g", ts(1_900_000_000_000), "g-secret").await.unwrap(),
        Some(greenhouse.id)
    );
    assert_eq!(
        repo.enroll("hash-g", ts(1_900_000_000_000), "again").await.unwrap(),
        None,
        "a token works once"
    );
    assert_eq!(
        repo.enroll("hash-s", ts(2_100_000_000_000), "late").await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(repo.enroll("unknown", ts(1_900_000_000_000), "x").await.unwrap(), None);
    assert_eq!(
        repo.get(greenhouse.id).await.unwrap().unwrap().secret_hash.as_deref(),
        Some("g-secret")
    );

    // Delete.
    assert!(repo.delete(shed.id).await.unwrap());
    assert!(!repo.delete(shed.id).await.unwrap());
    assert!(!repo.update(&shed).await.unwrap());
    assert!(!repo.set_secret(shed.id, "x").await.unwrap());
    assert!(repo.get(shed.id).await.unwrap().is_none());
}

async fn pagination(repo: Arc<dyn DeviceRepository>) {
    let owner = UserId::new();
    for i in 0..25 {
        repo.create(
            &device(owner, &format!("d{i:02}"), &[], None),
            &format!("t{i}"),
            ts(2_000_000_000_000),
        )
        .await
        .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = repo
            .list(&ListQuery { owner: Some(owner), limit: 10, after, ..Default::default() })
            .await
            .unwrap();
        if seen.len() == 10 {
            // A device added while paging shows up on a later page, never as a duplicate.
            repo.create(&device(owner, "late", &[], None), "t-late", ts(2_000_000_000_000))
                .await
                .unwrap();
        }
        if page.is_empty() {
            break;
        }
        after = page.last().map(|d| d.id);
        seen.extend(page.into_iter().map(|d| d.name));
    }
    assert_eq!(seen.len(), 26);
    let mut expected: Vec<String> = (0..25).map(|i| format!("d{i:02}")).collect();
    expected.push("late".into());
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn postgres_repository_conformance() {
    let url = services::postgres_database().await;
    let repo: Arc<dyn DeviceRepository> = Arc::new(PostgresDevices::connect(&url).await.unwrap());
    conformance(Arc::clone(&repo)).await;
    pagination(repo).await;
}

#[tokio::test]
async fn sqlite_repository_conformance() {
    let repo: Arc<dyn DeviceRepository> =
        Arc::new(SqliteDevices::connect(&services::sqlite_url("devices.db")).await.unwrap());
    conformance(Arc::clone(&repo)).await;
    pagination(repo).await;
}
