//! The service's MQTT clients. [`ConfigPublisher`] publishes each device's config retained,
//! QoS 1, on `edgewatch/v1/devices/{id}/config`, so a device gets its newest config on every
//! (re)connect; its event loop runs in its own task and reconnects with backoff; the registry
//! stays the source of truth (`/config/current` serves it to HTTP-only agents and to devices that
//! missed a push). [`bridge`] is the ingest side: telemetry and status from the broker.

pub mod bridge;

use std::time::Duration;

use edgewatch_common::shutdown::Shutdown;
use edgewatch_protocol::{ConfigMessage, DeviceId, Topic};
use rumqttc::{AsyncClient, MqttOptions, QoS};

#[derive(Clone)]
pub struct ConfigPublisher {
    client: AsyncClient,
}

/// `mqtt://host:port` -> (host, port).
pub(crate) fn parse(url: &str) -> Result<(String, u16), String> {
    let rest =
        url.strip_prefix("mqtt://").ok_or_else(|| format!("`{url}` is not an mqtt:// URL"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "1883"));
    let port = port.parse().map_err(|_| format!("`{url}` has no valid port"))?;
    Ok((host.to_owned(), port))
}

impl ConfigPublisher {
    /// Starts the client; it connects (and reconnects) in the background until `shutdown`.
    pub fn start(
        url: &str,
        credentials: Option<(String, String)>,
        shutdown: Shutdown,
    ) -> Result<Self, String> {
        let (host, port) = parse(url)?;
        let client_id = format!("edgewatch-devices-{}", uuid_suffix());
        let mut options = MqttOptions::new(client_id, host, port);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut events) = AsyncClient::new(options, 256);
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    event = events.poll() => match event {
                        Ok(_) => failures = 0,
                        Err(err) => {
                            failures = failures.saturating_add(1);
                            tracing::warn!(%err, failures, "MQTT connection lost; retrying");
                            let wait = Duration::from_millis(100u64 << failures.min(6));
                            tokio::time::sleep(wait).await;
                        }
                    },
                }
            }
        });
        Ok(Self { client })
    }

    pub async fn publish(&self, device: DeviceId, message: &ConfigMessage) -> Result<(), String> {
        let payload = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        self.client
            .publish(Topic::Config(device).to_string(), QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|e| e.to_string())
    }
}

pub(crate) fn uuid_suffix() -> String {
    DeviceId::new().to_string().chars().rev().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_broker_urls() {
        assert_eq!(parse("mqtt://127.0.0.1:51883").unwrap(), ("127.0.0.1".into(), 51883));
        assert_eq!(parse("mqtt://broker").unwrap(), ("broker".into(), 1883));
        assert!(parse("http://broker").is_err());
        assert!(parse("mqtt://broker:port").is_err());
    }
}
