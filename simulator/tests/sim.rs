//! The simulator against a real edgewatch broker: identical replays for the same seed, device
//! batches that the protocol crate accepts, and a load run whose numbers add up.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use edgewatch_broker::{
    Account, AccountRole, AuthError, Authenticator, BrokerConfig, Identity, Login, MqttListener,
    Role,
};
use edgewatch_protocol::{Batch, DeviceId, StatusMessage};
use edgewatch_simulator::{
    Broker, Clock, DeviceCredential, DeviceTarget, SimOptions, Stats,
    load::{LoadOptions, run_load},
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

const T0: i64 = 1_795_000_000_000;

fn config(role: Role) -> BrokerConfig {
    let account = |username: &str, role, publish: &[&str], subscribe: &[&str]| Account {
        username: username.into(),
        password: "pw".into(),
        role,
        publish: publish.iter().map(|s| (*s).to_owned()).collect(),
        subscribe: subscribe.iter().map(|s| (*s).to_owned()).collect(),
    };
    BrokerConfig {
        role,
        mqtt: Some(MqttListener { listen: "127.0.0.1:0".parse().unwrap() }),
        http: None,
        accounts: vec![
            account("sensor", AccountRole::Sensor, &[], &[]),
            account("reader", AccountRole::Custom, &[], &["#"]),
            account("bench", AccountRole::Custom, &["bench/#"], &["bench/#"]),
        ],
        ..BrokerConfig::default()
    }
}

/// Any device id whose password is "secret-" + id: enough to run the cloud role without the
/// devices service (the broker's own tests use the real one).
struct TestDevices;

#[async_trait]
impl Authenticator for TestDevices {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        let id = DeviceId::parse(&login.username).map_err(|_| AuthError::UnknownUser)?;
        if login.password == format!("secret-{id}") {
            Ok(Identity::Device(id))
        } else {
            Err(AuthError::Denied)
        }
    }
}

async fn broker(role: Role) -> (Broker, CancellationToken) {
    let config = config(role);
    let statics = edgewatch_broker::Accounts::new(config.accounts.clone());
    let auth: Arc<dyn Authenticator> =
        Arc::new(edgewatch_broker::Chain(vec![Arc::new(statics), Arc::new(TestDevices)]));
    let shutdown = CancellationToken::new();
    let handle = edgewatch_broker::start(config, auth, None, shutdown.clone()).await.unwrap();
    let addr = handle.mqtt_addr.unwrap();
    let broker =
        Broker { host: addr.ip().to_string(), port: addr.port(), username: None, password: None };
    (broker, shutdown)
}

/// Subscribes as `reader` to `filter`; messages arrive on the channel.
async fn reader(broker: &Broker, filter: &str) -> mpsc::UnboundedReceiver<Publish> {
    let mut options =
        MqttOptions::new(format!("reader-{}", DeviceId::new()), &broker.host, broker.port);
    options.set_credentials("reader", "pw");
    let (client, mut events) = AsyncClient::new(options, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => drop(tx.send(p)),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.unwrap().unwrap();
    rx
}

async fn take(rx: &mut mpsc::UnboundedReceiver<Publish>, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("the simulator keeps publishing")
            .unwrap();
        out.push((p.topic.clone(), p.payload.to_vec()));
    }
    out
}

#[tokio::test]
async fn the_same_seed_publishes_the_same_values() {
    let (mut broker, _stop) = broker(Role::Edge).await;
    let mut rx = reader(&broker, "sensors/#").await;
    broker.username = Some("sensor".into());
    broker.password = Some("pw".into());
    let mut runs = Vec::new();
    for seed in [5, 5, 6] {
        let options = SimOptions {
            seed,
            interval: Duration::from_millis(5),
            clock: Clock::From(T0),
            ..SimOptions::default()
        };
        let shutdown = CancellationToken::new();
        let (b, s) = (broker.clone(), shutdown.clone());
        let sensor = tokio::spawn(async move {
            edgewatch_simulator::run_sensor(&b, 3, &options, Arc::new(Stats::default()), s).await
        });
        runs.push(take(&mut rx, 40).await);
        shutdown.cancel();
        sensor.await.unwrap().unwrap();
        // Drain what was in flight when it stopped.
        while tokio::time::timeout(Duration::from_millis(300), rx.recv()).await.is_ok() {}
    }
    assert_eq!(runs[0], runs[1], "seed 5 twice");
    assert_ne!(runs[0], runs[2], "seed 6 differs");
    assert!(runs[0].iter().all(|(topic, _)| topic.starts_with("sensors/sim-0003/")));
    assert!(runs[0].iter().all(|(_, v)| std::str::from_utf8(v).unwrap().parse::<f64>().is_ok()));
}

#[tokio::test]
async fn a_simulated_device_sends_valid_batches_and_its_status() {
    let (broker, _stop) = broker(Role::Cloud).await;
    let id = DeviceId::new();
    let mut rx = reader(&broker, &format!("edgewatch/v1/devices/{id}/#")).await;
    let device = DeviceCredential { id, secret: format!("secret-{id}") };
    let options = SimOptions {
        interval: Duration::from_millis(20),
        clock: Clock::From(T0),
        ..SimOptions::default()
    };
    let stats = Arc::new(Stats::default());
    let shutdown = CancellationToken::new();
    let run = {
        let (stats, shutdown, target) =
            (stats.clone(), shutdown.clone(), DeviceTarget::Mqtt(broker.clone()));
        tokio::spawn(async move {
            edgewatch_simulator::run_device(&target, &device, 0, &options, stats, shutdown).await
        })
    };
    let messages = take(&mut rx, 6).await;
    shutdown.cancel();
    run.await.unwrap().unwrap();
    let (status_topic, status) = &messages[0];
    assert_eq!(status_topic, &format!("edgewatch/v1/devices/{id}/status"));
    assert!(serde_json::from_slice::<StatusMessage>(status).unwrap().online);
    let mut last_seq = 0;
    for (topic, body) in &messages[1..] {
        assert_eq!(topic, &format!("edgewatch/v1/devices/{id}/telemetry"));
        let batch = Batch::from_json(body).expect("a batch the devices service accepts");
        assert_eq!(batch.device_id(), id);
        let seq = batch.first_seq().get();
        assert!(seq > last_seq, "seq increases");
        last_seq = seq;
    }
    let (sent, acked, _, errors) = stats.get();
    assert!(sent >= 5 && errors == 0, "sent {sent}, errors {errors}");
    assert!(acked >= 5, "PUBACKs counted: {acked}");
}

#[tokio::test]
async fn a_load_run_delivers_and_acknowledges_what_it_sent() {
    let (broker, _stop) = broker(Role::Edge).await;
    let opts = LoadOptions {
        broker: Broker { username: Some("bench".into()), password: Some("pw".into()), ..broker },
        publishers: 5,
        payload_bytes: 64,
        qos: QoS::AtLeastOnce,
        duration: Duration::from_secs(1),
        rate_per_publisher: Some(200.0),
        topic_prefix: "bench".into(),
        inflight: 20,
    };
    let report = run_load(&opts, |_, _, _| {}).await.unwrap();
    assert!(report.sent > 100, "{}", report.summary());
    assert_eq!(report.received, report.sent, "{}", report.summary());
    assert_eq!(report.acked, report.sent, "{}", report.summary());
    assert_eq!(report.latencies_us.len() as u64, report.received);
    assert!(report.latency_ms(99.0) < 1000.0, "{}", report.summary());
    // The rate is what was asked for (5 x 200/s), not more.
    assert!(report.sent_per_s() < 1100.0, "{}", report.summary());
}
