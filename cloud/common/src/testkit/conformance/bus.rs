//! The bus conformance suite: delivery after confirm, redelivery on retry, drop and consumer
//! crash, dead-lettering, prefetch, competing consumers, and the errors of the port.

use std::{collections::HashSet, future::Future, sync::Arc, time::Duration};

use crate::bus::{Bus, BusError, Delivery, Message, Subscription, Topology, dead_letter_queue};

use super::case;

const QUEUE: &str = "conformance.events";
const WAIT: Duration = Duration::from_secs(10);
const QUIET: Duration = Duration::from_millis(400);

fn topology() -> Topology {
    Topology::default().with_queue(QUEUE, &["telemetry.*", "device.#"])
}

fn message(i: usize) -> Message {
    Message {
        routing_key: format!("telemetry.device{}", i % 3),
        body: format!("{{\"n\":{i}}}").into(),
        message_id: Some(format!("device:{i}")),
        request_id: Some(format!("req-{i}")),
    }
}

async fn next(sub: &mut Subscription) -> Delivery {
    match tokio::time::timeout(WAIT, sub.next()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("the subscription ended"),
        Err(_) => panic!("no delivery within {WAIT:?}"),
    }
}

async fn nothing_within(sub: &mut Subscription, quiet: Duration) {
    if let Ok(Some(delivery)) = tokio::time::timeout(quiet, sub.next()).await {
        panic!("expected no delivery, got {:?}", delivery.message);
    }
}

/// Runs every case; `make` returns a fresh bus (its own vhost or instance) for the topology.
pub async fn run<F, Fut>(make: F)
where
    F: Fn(Topology) -> Fut,
    Fut: Future<Output = Arc<dyn Bus>>,
{
    let suite = "bus";
    case(suite, "published after confirm is delivered, in order, with its properties", async {
        let bus = make(topology()).await;
        for i in 0..20 {
            bus.publish(message(i)).await.expect("publish");
        }
        bus.publish(Message::new("device.created", "{}")).await.expect("publish device event");
        let mut sub = bus.subscribe(QUEUE, 50).await.expect("subscribe");
        for i in 0..20 {
            let delivery = next(&mut sub).await;
            assert_eq!(delivery.message, message(i));
            assert!(!delivery.redelivered);
            delivery.ack().await.expect("ack");
        }
        let event = next(&mut sub).await;
        assert_eq!(event.message.routing_key, "device.created");
        event.ack().await.expect("ack");
        nothing_within(&mut sub, QUIET).await;
    })
    .await;

    case(suite, "a message no queue is bound for is refused", async {
        let bus = make(topology()).await;
        match bus.publish(Message::new("nobody.listens", "{}")).await {
            Err(BusError::Unroutable(key)) => assert_eq!(key, "nobody.listens"),
            other => panic!("expected Unroutable, got {other:?}"),
        }
    })
    .await;

    case(suite, "retry redelivers with the redelivered flag", async {
        let bus = make(topology()).await;
        bus.publish(message(1)).await.expect("publish");
        let mut sub = bus.subscribe(QUEUE, 10).await.expect("subscribe");
        next(&mut sub).await.retry().await.expect("retry");
        let again = next(&mut sub).await;
        assert_eq!(again.message, message(1));
        assert!(again.redelivered);
        again.ack().await.expect("ack");
        nothing_within(&mut sub, QUIET).await;
    })
    .await;

    case(suite, "a dropped delivery is redelivered", async {
        let bus = make(topology()).await;
        bus.publish(message(2)).await.expect("publish");
        let mut sub = bus.subscribe(QUEUE, 10).await.expect("subscribe");
        drop(next(&mut sub).await);
        let again = next(&mut sub).await;
        assert_eq!(again.message, message(2));
        assert!(again.redelivered);
        again.ack().await.expect("ack");
    })
    .await;

    case(suite, "a consumer that crashes before acking loses nothing", async {
        let bus = make(topology()).await;
        for i in 0..3 {
            bus.publish(message(i)).await.expect("publish");
        }
        let mut crashing = bus.subscribe(QUEUE, 10).await.expect("subscribe");
        let held: Vec<Delivery> = vec![next(&mut crashing).await, next(&mut crashing).await];
        // A crash: no settle call ever runs for these deliveries; the consumer just vanishes.
        std::mem::forget(held);
        drop(crashing);
        let mut survivor = bus.subscribe(QUEUE, 10).await.expect("subscribe");
        let mut seen = Vec::new();
        for _ in 0..3 {
            let delivery = next(&mut survivor).await;
            seen.push(delivery.message.clone());
            delivery.ack().await.expect("ack");
        }
        seen.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        assert_eq!(seen, (0..3).map(message).collect::<Vec<_>>());
        nothing_within(&mut survivor, QUIET).await;
    })
    .await;

    case(
        suite,
        "a poison message goes to the dead-letter queue and does not block others",
        async {
            let bus = make(topology()).await;
            let poison = Message::new("telemetry.bad", "not json");
            bus.publish(poison.clone()).await.expect("publish");
            bus.publish(message(7)).await.expect("publish");
            let mut sub = bus.subscribe(QUEUE, 10).await.expect("subscribe");
            let first = next(&mut sub).await;
            assert_eq!(first.message, poison);
            first.dead_letter().await.expect("dead letter");
            let second = next(&mut sub).await;
            assert_eq!(second.message, message(7));
            second.ack().await.expect("ack");
            nothing_within(&mut sub, QUIET).await;
            let mut dead =
                bus.subscribe(&dead_letter_queue(QUEUE), 10).await.expect("subscribe dead");
            let buried = next(&mut dead).await;
            assert_eq!(buried.message.body, poison.body);
            buried.ack().await.expect("ack");
        },
    )
    .await;

    case(suite, "prefetch bounds the unsettled deliveries of a subscription", async {
        let bus = make(topology()).await;
        for i in 0..5 {
            bus.publish(message(i)).await.expect("publish");
        }
        let mut sub = bus.subscribe(QUEUE, 2).await.expect("subscribe");
        let a = next(&mut sub).await;
        let b = next(&mut sub).await;
        nothing_within(&mut sub, QUIET).await;
        a.ack().await.expect("ack");
        let c = next(&mut sub).await;
        assert_eq!(c.message, message(2));
        for d in [b, c] {
            d.ack().await.expect("ack");
        }
        for _ in 3..5 {
            next(&mut sub).await.ack().await.expect("ack");
        }
    })
    .await;

    case(suite, "competing consumers share a queue and each message is handled once", async {
        let bus = make(topology()).await;
        let mut one = bus.subscribe(QUEUE, 5).await.expect("subscribe");
        let mut two = bus.subscribe(QUEUE, 5).await.expect("subscribe");
        for i in 0..40 {
            bus.publish(message(i)).await.expect("publish");
        }
        let mut seen = HashSet::new();
        let mut per_consumer = [0usize; 2];
        while seen.len() < 40 {
            let (delivery, who) = tokio::select! {
                d = next(&mut one) => (d, 0),
                d = next(&mut two) => (d, 1),
            };
            assert!(seen.insert(delivery.message.message_id.clone()), "delivered twice");
            per_consumer[who] += 1;
            delivery.ack().await.expect("ack");
        }
        assert!(per_consumer.iter().all(|n| *n > 0), "one consumer got nothing: {per_consumer:?}");
    })
    .await;

    case(suite, "subscribing to an undeclared queue is an error", async {
        let bus = make(topology()).await;
        assert!(matches!(bus.subscribe("not.declared", 1).await, Err(BusError::UnknownQueue(_))));
        bus.ping().await.expect("ping");
    })
    .await;
}
