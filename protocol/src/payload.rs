//! MQTT payloads other than batches: a device's status (retained, and its will), the config the
//! cloud pushes (retained), and what a local sensor publishes.

use serde::{Deserialize, Serialize};

use crate::Timestamp;

/// `edgewatch/v1/devices/{id}/status`: `{online, ts, agent_version?, config_version?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusMessage {
    pub online: bool,
    pub ts: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_version: Option<u64>,
}

/// `edgewatch/v1/devices/{id}/config`: `{version, config}`; `config` is always a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigMessage {
    pub version: u64,
    pub config: serde_json::Map<String, serde_json::Value>,
}

/// One sensor value: `sensors/{sensor_id}/{metric}` carries a bare number or `{value, ts?}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SensorValue {
    pub value: f64,
    /// When the sensor took it, if it says; the agent uses its own clock otherwise.
    pub ts: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("expected a number or {{\"value\": number, \"ts\"?: RFC 3339 time}}: {0}")]
    BadSensorValue(String),
    #[error("the value must be a finite number")]
    NotFinite,
}

impl SensorValue {
    /// Parses a sensor payload. Surrounding white space is allowed (`mosquitto_pub -m " 21.5 "`).
    pub fn parse(payload: &[u8]) -> Result<Self, PayloadError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Bare(f64),
            Object { value: f64, ts: Option<Timestamp> },
        }
        let wire: Wire = serde_json::from_slice(payload).map_err(|e| {
            let message = e.to_string();
            PayloadError::BadSensorValue(crate::ids::truncate(&message))
        })?;
        let parsed = match wire {
            Wire::Bare(value) => Self { value, ts: None },
            Wire::Object { value, ts } => Self { value, ts },
        };
        if !parsed.value.is_finite() {
            return Err(PayloadError::NotFinite);
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sensor_values_in_both_forms() {
        assert_eq!(SensorValue::parse(b" 21.5 ").unwrap(), SensorValue { value: 21.5, ts: None });
        assert_eq!(SensorValue::parse(b"-3").unwrap().value, -3.0);
        let v = SensorValue::parse(br#"{"value": 1.5, "ts": "2026-11-26T20:00:00Z"}"#).unwrap();
        assert_eq!(v.value, 1.5);
        assert_eq!(v.ts.unwrap().to_string(), "2026-11-26T20:00:00.000Z");
        assert_eq!(SensorValue::parse(br#"{"value": 2}"#).unwrap().ts, None);
    }

    #[test]
    fn bad_sensor_values_are_typed_errors() {
        for bad in
            [&b""[..], b"warm", b"{\"v\": 1}", b"[1]", b"NaN", b"{\"value\": \"1\"}", b"1e999"]
        {
            assert!(SensorValue::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn status_and_config_shapes() {
        let status: StatusMessage =
            serde_json::from_value(json!({"online": false, "ts": "2026-11-26T20:00:00Z"})).unwrap();
        assert!(!status.online);
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            json!({"online": false, "ts": "2026-11-26T20:00:00.000Z"})
        );
        let config: ConfigMessage =
            serde_json::from_value(json!({"version": 3, "config": {"interval_s": 5}})).unwrap();
        assert_eq!(config.version, 3);
        assert!(
            serde_json::from_value::<ConfigMessage>(json!({"version": 3, "config": [1]})).is_err()
        );
    }
}
