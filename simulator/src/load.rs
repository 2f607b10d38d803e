//! Load mode: N publishers -> 1 subscriber through a broker, for comparing brokers.
//!
//! Every payload starts with the send time (microseconds since the run started, 8 bytes big
//! endian) and is padded to the requested size, so the subscriber, in the same process, measures
//! end-to-end latency (publish call to delivery, including client queues) without clock skew.
//! Reported: the achieved publish rate, the acknowledged rate (PUBACKs), the delivered rate and
//! latency percentiles. Also [`hold_idle`]: open N idle connections, for memory per connection.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{Broker, SimError};

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub broker: Broker,
    pub publishers: usize,
    pub payload_bytes: usize,
    pub qos: QoS,
    /// How long the publishers publish.
    pub duration: Duration,
    /// Messages a second per publisher; `None`: as fast as the broker acknowledges.
    pub rate_per_publisher: Option<f64>,
    /// Topics are `{prefix}/{publisher}`; the subscriber takes `{prefix}/#`.
    pub topic_prefix: String,
    /// Unacknowledged QoS 1 messages per publisher.
    pub inflight: u16,
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub sent: u64,
    pub acked: u64,
    pub received: u64,
    /// From the first publish to the last publish call.
    pub publish_window: Duration,
    /// From the first publish to the last delivery.
    pub delivery_window: Duration,
    /// Sorted end-to-end latencies, microseconds.
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn sent_per_s(&self) -> f64 {
        self.sent as f64 / self.publish_window.as_secs_f64().max(1e-9)
    }

    pub fn acked_per_s(&self) -> f64 {
        self.acked as f64 / self.delivery_window.as_secs_f64().max(1e-9)
    }

    pub fn delivered_per_s(&self) -> f64 {
        self.received as f64 / self.delivery_window.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency (0..=100), milliseconds.
    pub fn latency_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[rank.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }

    /// One line for humans and scripts (`key=value` pairs).
    pub fn summary(&self) -> String {
        format!(
            "sent={} acked={} delivered={} sent_per_s={:.0} acked_per_s={:.0} delivered_per_s={:.0} p50_ms={:.2} p90_ms={:.2} p99_ms={:.2} max_ms={:.2}",
            self.sent,
            self.acked,
            self.received,
            self.sent_per_s(),
            self.acked_per_s(),
            self.delivered_per_s(),
            self.latency_ms(50.0),
            self.latency_ms(90.0),
            self.latency_ms(99.0),
            self.latency_ms(100.0),
        )
    }
}

fn options(broker: &Broker, client_id: String, inflight: u16) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, &broker.host, broker.port);
    options.set_keep_alive(Duration::from_secs(30)).set_inflight(inflight.max(1));
    if let (Some(user), Some(password)) = (&broker.username, &broker.password) {
        options.set_credentials(user, password);
    }
    options
}

/// Runs the load; `progress` is called about every 5 s with (elapsed, sent, received).
pub async fn run_load(
    opts: &LoadOptions,
    progress: impl Fn(Duration, u64, u64) + Send + 'static,
) -> Result<LoadReport, SimError> {
    if opts.payload_bytes < 8 {
        return Err(SimError::Options("payload_bytes must be at least 8 (the timestamp)".into()));
    }
    let base = Instant::now();
    let sent = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));

    // The subscriber first, subscribed before anyone publishes.
    let run = format!("{:08x}", std::process::id() ^ (base.elapsed().as_nanos() as u32));
    let (sub, mut sub_events) =
        AsyncClient::new(options(&opts.broker, format!("load-sub-{run}"), 1000), 10_000);
    let filter = format!("{}/#", opts.topic_prefix);
    sub.subscribe(&filter, opts.qos).await.map_err(|e| SimError::Mqtt(e.to_string()))?;
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    let received = Arc::new(AtomicU64::new(0));
    let last_delivery = Arc::new(AtomicU64::new(0));
    let sub_task = {
        let (received, last_delivery) = (received.clone(), last_delivery.clone());
        tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            let mut latencies = Vec::with_capacity(1 << 20);
            loop {
                match sub_events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(Ok(()));
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let now = base.elapsed().as_micros() as u64;
                        if let Some(stamp) = p.payload.get(..8) {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(stamp);
                            latencies.push(now.saturating_sub(u64::from_be_bytes(b)));
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        last_delivery.store(now, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(err) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(Err(err.to_string()));
                        }
                        return latencies;
                    }
                }
            }
        })
    };
    match tokio::time::timeout(Duration::from_secs(15), subscribed).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => return Err(SimError::Mqtt(format!("subscriber: {err}"))),
        _ => return Err(SimError::Mqtt("the subscriber got no SUBACK within 15 s".into())),
    }

    let stop = CancellationToken::new();
    let start = base.elapsed();
    let mut publishers = Vec::new();
    for n in 0..opts.publishers {
        let (client, mut events) = AsyncClient::new(
            options(&opts.broker, format!("load-pub-{run}-{n}"), opts.inflight),
            64,
        );
        let acked = acked.clone();
        let poller = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        let (sent, stop, opts) = (sent.clone(), stop.clone(), opts.clone());
        let publisher = tokio::spawn(async move {
            let topic = format!("{}/{n}", opts.topic_prefix);
            let pause = opts.rate_per_publisher.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-3)));
            let mut payload = vec![0u8; opts.payload_bytes];
            while !stop.is_cancelled() {
                let stamp = base.elapsed().as_micros() as u64;
                payload[..8].copy_from_slice(&stamp.to_be_bytes());
                tokio::select! {
                    () = stop.cancelled() => break,
                    r = client.publish(&topic, opts.qos, false, payload.clone()) => if r.is_err() { break },
                }
                sent.fetch_add(1, Ordering::Relaxed);
                if let Some(pause) = pause {
                    tokio::time::sleep(pause).await;
                }
            }
            client
        });
        publishers.push((publisher, poller));
    }

    let deadline = Instant::now() + opts.duration;
    let progress_every = Duration::from_secs(5);
    let mut next_progress = Instant::now() + progress_every;
    while Instant::now() < deadline {
        tokio::time::sleep_until(deadline.min(next_progress)).await;
        if Instant::now() >= next_progress {
            progress(
                base.elapsed() - start,
                sent.load(Ordering::Relaxed),
                received.load(Ordering::Relaxed),
            );
            next_progress += progress_every;
        }
    }
    stop.cancel();
    let publish_window = base.elapsed() - start;
    let mut clients = Vec::new();
    for (publisher, _) in &mut publishers {
        if let Ok(client) = publisher.await {
            clients.push(client);
        }
    }
    // Let what is in flight arrive: until every sent message is delivered (QoS 1) or nothing
    // more arrives for a second.
    let sent_total = sent.load(Ordering::Relaxed);
    let mut last = received.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    while received.load(Ordering::Relaxed) < sent_total
        && quiet_since.elapsed() < Duration::from_secs(1)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = received.load(Ordering::Relaxed);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    // And the last PUBACKs (QoS 1), which can trail the deliveries.
    if opts.qos == QoS::AtLeastOnce {
        let deadline = Instant::now() + Duration::from_secs(1);
        while acked.load(Ordering::Relaxed) < sent_total && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for client in &clients {
        let _ = client.disconnect().await;
    }
    for (_, poller) in publishers {
        poller.abort();
    }
    let _ = sub.disconnect().await;
    let mut latencies_us = tokio::time::timeout(Duration::from_secs(5), sub_task)
        .await
        .map_err(|_| SimError::Mqtt("the subscriber did not stop".into()))?
        .map_err(|e| SimError::Mqtt(e.to_string()))?;
    latencies_us.sort_unstable();
    let delivered_until = Duration::from_micros(last_delivery.load(Ordering::Relaxed));
    Ok(LoadReport {
        sent: sent_total,
        acked: acked.load(Ordering::Relaxed),
        received: received.load(Ordering::Relaxed),
        publish_window,
        delivery_window: delivered_until.saturating_sub(start).max(publish_window),
        latencies_us,
    })
}

/// Opens `count` idle connections and keeps them until `shutdown`; returns how many connected.
/// `on_ready` is called once all have their CONNACK (or failed).
pub async fn hold_idle(
    broker: &Broker,
    count: usize,
    on_ready: impl FnOnce(usize),
    shutdown: CancellationToken,
) -> Result<usize, SimError> {
    let connected = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let run = format!("{:08x}", std::process::id());
    for n in 0..count {
        let mut options = options(broker, format!("idle-{run}-{n}"), 10);
        options.set_keep_alive(Duration::from_secs(60));
        let (client, mut events) = AsyncClient::new(options, 4);
        let (connected, failed, shutdown) = (connected.clone(), failed.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            let _client = client;
            let mut counted = false;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = events.poll() => match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) if !counted => {
                            counted = true;
                            connected.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => {
                            if !counted {
                                failed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    },
                }
            }
        }));
        // Do not stampede the accept queue.
        if n % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while (connected.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)) < count as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = connected.load(Ordering::Relaxed) as usize;
    on_ready(ok);
    shutdown.cancelled().await;
    for task in tasks {
        let _ = task.await;
    }
    Ok(ok)
}
