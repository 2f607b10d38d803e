//! MQTT topics (API.md "MQTT topics"). Devices live under `edgewatch/v1/devices/{id}/` and may
//! touch nothing else; local sensors publish `sensors/{sensor_id}/{metric}` to the edge broker.

use std::fmt;

use crate::{DeviceId, MetricName};

/// What the devices service's bridge subscribes to (as a shared subscription when replicated).
pub const TELEMETRY_FILTER: &str = "edgewatch/v1/devices/+/telemetry";
/// What the agent subscribes to on its local broker.
pub const SENSORS_FILTER: &str = "sensors/#";

const DEVICES_PREFIX: &str = "edgewatch/v1/devices/";

/// A topic of the contract.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Device -> cloud, QoS 1, a batch.
    Telemetry(DeviceId),
    /// Device -> cloud, retained, also the will.
    Status(DeviceId),
    /// Cloud -> device, retained, QoS 1.
    Config(DeviceId),
    /// Local sensor -> edge broker.
    Sensor { sensor_id: String, metric: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error(
        "`{0}` is not an edgewatch topic (expected edgewatch/v1/devices/{{id}}/telemetry|status|config or sensors/{{sensor_id}}/{{metric}})"
    )]
    Unknown(String),
    #[error("`{0}` names a device id that is not a UUID in lower-case hyphenated form")]
    BadDeviceId(String),
    #[error("`{0}`: sensor id and metric must be non-empty and free of MQTT wildcards")]
    BadSensor(String),
}

impl Topic {
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        let shown = || crate::ids::truncate(topic);
        if let Some(rest) = topic.strip_prefix(DEVICES_PREFIX) {
            let (id, leaf) = rest.split_once('/').ok_or_else(|| TopicError::Unknown(shown()))?;
            let make: fn(DeviceId) -> Topic = match leaf {
                "telemetry" => Topic::Telemetry,
                "status" => Topic::Status,
                "config" => Topic::Config,
                _ => return Err(TopicError::Unknown(shown())),
            };
            // Only the canonical form: a topic names a device one way, so prefix checks
            // (`edgewatch/v1/devices/{id}/`) cannot be sidestepped with `{ID}` or `{id-without-hyphens}`.
            let parsed = DeviceId::parse(id).map_err(|_| TopicError::BadDeviceId(shown()))?;
            if parsed.to_string() != id {
                return Err(TopicError::BadDeviceId(shown()));
            }
            return Ok(make(parsed));
        }
        if let Some(rest) = topic.strip_prefix("sensors/") {
            let mut parts = rest.split('/');
            return match (parts.next(), parts.next(), parts.next()) {
                (Some(sensor_id), Some(metric), None)
                    if valid_segment(sensor_id) && valid_segment(metric) =>
                {
                    Ok(Topic::Sensor { sensor_id: sensor_id.to_owned(), metric: metric.to_owned() })
                }
                _ => Err(TopicError::BadSensor(shown())),
            };
        }
        Err(TopicError::Unknown(shown()))
    }

    /// The device a device topic belongs to.
    pub fn device_id(&self) -> Option<DeviceId> {
        match self {
            Self::Telemetry(id) | Self::Status(id) | Self::Config(id) => Some(*id),
            Self::Sensor { .. } => None,
        }
    }

    /// The only subtree a device may publish or subscribe under: `edgewatch/v1/devices/{id}/`.
    pub fn device_prefix(id: DeviceId) -> String {
        format!("{DEVICES_PREFIX}{id}/")
    }

    /// The metric a sensor topic feeds: `sensor.<sensor_id>.<metric>`, each part sanitised to
    /// `[a-z0-9_]`, cut to the metric-name limit.
    pub fn sensor_metric_name(&self) -> Option<MetricName> {
        let Self::Sensor { sensor_id, metric } = self else { return None };
        let mut name = format!(
            "sensor.{}.{}",
            MetricName::sanitize_segment(sensor_id),
            MetricName::sanitize_segment(metric)
        );
        name.truncate(crate::metric::MAX_METRIC_NAME_LEN);
        MetricName::parse(name).ok()
    }
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty() && !s.contains(['+', '#'])
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Telemetry(id) => write!(f, "{DEVICES_PREFIX}{id}/telemetry"),
            Self::Status(id) => write!(f, "{DEVICES_PREFIX}{id}/status"),
            Self::Config(id) => write!(f, "{DEVICES_PREFIX}{id}/config"),
            Self::Sensor { sensor_id, metric } => write!(f, "sensors/{sensor_id}/{metric}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_topics_round_trip() {
        let id = DeviceId::new();
        for topic in [Topic::Telemetry(id), Topic::Status(id), Topic::Config(id)] {
            assert_eq!(Topic::parse(&topic.to_string()), Ok(topic.clone()));
            assert_eq!(topic.device_id(), Some(id));
            assert!(topic.to_string().starts_with(&Topic::device_prefix(id)));
        }
        assert_eq!(
            Topic::Telemetry(id).to_string(),
            format!("edgewatch/v1/devices/{id}/telemetry")
        );
    }

    #[test]
    fn sensor_topics_map_to_metric_names() {
        let topic = Topic::parse("sensors/Greenhouse-1/temp_c").unwrap();
        assert_eq!(topic.sensor_metric_name().unwrap().as_str(), "sensor.greenhouse_1.temp_c");
        assert_eq!(topic.to_string(), "sensors/Greenhouse-1/temp_c");
        let long = format!("sensors/{}/x", "a".repeat(300));
        assert_eq!(Topic::parse(&long).unwrap().sensor_metric_name().unwrap().as_str().len(), 128);
    }

    #[test]
    fn rejects_everything_else() {
        let id = DeviceId::new();
        for bad in [
            String::new(),
            "edgewatch/v1/devices/".into(),
            "edgewatch/v1/devices/abc/telemetry".into(),
            format!("edgewatch/v1/devices/{}/telemetry", id.to_string().to_uppercase()),
            format!("edgewatch/v1/devices/{}/telemetry", id.as_uuid().simple()),
            format!("edgewatch/v1/devices/{id}/secrets"),
            format!("edgewatch/v1/devices/{id}/telemetry/extra"),
            "sensors/a".into(),
            "sensors//temp".into(),
            "sensors/a/b/c".into(),
            "sensors/+/temp".into(),
            "other/topic".into(),
        ] {
            assert!(Topic::parse(&bad).is_err(), "{bad}");
        }
    }
}
