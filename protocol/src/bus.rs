//! The bus contract (API.md "Bus"): the `edgewatch` topic exchange, its routing keys and the
//! bodies of device events. `devices` publishes, `monitoring` consumes; both name things only
//! through this module so that the two sides cannot drift.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::{DeviceId, Seq, Timestamp, UserId};

/// The topic exchange every event goes to (durable).
pub const EXCHANGE: &str = "edgewatch";
/// Where poison messages go: a fanout exchange, so each queue's dead letters keep their key.
pub const DLX_EXCHANGE: &str = "edgewatch.dlx";
/// Monitoring's durable queue, bound to `telemetry.*`.
pub const MONITORING_QUEUE: &str = "monitoring.telemetry";
/// Monitoring's durable queue for device events, bound to `device.*` (fleet status push). The
/// devices service declares it too, so that no `device.*` event is published before a queue holds it.
pub const DEVICE_EVENTS_QUEUE: &str = "monitoring.devices";

/// A routing key of the `edgewatch` exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingKey {
    /// `telemetry.<device_id>`; the body is a [`crate::Batch`].
    Telemetry(DeviceId),
    /// `device.created`; the body is a [`DeviceRecord`].
    DeviceCreated,
    /// `device.updated`; the body is a [`DeviceRecord`].
    DeviceUpdated,
    /// `device.deleted`; the body is a [`DeviceRecord`].
    DeviceDeleted,
    /// `device.status`; the body is a [`StatusEvent`].
    DeviceStatus,
}

impl RoutingKey {
    /// The binding pattern that matches every telemetry key.
    pub const ALL_TELEMETRY: &'static str = "telemetry.*";
    /// The binding pattern that matches every device event.
    pub const ALL_DEVICE_EVENTS: &'static str = "device.*";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a routing key of the edgewatch exchange")]
pub struct RoutingKeyError(String);

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Telemetry(id) => write!(f, "telemetry.{id}"),
            Self::DeviceCreated => f.write_str("device.created"),
            Self::DeviceUpdated => f.write_str("device.updated"),
            Self::DeviceDeleted => f.write_str("device.deleted"),
            Self::DeviceStatus => f.write_str("device.status"),
        }
    }
}

impl FromStr for RoutingKey {
    type Err = RoutingKeyError;
    fn from_str(s: &str) -> Result<Self, RoutingKeyError> {
        let err = || RoutingKeyError(crate::ids::truncate(s));
        match s {
            "device.created" => Ok(Self::DeviceCreated),
            "device.updated" => Ok(Self::DeviceUpdated),
            "device.deleted" => Ok(Self::DeviceDeleted),
            "device.status" => Ok(Self::DeviceStatus),
            _ => s
                .strip_prefix("telemetry.")
                .and_then(|id| DeviceId::parse(id).ok())
                .map(Self::Telemetry)
                .ok_or_else(err),
        }
    }
}

/// The `message_id` of a telemetry message: `<device_id>:<seq>` of its first reading, which makes
/// a republished batch recognisable as the same message.
pub fn telemetry_message_id(device_id: DeviceId, first_seq: Seq) -> String {
    format!("{device_id}:{first_seq}")
}

/// A device's connectivity as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    NeverSeen,
    Online,
    Offline,
}

/// Where a device is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

/// The device object of API.md, as the registry serves it and as `device.*` events carry it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub name: String,
    pub kind: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub location: Option<Location>,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub owner_id: UserId,
    pub status: DeviceStatus,
    pub last_seen_at: Option<Timestamp>,
    pub config_version: u64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The body of `device.status`, and of the Socket.IO `status` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEvent {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub ts: Timestamp,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn routing_keys_round_trip() {
        let id = DeviceId::new();
        for key in [
            RoutingKey::Telemetry(id),
            RoutingKey::DeviceCreated,
            RoutingKey::DeviceUpdated,
            RoutingKey::DeviceDeleted,
            RoutingKey::DeviceStatus,
        ] {
            assert_eq!(key.to_string().parse::<RoutingKey>(), Ok(key));
        }
        assert_eq!(RoutingKey::Telemetry(id).to_string(), format!("telemetry.{id}"));
        for bad in ["telemetry.", "telemetry.abc", "device.exploded", "", "telemetry.*"] {
            assert!(bad.parse::<RoutingKey>().is_err(), "{bad}");
        }
    }

    #[test]
    fn message_id_names_device_and_first_seq() {
        let id = DeviceId::parse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").unwrap();
        assert_eq!(
            telemetry_message_id(id, Seq::new(41).unwrap()),
            "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b:41"
        );
    }

    #[test]
    fn device_record_has_the_contract_shape() {
        let ts = Timestamp::parse("2026-11-26T20:00:00.000Z").unwrap();
        let record = DeviceRecord {
            id: DeviceId::new(),
            name: "greenhouse".into(),
            kind: Some("pi4".into()),
            tags: vec!["north".into()],
            location: Some(Location { lat: 47.6, lon: -122.3 }),
            metadata: serde_json::Map::new(),
            owner_id: UserId::new(),
            status: DeviceStatus::NeverSeen,
            last_seen_at: None,
            config_version: 0,
            created_at: ts,
            updated_at: ts,
        };
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value["status"], json!("never_seen"));
        assert_eq!(value["last_seen_at"], json!(null));
        assert_eq!(value["created_at"], json!("2026-11-26T20:00:00.000Z"));
        assert_eq!(serde_json::from_value::<DeviceRecord>(value).unwrap(), record);
    }
}
