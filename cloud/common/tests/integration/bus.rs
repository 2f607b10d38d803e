use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use edgewatch_common::{
    bus::{Bus, BusError, Message, Topology, amqp::AmqpBus, memory::MemoryBus},
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
async fn amqp_bus_conformance() {
    conformance::bus::run(|topology| async move {
        let url = services::amqp_vhost().await;
        Arc::new(AmqpBus::connect(&url, topology).await.expect("connect to RabbitMQ"))
            as Arc<dyn Bus>
    })
    .await;
}

#[tokio::test]
async fn memory_bus_refuses_publishes_when_a_queue_is_full() {
    let bus = MemoryBus::new(Topology::standard(), 3);
    let message = || Message::new("telemetry.x", "{}");
    for _ in 0..3 {
        bus.publish(message()).await.unwrap();
    }
    assert!(matches!(bus.publish(message()).await, Err(BusError::Full { capacity: 3, .. })));
    assert_eq!(bus.depth("monitoring.telemetry"), 3, "a refused publish leaves nothing behind");
    let mut sub = bus.subscribe("monitoring.telemetry", 1).await.unwrap();
    sub.next().await.unwrap().ack().await.unwrap();
    bus.publish(message()).await.expect("room again after an ack");
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
