//! The simulator's MQTT client: rumqttc with its event loop polled in its own task (it
//! reconnects by itself on the next poll; we back off a second between failures), PUBACKs
//! counted into the run's [`Stats`].

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use rumqttc::{AsyncClient, ConnectionError, Event, LastWill, MqttOptions, Packet, QoS};

use crate::{SimError, Stats};

/// A broker to publish to.
#[derive(Debug, Clone)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Broker {
    /// Parses `mqtt://host:port` (port 1883 when omitted).
    pub fn parse(url: &str) -> Result<Self, SimError> {
        let rest = url
            .strip_prefix("mqtt://")
            .ok_or_else(|| SimError::Options(format!("`{url}` is not an mqtt://host:port URL")))?;
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
        let port = port
            .trim_end_matches('/')
            .parse()
            .map_err(|_| SimError::Options(format!("`{url}` has no valid port")))?;
        Ok(Self { host: host.to_owned(), port, username: None, password: None })
    }
}

pub(crate) struct Client {
    client: AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

/// Connects and waits for the CONNACK; a refusal is an error that says which.
pub(crate) async fn connect(
    broker: &Broker,
    client_id: &str,
    will: Option<LastWill>,
    stats: Arc<Stats>,
) -> Result<Client, SimError> {
    let mut options = MqttOptions::new(client_id, &broker.host, broker.port);
    options.set_keep_alive(Duration::from_secs(30)).set_max_packet_size(2 << 20, 2 << 20);
    if let (Some(user), Some(password)) = (&broker.username, &broker.password) {
        options.set_credentials(user, password);
    }
    if let Some(will) = will {
        options.set_last_will(will);
    }
    let (client, mut events) = AsyncClient::new(options, 1024);
    let (first_tx, first) = tokio::sync::oneshot::channel();
    let target = format!("{}:{}", broker.host, broker.port);
    let task = tokio::spawn(async move {
        let mut first_tx = Some(first_tx);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(err) => {
                    if let Some(tx) = first_tx.take() {
                        let _ = tx.send(Err(err));
                        return;
                    }
                    if matches!(err, ConnectionError::RequestsDone) {
                        return;
                    }
                    tracing::warn!(%err, "MQTT connection lost; reconnecting in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    match tokio::time::timeout(Duration::from_secs(15), first).await {
        Ok(Ok(Ok(()))) => Ok(Client { client, task }),
        Ok(Ok(Err(err))) => Err(SimError::Mqtt(format!("cannot connect to {target}: {err}"))),
        _ => Err(SimError::Mqtt(format!("no answer from {target} within 15 s"))),
    }
}

impl Client {
    /// Publishes at QoS 1 (counted as sent; the PUBACK counts as acked).
    pub(crate) async fn publish(&self, topic: &str, payload: Vec<u8>, stats: &Stats) {
        stats.sent.fetch_add(1, Ordering::Relaxed);
        if self.client.publish(topic, QoS::AtLeastOnce, false, payload).await.is_err() {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) async fn publish_retained(&self, topic: &str, payload: Vec<u8>) {
        let _ = self.client.publish(topic, QoS::AtLeastOnce, true, payload).await;
    }

    /// Disconnects after the queued messages had a moment to go out.
    pub(crate) async fn close(self) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = self.client.disconnect().await;
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(2), &mut task).await.is_err() {
            task.abort();
        }
    }
}
