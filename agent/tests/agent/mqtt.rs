//! The MQTT uplink of a real agent process against Mosquitto (an independent broker): telemetry
//! at QoS 1, the retained status and its will, the retained config pushed by the devices
//! service, and `kill -9` in the middle of it all.

use std::{
    process::{Child, Command},
    sync::{Arc, Mutex},
    time::Duration,
};

use edgewatch_agent::{
    buffer::{Buffer, BufferOptions},
    run,
};
use edgewatch_protocol::{Batch, DeviceId, StatusMessage};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::{
    cloud::{Cloud, broker, eventually, temp_dir},
    e2e::enrolled,
};

#[derive(Default)]
struct Seen {
    seqs: Vec<u64>,
    statuses: Vec<StatusMessage>,
}

/// A subscriber to everything under the device's topics, as the cloud would be.
async fn watch(device: DeviceId) -> Arc<Mutex<Seen>> {
    let (host, port) = broker();
    let mut options = MqttOptions::new(format!("watcher-{}", DeviceId::new()), host, port);
    options.set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client.subscribe(format!("edgewatch/v1/devices/{device}/#"), QoS::AtLeastOnce).await.unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = Arc::clone(&seen);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let mut seen = sink.lock().unwrap();
                    if p.topic.ends_with("/telemetry") {
                        let batch = Batch::from_json(&p.payload).expect("a valid batch");
                        seen.seqs.extend(batch.readings().iter().map(|r| r.seq.get()));
                    } else if p.topic.ends_with("/status") {
                        seen.statuses.push(serde_json::from_slice(&p.payload).expect("a status"));
                    }
                }
                Ok(_) => {}
                Err(err) => panic!("the watcher lost the broker: {err}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.unwrap().unwrap();
    seen
}

fn spawn_agent(dir: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
        .arg("--data-dir")
        .arg(dir)
        .args(["run", "--uplink", "mqtt", "--interval", "0.1"])
        .spawn()
        .unwrap()
}

fn last_status(seen: &Arc<Mutex<Seen>>) -> Option<StatusMessage> {
    seen.lock().unwrap().statuses.last().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_uplink_with_status_will_live_config_and_kill_9() {
    let cloud = Cloud::with_broker().await;
    let dir = temp_dir();
    let device = enrolled(&cloud, &dir).await.device_id;
    let seen = watch(device).await;

    let mut agent = spawn_agent(&dir);
    eventually(Duration::from_secs(20), "telemetry over MQTT", || {
        seen.lock().unwrap().seqs.len() >= 10
    })
    .await;
    eventually(Duration::from_secs(10), "status online", || {
        last_status(&seen).is_some_and(|s| s.online && s.agent_version.is_some())
    })
    .await;

    // The devices service pushes a config (retained); the agent applies it and says so.
    let config = serde_json::json!({"interval_s": 0.2});
    let view = cloud
        .core
        .set_config(&cloud.admin, device, config.as_object().unwrap().clone())
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the config version in the status", || {
        last_status(&seen).is_some_and(|s| s.online && s.config_version == Some(view.version))
    })
    .await;

    agent.kill().unwrap(); // SIGKILL: the broker publishes the will
    agent.wait().unwrap();
    eventually(Duration::from_secs(10), "the will (offline)", || {
        last_status(&seen).is_some_and(|s| !s.online)
    })
    .await;

    let before = seen.lock().unwrap().seqs.len();
    let mut agent = spawn_agent(&dir);
    eventually(Duration::from_secs(20), "telemetry after the restart", || {
        seen.lock().unwrap().seqs.len() >= before + 10
    })
    .await;
    // A clean stop says offline itself.
    let stopped = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(agent.wait().unwrap().success(), "the agent exits cleanly on SIGTERM");
    eventually(Duration::from_secs(10), "status offline after SIGTERM", || {
        last_status(&seen).is_some_and(|s| !s.online)
    })
    .await;

    let buffer = Buffer::open(&run::buffer_path(&dir), BufferOptions::default()).unwrap();
    let stats = buffer.stats().unwrap();
    assert_eq!(stats.config_version, Some(view.version));
    assert!(stats.uploaded_readings > 0, "readings are deleted after their PUBACK");
    let mut pending = Vec::new();
    buffer
        .for_each_pending(|r| {
            pending.push(r.seq.get());
            Ok(())
        })
        .unwrap();
    // At least once: a batch sent just before the kill may arrive twice; none may be missing.
    let mut all = seen.lock().unwrap().seqs.clone();
    all.extend(&pending);
    all.sort_unstable();
    all.dedup();
    assert!(all.windows(2).all(|w| w[0] + 1 == w[1]), "a gap in the seqs: {all:?}");
    assert_eq!(*all.last().unwrap() + 1, stats.next_seq);
}

/// The uplink is part of the remote config: an HTTP agent told to use MQTT switches without a
/// restart (it learns the config by polling), and back again (it learns that one over MQTT).
/// Every seq reaches the cloud by one way or the other; none is lost in a switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_config_switches_the_uplink_live_both_ways() {
    let cloud = Cloud::with_broker().await;
    let dir = temp_dir();
    let device = enrolled(&cloud, &dir).await.device_id;
    let seen = watch(device).await;
    let mqtt_seqs = || seen.lock().unwrap().seqs.clone();

    let mut agent = Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["run", "--uplink", "http", "--interval", "0.1", "--config-poll", "0.2"])
        .spawn()
        .unwrap();
    eventually(Duration::from_secs(20), "telemetry over HTTP", || {
        cloud.seqs_of(device).len() >= 10
    })
    .await;
    assert!(mqtt_seqs().is_empty(), "an HTTP agent publishes nothing");

    let set = |uplink: &str| {
        let config = serde_json::json!({ "uplink": uplink });
        let config = config.as_object().unwrap().clone();
        let core = cloud.core.clone();
        let admin = cloud.admin.clone();
        async move { core.set_config(&admin, device, config).await.unwrap().version }
    };
    let to_mqtt = set("mqtt").await;
    eventually(Duration::from_secs(20), "telemetry over MQTT after the switch", || {
        mqtt_seqs().len() >= 10
    })
    .await;
    eventually(Duration::from_secs(10), "the MQTT status with the config version", || {
        last_status(&seen).is_some_and(|s| s.online && s.config_version == Some(to_mqtt))
    })
    .await;

    set("http").await;
    // Leaving MQTT, the session says goodbye; then HTTP carries seqs MQTT never saw.
    eventually(Duration::from_secs(20), "status offline as the agent leaves MQTT", || {
        last_status(&seen).is_some_and(|s| !s.online)
    })
    .await;
    let last_over_mqtt = mqtt_seqs().into_iter().max().unwrap();
    eventually(Duration::from_secs(20), "telemetry over HTTP again", || {
        cloud.seqs_of(device).iter().filter(|s| **s > last_over_mqtt).count() >= 10
    })
    .await;
    assert!(agent.try_wait().unwrap().is_none(), "the agent kept running through both switches");

    let stopped = Command::new("kill").args(["-TERM", &agent.id().to_string()]).status().unwrap();
    assert!(stopped.success());
    assert!(agent.wait().unwrap().success());
    let buffer = Buffer::open(&run::buffer_path(&dir), BufferOptions::default()).unwrap();
    let mut all = cloud.seqs_of(device);
    all.extend(mqtt_seqs());
    buffer
        .for_each_pending(|r| {
            all.push(r.seq.get());
            Ok(())
        })
        .unwrap();
    all.sort_unstable();
    all.dedup();
    assert!(all.windows(2).all(|w| w[0] + 1 == w[1]), "a gap in the seqs: {all:?}");
    assert_eq!(*all.last().unwrap() + 1, buffer.stats().unwrap().next_seq);
}
