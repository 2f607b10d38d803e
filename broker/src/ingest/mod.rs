//! Where a device's telemetry and events go: the [`Ingest`] port. The front hands it every
//! PUBLISH a device makes on its own `edgewatch/v1/devices/{id}/telemetry` or `.../events` topic
//! and answers PUBACK itself only after the port returned `Ok`, so an acknowledged batch is on the
//! bus with a confirm (DESIGN.md "Delivery guarantees" rule 6). Those messages never reach
//! rumqttd: rumqttd acknowledges from memory and, flooded, drops what its subscribers cannot take.
//!
//! Adapters: [`devices_http::DevicesHttpIngest`] posts to the devices service's HTTP ingest
//! endpoints with the device's own credential (the `edgewatch-broker` binary, run apart from the
//! devices service); `edgewatch up` implements the port in process on
//! `edgewatch_devices::Devices::ingest_mqtt`, the same function the MQTT bridge calls.

pub mod devices_http;

use std::fmt;

use async_trait::async_trait;
use bytes::Bytes;
use edgewatch_protocol::{DeviceId, Topic};

/// Which device -> cloud stream a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IngestKind {
    /// `edgewatch/v1/devices/{id}/telemetry`: a batch of readings.
    Telemetry,
    /// `edgewatch/v1/devices/{id}/events`: a batch of events (forecasts, alert transitions).
    Events,
}

impl IngestKind {
    /// The metric label and the last topic level.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Events => "events",
        }
    }

    /// The kind of `topic` if it is one of `device`'s ingest topics. Only the canonical spelling
    /// of the id counts (the ACL admits nothing else for a device anyway).
    pub fn of_topic(topic: &str, device: DeviceId) -> Option<Self> {
        let leaf = topic.strip_prefix(Topic::device_prefix(device).as_str())?;
        match leaf {
            "telemetry" => Some(Self::Telemetry),
            "events" => Some(Self::Events),
            _ => None,
        }
    }
}

impl fmt::Display for IngestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One message a device published on one of its ingest topics.
#[derive(Clone)]
pub struct Publication {
    pub device: DeviceId,
    pub kind: IngestKind,
    pub payload: Bytes,
    /// The device secret the connection logged in with, for adapters that ingest on the device's
    /// behalf over a channel that checks it (HTTP). Never logged.
    pub secret: String,
}

impl fmt::Debug for Publication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publication")
            .field("device", &self.device)
            .field("kind", &self.kind)
            .field("bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// What became of a message the port took. Both are final, so both are acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// On the bus, confirmed.
    Accepted,
    /// Dropped for good (an invalid batch, another device's batch): acknowledging it stops the
    /// device from sending it forever, as the bridge does. The reason is a metric label.
    Refused(&'static str),
}

/// Why the port could not take a message now. The front does not acknowledge it and closes the
/// connection; the device keeps the batch and sends it again after reconnecting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The bus, the database or the devices service cannot take it now.
    #[error("ingest unavailable: {0}")]
    Unavailable(String),
    /// The device's credential is no longer valid.
    #[error("the device credential was refused")]
    Denied,
}

/// The ingest port: returns only once the message is durable (on the bus with a confirm) or
/// refused for good.
#[async_trait]
pub trait Ingest: Send + Sync + 'static {
    async fn accept(&self, publication: Publication) -> Result<Outcome, IngestError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_devices_own_telemetry_and_events_topics_are_ingest_topics() {
        let (a, b) = (DeviceId::new(), DeviceId::new());
        let kind = |topic: String| IngestKind::of_topic(&topic, a);
        assert_eq!(
            kind(format!("edgewatch/v1/devices/{a}/telemetry")),
            Some(IngestKind::Telemetry)
        );
        assert_eq!(kind(format!("edgewatch/v1/devices/{a}/events")), Some(IngestKind::Events));
        assert_eq!(kind(format!("edgewatch/v1/devices/{a}/status")), None);
        assert_eq!(kind(format!("edgewatch/v1/devices/{a}/telemetry/x")), None);
        assert_eq!(kind(format!("edgewatch/v1/devices/{b}/telemetry")), None);
        let upper = a.to_string().to_uppercase();
        assert_eq!(kind(format!("edgewatch/v1/devices/{upper}/telemetry")), None);
    }
}
