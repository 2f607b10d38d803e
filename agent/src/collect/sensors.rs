//! Local sensors: readings that sensors publish to a broker on the device or the LAN under
//! `sensors/{sensor_id}/{metric}` (a number, or `{value, ts?}`), stored as
//! `sensor.<sensor_id>.<metric>`.
//!
//! The subscription is QoS 1 with manual acknowledgements in a persistent session: a message is
//! acknowledged to the broker only after its reading is committed to the buffer, so a crash or a
//! full disk leaves it with the broker, which delivers it again. Messages arriving together
//! (up to [`GROUP`] of them, or for [`LINGER`]) share one transaction, and so one fsync.

use std::{sync::Arc, time::Duration};

use edgewatch_protocol::{MetricName, SensorValue, Tags, Timestamp, Topic};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish, QoS};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    AgentError, Result,
    buffer::{NewReading, SharedBuffer},
    uplink::backoff::Backoff,
};

/// The most sensor messages stored in one transaction.
pub const GROUP: usize = 500;
/// How long the first message of a group waits for company.
pub const LINGER: Duration = Duration::from_millis(50);

/// Where the sensors publish: `mqtt://host:port`, and the client id of the agent's persistent
/// session there.
#[derive(Debug, Clone)]
pub struct SensorSource {
    pub url: String,
    pub client_id: String,
}

/// Where the sensor broker is: `mqtt://[user:password@]host[:port]` (port 1883 by default).
struct BrokerAddress {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

fn broker_address(url: &str) -> Result<BrokerAddress> {
    let rest = url.strip_prefix("mqtt://").ok_or_else(|| {
        AgentError::Config(format!(
            "sensor broker {url:?}: expected mqtt://host:port or mqtt://user:password@host:port"
        ))
    })?;
    let rest = rest.trim_end_matches('/');
    let (credentials, rest) = match rest.rsplit_once('@') {
        Some((userinfo, address)) => {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            (Some((user.to_owned(), password.to_owned())), address)
        }
        None => (None, rest),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host.to_owned(),
            port.parse()
                .map_err(|_| AgentError::Config(format!("sensor broker port in {url:?}")))?,
        ),
        None => (rest.to_owned(), 1883),
    };
    Ok(BrokerAddress { host, port, credentials })
}

/// The reading of one sensor message, or why it is skipped.
pub fn reading_of(topic: &str, payload: &[u8]) -> std::result::Result<NewReading, String> {
    let topic = Topic::parse(topic).map_err(|e| e.to_string())?;
    let name = topic.sensor_metric_name().ok_or("not a sensor topic")?;
    let value = SensorValue::parse(payload).map_err(|e| e.to_string())?;
    let mut tags = Tags::new();
    if let Ok(key) = MetricName::parse("source") {
        tags.insert(key, "sensor".into());
    }
    Ok(NewReading {
        ts: value.ts.unwrap_or_else(Timestamp::now),
        metrics: [(name, value.value)].into(),
        tags,
    })
}

/// Subscribes to `sensors/#` at `source` and stores what arrives, until `shutdown`.
pub async fn run(
    source: SensorSource,
    buffer: SharedBuffer,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) -> Result<()> {
    let address = broker_address(&source.url)?;
    let mut options = MqttOptions::new(source.client_id, address.host, address.port);
    if let Some((user, password)) = address.credentials {
        options.set_credentials(user, password);
    }
    options.set_clean_session(false).set_manual_acks(true).set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 256);
    let (tx, mut rx) = mpsc::channel::<Publish>(GROUP * 2);
    let poller_stop = shutdown.clone();
    let subscriber = client.clone();
    let poller = tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                () = poller_stop.cancelled() => return,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    tracing::info!("Connected to the sensor broker");
                    if let Err(err) = subscriber
                        .try_subscribe(edgewatch_protocol::SENSORS_FILTER, QoS::AtLeastOnce)
                    {
                        tracing::warn!(%err, "Cannot subscribe to sensors/#");
                    }
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if tx.send(publish).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(err) => {
                    let wait = backoff.next_delay();
                    tracing::warn!(%err, retry_in_ms = wait.as_millis() as u64, "Sensor broker unreachable");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = poller_stop.cancelled() => return,
                    }
                }
            }
        }
    });
    loop {
        let first = tokio::select! {
            message = rx.recv() => match message { Some(m) => m, None => break },
            () = shutdown.cancelled() => break,
        };
        let mut group = vec![first];
        let deadline = tokio::time::Instant::now() + LINGER;
        while group.len() < GROUP {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(message)) => group.push(message),
                _ => break,
            }
        }
        let readings: Vec<NewReading> = group
            .iter()
            .filter_map(|p| match reading_of(&p.topic, &p.payload) {
                Ok(reading) => Some(reading),
                Err(why) => {
                    tracing::warn!(topic = %p.topic, %why, "Skipping a sensor message");
                    None
                }
            })
            .collect();
        // Acknowledged only once stored. A broker redelivers an unacknowledged message only after
        // a reconnect, so a failed append (a full disk, a locked file) is retried here with
        // backoff rather than left in flight, where it would also hold a slot of the broker's
        // in-flight window.
        let mut retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            let attempt = readings.clone();
            match buffer.with(move |b| b.append(attempt)).await {
                Ok(_) => break,
                Err(err) => {
                    let wait = retry.next_delay();
                    tracing::error!(%err, messages = group.len(), retry_in_ms = wait.as_millis() as u64,
                        "Cannot store sensor readings");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        // Unacknowledged: the broker delivers them again to the next session.
                        () = shutdown.cancelled() => return finish(client, poller).await,
                    }
                }
            }
        }
        wake.notify_one();
        for publish in &group {
            if let Err(err) = client.ack(publish).await {
                tracing::warn!(%err, "Cannot acknowledge a sensor message");
            }
        }
    }
    finish(client, poller).await
}

async fn finish(client: AsyncClient, poller: tokio::task::JoinHandle<()>) -> Result<()> {
    let _ = client.try_disconnect();
    let _ = poller.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_map_to_sensor_readings() {
        let bare = reading_of("sensors/Greenhouse-1/temp_c", b" 21.5 ").unwrap();
        assert_eq!(bare.metrics.keys().next().unwrap().as_str(), "sensor.greenhouse_1.temp_c");
        assert_eq!(bare.metrics.values().next(), Some(&21.5));
        let timed = reading_of(
            "sensors/soil/moisture",
            br#"{"value": 0.4, "ts": "2026-11-27T00:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(timed.ts, Timestamp::parse("2026-11-27T00:00:00.000Z").unwrap());
        assert!(reading_of("sensors/soil/moisture", b"wet").is_err());
        assert!(reading_of("sensors/soil", b"1").is_err());
        assert!(reading_of("sensors/soil/moisture", b"NaN").is_err());
        let plain = broker_address("mqtt://127.0.0.1:51883").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.credentials),
            ("127.0.0.1", 51883, None)
        );
        let default_port = broker_address("mqtt://broker.local").unwrap();
        assert_eq!((default_port.host.as_str(), default_port.port), ("broker.local", 1883));
        let with_login = broker_address("mqtt://agent:s3cr:et@gw.local:1884/").unwrap();
        assert_eq!((with_login.host.as_str(), with_login.port), ("gw.local", 1884));
        assert_eq!(with_login.credentials, Some(("agent".into(), "s3cr:et".into())));
        assert!(broker_address("http://x").is_err());
    }
}
