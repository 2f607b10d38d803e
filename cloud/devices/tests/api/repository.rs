//! One conformance suite for the registry store, run on PostgreSQL and SQLite.

use std::sync::Arc;

use edgewatch_common::testkit::services;
use edgewatch_devices::repository::{
    DeviceRepository, ListQuery, OutboxEvent, StatusChange, postgres::PostgresDevices,
    sqlite::SqliteDevices,
};
use edgewatch_protocol::{
    DeviceId, DeviceRecord, DeviceStatus, Location, StatusEvent, Timestamp, UserId,
};

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
    // Text and tag together: the tag must be one of the device's tags, not text that
    // merely contains it ("nort" is in "north" and in the name, but no device has that tag).
    assert_eq!(
        names(
            &*repo,
            ListQuery { q: Some("e".into()), tag: Some("NORTH".into()), ..Default::default() }
        )
        .await,
        ["Greenhouse North", "Shed"]
    );
    assert!(
        names(
            &*repo,
            ListQuery { q: Some("green".into()), tag: Some("nort".into()), ..Default::default() }
        )
        .await
        .is_empty(),
        "a tag filter matches whole tags"
    );
    assert_eq!(
        names(
            &*repo,
            ListQuery { q: Some("green".into()), tag: Some("pi4".into()), ..Default::default() }
        )
        .await,
        ["Greenhouse North"]
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
    assert_eq!(repo.update(&renamed).await.unwrap().as_ref(), Some(&renamed));
    assert_eq!(repo.get(barn.id).await.unwrap().unwrap().record, renamed);
    assert_eq!(
        repo.mark_seen(barn.id, ts(1_795_651_400_000)).await.unwrap(),
        Some(StatusChange {
            device_id: barn.id,
            status: DeviceStatus::Online,
            at: ts(1_795_651_400_000)
        }),
        "first traffic: a status change"
    );
    assert_eq!(repo.mark_seen(barn.id, ts(1_795_651_350_000)).await.unwrap(), None);
    // The handed-on watermark: each call answers the one before, and it never goes back.
    assert_eq!(repo.handed_on(barn.id, 10).await.unwrap(), Some(0));
    assert_eq!(repo.handed_on(barn.id, 4).await.unwrap(), Some(10));
    assert_eq!(repo.handed_on(barn.id, 12).await.unwrap(), Some(10));
    assert_eq!(repo.handed_on(barn.id, 12).await.unwrap(), Some(12));
    assert_eq!(repo.handed_on(DeviceId::new(), 1).await.unwrap(), None);
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
    assert_eq!(repo.update(&shed).await.unwrap(), None);
    assert!(!repo.set_secret(shed.id, "x").await.unwrap());
    assert!(repo.get(shed.id).await.unwrap().is_none());
}

/// Pending outbox events as (routing key, device id in the body); clears the outbox.
async fn drain_outbox(repo: &dyn DeviceRepository) -> Vec<(String, DeviceId, serde_json::Value)> {
    let pending: Vec<OutboxEvent> = repo.outbox_pending(1_000).await.unwrap();
    let ids: Vec<i64> = pending.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "relay order is write order");
    repo.outbox_delete(&ids).await.unwrap();
    assert!(repo.outbox_pending(1_000).await.unwrap().is_empty(), "relayed events are forgotten");
    pending
        .into_iter()
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            let id = body.get("device_id").or_else(|| body.get("id")).unwrap();
            (e.routing_key, DeviceId::parse(id.as_str().unwrap()).unwrap(), body)
        })
        .collect()
}

/// Registry writes and their events: every change writes its event with it, status events only
/// on a change (also when writers race), the offline sweep, the applied config version.
async fn status_and_outbox(repo: Arc<dyn DeviceRepository>) {
    let owner = UserId::new();
    let a = device(owner, "a", &[], None);
    let b = device(owner, "b", &[], None);
    repo.create(&a, "ta", ts(2_000_000_000_000)).await.unwrap();
    repo.create(&b, "tb", ts(2_000_000_000_000)).await.unwrap();
    let created = drain_outbox(&*repo).await;
    assert_eq!(
        created.iter().map(|(k, id, _)| (k.as_str(), *id)).collect::<Vec<_>>(),
        [("device.created", a.id), ("device.created", b.id)]
    );
    assert_eq!(serde_json::from_value::<DeviceRecord>(created[0].2.clone()).unwrap(), a);

    let mut renamed = a.clone();
    renamed.name = "a2".into();
    renamed.updated_at = ts(1_795_651_300_000);
    repo.update(&renamed).await.unwrap().unwrap();
    let updated = drain_outbox(&*repo).await;
    assert_eq!(updated.len(), 1);
    assert_eq!(
        (updated[0].0.as_str(), updated[0].2["name"].as_str()),
        ("device.updated", Some("a2"))
    );

    // Racing writers: one change, one event.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let repo = Arc::clone(&repo);
            tokio::spawn(async move { repo.mark_seen(a.id, ts(1_795_651_400_000 + i)).await })
        })
        .collect();
    let mut changes = 0;
    for racer in racers {
        changes += usize::from(racer.await.unwrap().unwrap().is_some());
    }
    assert_eq!(changes, 1, "exactly one racer sees never_seen -> online");
    assert_eq!(
        repo.set_status(b.id, DeviceStatus::Online, ts(1_795_651_400_000), Some(3)).await.unwrap(),
        Some(StatusChange {
            device_id: b.id,
            status: DeviceStatus::Online,
            at: ts(1_795_651_400_000)
        })
    );
    assert_eq!(repo.config(b.id).await.unwrap().unwrap().applied_version, Some(3));
    assert_eq!(
        repo.set_status(b.id, DeviceStatus::Online, ts(1_795_651_500_000), None).await.unwrap(),
        None,
        "no change, no event"
    );
    assert_eq!(repo.config(b.id).await.unwrap().unwrap().applied_version, Some(3));
    assert_eq!(
        repo.get(b.id).await.unwrap().unwrap().record.last_seen_at,
        Some(ts(1_795_651_500_000)),
        "an online report counts as seen"
    );
    let online = drain_outbox(&*repo).await;
    assert_eq!(
        online.iter().map(|(k, id, _)| (k.as_str(), *id)).collect::<Vec<_>>(),
        [("device.status", a.id), ("device.status", b.id)]
    );
    let event: StatusEvent = serde_json::from_value(online[1].2.clone()).unwrap();
    assert_eq!((event.status, event.ts), (DeviceStatus::Online, ts(1_795_651_400_000)));

    // The sweep: a last seen at ...407 at the latest, b at ...500.
    let swept = repo.sweep_offline(ts(1_795_651_450_000), ts(1_795_651_600_000), 10).await.unwrap();
    assert_eq!(
        swept,
        [StatusChange {
            device_id: a.id,
            status: DeviceStatus::Offline,
            at: ts(1_795_651_600_000)
        }]
    );
    assert!(
        repo.sweep_offline(ts(1_795_651_450_000), ts(1_795_651_600_000), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(repo.get(a.id).await.unwrap().unwrap().record.status, DeviceStatus::Offline);
    assert_eq!(repo.get(b.id).await.unwrap().unwrap().record.status, DeviceStatus::Online);
    assert!(
        repo.set_status(b.id, DeviceStatus::Offline, ts(1_795_651_700_000), None)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        repo.get(b.id).await.unwrap().unwrap().record.last_seen_at,
        Some(ts(1_795_651_500_000)),
        "going offline keeps last_seen"
    );
    assert!(repo.mark_seen(a.id, ts(1_795_651_800_000)).await.unwrap().is_some(), "back online");
    let offline = drain_outbox(&*repo).await;
    assert_eq!(
        offline
            .iter()
            .map(|(k, id, b)| (k.as_str(), *id, b["status"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("device.status", a.id, "offline"),
            ("device.status", b.id, "offline"),
            ("device.status", a.id, "online")
        ]
    );

    assert!(repo.delete(b.id).await.unwrap());
    let deleted = drain_outbox(&*repo).await;
    assert_eq!((deleted[0].0.as_str(), deleted[0].1), ("device.deleted", b.id));
    assert_eq!(deleted[0].2["name"], "b");
    assert_eq!(
        repo.set_status(b.id, DeviceStatus::Online, ts(1_795_651_900_000), None).await.unwrap(),
        None
    );
    assert!(repo.outbox_pending(10).await.unwrap().is_empty(), "a gone device makes no events");
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
    let fresh = services::postgres_database().await;
    status_and_outbox(Arc::new(PostgresDevices::connect(&fresh).await.unwrap())).await;
}

#[tokio::test]
async fn sqlite_repository_conformance() {
    let repo: Arc<dyn DeviceRepository> =
        Arc::new(SqliteDevices::connect(&services::sqlite_url("devices.db")).await.unwrap());
    conformance(Arc::clone(&repo)).await;
    pagination(repo).await;
    let fresh = services::sqlite_url("devices.db");
    status_and_outbox(Arc::new(SqliteDevices::connect(&fresh).await.unwrap())).await;
}
