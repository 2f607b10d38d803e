use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use edgewatch_common::{
    bus::{Bus, BusError, Message, Topology, amqp::AmqpBus, memory::MemoryBus, sqlite::SqliteBus},
    testkit::{conformance, services},
};

#[tokio::test]
async fn memory_bus_conformance() {
    conformance::bus::run(|topology| async move {
        Arc::new(MemoryBus::new(topology, 1_000)) as Arc<dyn Bus>
    })
    .await;
}

#[tokio::test]
async fn sqlite_bus_conformance() {
    conformance::bus::run(|topology| async move {
        let url = services::sqlite_url("bus.db");
        Arc::new(SqliteBus::connect(&url, topology, 1_000).await.expect("open the bus file"))
            as Arc<dyn Bus>
    })
    .await;
}

#[tokio::test]
async fn amqp_bus_conformance() {
    conformance::bus::run(|topology| async move {
        let url = services::amqp_vhost().await;
        Arc::new(AmqpBus::connect(&url, topology).await.expect("connect to RabbitMQ"))
            as Arc<dyn Bus>
    })
    .await;
}

/// Publishes into a queue of capacity 3 until it refuses one as full.
async fn fill_up(bus: &dyn Bus) {
    for _ in 0..3 {
        bus.publish(Message::new("telemetry.x", "{}")).await.unwrap();
    }
    let refused = bus.publish(Message::new("telemetry.x", "{}")).await;
    assert!(matches!(refused, Err(BusError::Full { capacity: 3, .. })), "{refused:?}");
}

/// Acks one message, after which the full queue takes one again.
async fn ack_one_then_publish(bus: &dyn Bus) {
    let mut sub = bus.subscribe("monitoring.telemetry", 1).await.unwrap();
    sub.next().await.unwrap().ack().await.unwrap();
    bus.publish(Message::new("telemetry.x", "{}")).await.expect("room again after an ack");
}

#[tokio::test]
async fn memory_bus_refuses_publishes_when_a_queue_is_full() {
    let bus = MemoryBus::new(Topology::standard(), 3);
    fill_up(&bus).await;
    assert_eq!(bus.depth("monitoring.telemetry"), 3, "a refused publish leaves nothing behind");
    ack_one_then_publish(&bus).await;
}

#[tokio::test]
async fn sqlite_bus_refuses_publishes_when_a_queue_is_full() {
    let url = services::sqlite_url("bus.db");
    fill_up(&SqliteBus::connect(&url, Topology::standard(), 3).await.unwrap()).await;
    // What it held counts after a restart too, and a refused publish was never written.
    let bus = SqliteBus::connect(&url, Topology::standard(), 3).await.unwrap();
    assert_eq!(bus.depth("monitoring.telemetry"), 3);
    assert!(matches!(bus.publish(Message::new("x", "{}")).await, Err(BusError::Unroutable(_))));
    assert!(bus.publish(Message::new("telemetry.x", "{}")).await.is_err(), "still full");
    ack_one_then_publish(&bus).await;
}

/// A process that ends without settling (a crash, `kill -9`): on reopen everything published
/// and not acked is delivered again, marked redelivered; what was acked, dead-lettered or
/// refused is not.
#[tokio::test]
async fn sqlite_bus_redelivers_what_was_not_acked_after_a_restart() {
    let url = services::sqlite_url("bus.db");
    let topology = Topology::default().with_queue("restart.events", &["telemetry.*"]);
    let message = |i: usize| {
        let mut message = Message::new(format!("telemetry.dev{i}"), format!("{{\"n\":{i}}}"));
        message.message_id = Some(format!("m{i}"));
        message.request_id = Some(format!("req-{i}"));
        message
    };
    let bus = SqliteBus::connect(&url, topology.clone(), 100).await.unwrap();
    for i in 0..5 {
        bus.publish(message(i)).await.unwrap();
    }
    assert!(bus.publish(Message::new("nobody.listens", "{}")).await.is_err());
    let mut sub = bus.subscribe("restart.events", 10).await.unwrap();
    let mut held = Vec::new();
    for i in 0..5 {
        let delivery = sub.next().await.unwrap();
        assert_eq!(delivery.message, message(i));
        match i {
            0 => delivery.ack().await.unwrap(),
            1 => delivery.dead_letter().await.unwrap(),
            _ => held.push(delivery),
        }
    }
    bus.flush().await.unwrap();
    // The crash: no settle call runs for the held deliveries, nothing is shut down.
    std::mem::forget(held);
    std::mem::forget(sub);
    std::mem::forget(bus);

    let bus = SqliteBus::connect(&url, topology, 100).await.unwrap();
    assert_eq!(bus.depth("restart.events"), 3);
    let mut sub = bus.subscribe("restart.events", 10).await.unwrap();
    for i in 2..5 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("redelivered after the restart")
            .unwrap();
        assert_eq!(delivery.message, message(i), "in the order published, with its properties");
        assert!(delivery.redelivered);
        delivery.ack().await.unwrap();
    }
    assert!(tokio::time::timeout(Duration::from_millis(300), sub.next()).await.is_err());
    let mut dead = bus.subscribe("restart.events.dead", 10).await.unwrap();
    let buried = dead.next().await.unwrap();
    assert_eq!(buried.message, message(1), "the dead letter stays dead");
    buried.ack().await.unwrap();
    bus.flush().await.unwrap();
    drop((sub, dead, bus));

    let bus = SqliteBus::connect(&url, Topology::standard(), 100).await.unwrap();
    assert_eq!(bus.depth("restart.events"), 0, "a queue the topology lost is not served");
    bus.publish(message(9)).await.unwrap();
    assert_eq!(bus.depth("monitoring.telemetry"), 1);
}

#[tokio::test]
async fn sqlite_bus_refuses_a_bad_url_or_an_unusable_file() {
    assert!(matches!(
        SqliteBus::connect("sqlite://", Topology::standard(), 10).await,
        Err(BusError::UnsupportedUrl(_))
    ));
    let dir = services::sqlite_url("x");
    let dir = dir.trim_start_matches("sqlite://").trim_end_matches("/x");
    // A directory where the file should be.
    assert!(matches!(
        SqliteBus::connect(&format!("sqlite://{dir}"), Topology::standard(), 10).await,
        Err(BusError::Unavailable(_))
    ));
}

#[tokio::test]
async fn amqp_bus_reports_an_unreachable_broker() {
    // A port nothing listens on: connect fails with Unavailable, a lazy bus fails its ping.
    let url = "amqp://guest:guest@127.0.0.1:9/%2f";
    assert!(matches!(
        AmqpBus::connect(url, Topology::standard()).await,
        Err(BusError::Unavailable(_))
    ));
    let lazy = AmqpBus::lazy(url, Topology::standard());
    assert!(lazy.ping().await.is_err());
    assert!(matches!(
        lazy.publish(Message::new("telemetry.x", "{}")).await,
        Err(BusError::Unavailable(_))
    ));
}

/// Publishes a steady stream with confirms while the real RabbitMQ server is stopped and
/// started again; every confirmed message must reach the consumer (duplicates are allowed, the
/// store dedupes them), and the publisher must have seen the outage.
#[tokio::test]
async fn amqp_bus_loses_nothing_across_a_broker_restart() {
    const COUNT: usize = 1_500;
    let (url, restart) = services::restartable_amqp_vhost().await;
    let topology = Topology::default().with_queue("restart.events", &["telemetry.*"]);
    let bus = AmqpBus::connect(&url, topology).await.expect("connect");

    let seen = Arc::new(Mutex::new(HashSet::new()));
    let deliveries = Arc::new(Mutex::new(0usize));
    let consumer = {
        let (bus, seen, deliveries) = (bus.clone(), Arc::clone(&seen), Arc::clone(&deliveries));
        tokio::spawn(async move {
            let mut sub = bus.subscribe("restart.events", 100).await.expect("subscribe");
            while let Some(delivery) = sub.next().await {
                seen.lock()
                    .unwrap()
                    .insert(delivery.message.message_id.clone().unwrap_or_default());
                *deliveries.lock().unwrap() += 1;
                // An ack on a channel the restart killed fails; the broker redelivers instead.
                let _ = delivery.ack().await;
            }
        })
    };

    let deadline = Instant::now() + Duration::from_secs(150);
    let mut failures = 0usize;
    let mut restarting = None;
    for i in 0..COUNT {
        if i == 150 {
            let restart = restart.clone();
            restarting = Some(tokio::spawn(async move {
                tokio::process::Command::new(&restart)
                    .status()
                    .await
                    .expect("run the restart command")
            }));
        }
        let mut message = Message::new("telemetry.dev", format!("{{\"n\":{i}}}"));
        message.message_id = Some(format!("m{i}"));
        while let Err(err) = bus.publish(message.clone()).await {
            failures += 1;
            assert!(matches!(err, BusError::Unavailable(_)), "unexpected error: {err}");
            assert!(Instant::now() < deadline, "RabbitMQ did not come back: {err}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A steady stream, so that the restart lands mid-stream.
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    let status = restarting.expect("restart started").await.expect("restart task");
    assert!(status.success(), "the restart command failed: {status}");
    assert!(failures > 0, "the broker restart never interrupted publishing");

    while seen.lock().unwrap().len() < COUNT {
        assert!(
            Instant::now() < deadline,
            "only {} of {COUNT} confirmed messages arrived after the restart",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.abort();
    let delivered = *deliveries.lock().unwrap();
    eprintln!(
        "restart test: {failures} refused publishes, {delivered} deliveries for {COUNT} messages"
    );
}
