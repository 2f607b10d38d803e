//! The settings the cloud may change while the agent runs (`PUT /devices/{id}/config`, delivered
//! as `{version, config}` over the retained MQTT topic or by polling `config/current`). They live
//! in a `tokio::sync::watch` channel, so the collector and the uplink pick a change up on their
//! next turn, without a restart.
//!
//! Recognised keys of `config`: `interval_s` (collection interval, 0.1..=86400), `collectors`
//! (a list of families, e.g. `["cpu", "mem"]`), `drain_rate` (readings/s the backlog drains at,
//! at least 1), `batch_max_readings` (1..=5000), `uplink` (`"http"` or `"mqtt"`: the agent stops
//! the one it runs between batches and starts the other; `"none"` is refused, since it would cut
//! the device off from any later config). Unknown keys are ignored (newer cloud, older agent); a
//! bad value is refused with a warning and the previous value kept. A remote config is kept in
//! the buffer's file and applied over the command line's settings at the next start.

use std::time::Duration;

use edgewatch_protocol::limits;
use serde_json::{Map, Value};

use crate::collect::Family;

/// How the agent reaches the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UplinkKind {
    Http,
    Mqtt,
    /// Collect and buffer only (a device with no link yet, or a benchmark).
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    pub interval: Duration,
    pub families: Vec<Family>,
    /// The most readings per second the uplink sends, so a long backlog does not saturate a thin
    /// link (or the service) when the link comes back.
    pub drain_rate: u32,
    pub batch_max_readings: usize,
    pub uplink: UplinkKind,
    /// The version of the remote config applied (0: none yet).
    pub version: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            families: Family::ALL.to_vec(),
            drain_rate: 50_000,
            batch_max_readings: 1_000,
            uplink: UplinkKind::Http,
            version: 0,
        }
    }
}

impl RuntimeConfig {
    /// Applies a remote config of `version`; returns the problems (keys refused).
    pub fn apply(&mut self, version: u64, remote: &Map<String, Value>) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(value) = remote.get("interval_s") {
            match value.as_f64().filter(|s| (0.1..=86_400.0).contains(s)) {
                Some(seconds) => self.interval = Duration::from_secs_f64(seconds),
                None => problems.push(format!("interval_s must be 0.1 to 86400, not {value}")),
            }
        }
        if let Some(value) = remote.get("collectors") {
            match serde_json::from_value::<Vec<Family>>(value.clone()) {
                Ok(mut families) => {
                    families.sort();
                    families.dedup();
                    self.families = families;
                }
                Err(e) => problems.push(format!("collectors: {e}")),
            }
        }
        if let Some(value) = remote.get("drain_rate") {
            match value.as_u64().filter(|r| *r >= 1).and_then(|r| u32::try_from(r).ok()) {
                Some(rate) => self.drain_rate = rate,
                None => {
                    problems.push(format!("drain_rate must be a positive integer, not {value}"))
                }
            }
        }
        if let Some(value) = remote.get("batch_max_readings") {
            match value.as_u64().filter(|n| (1..=limits::MAX_READINGS as u64).contains(n)) {
                Some(n) => self.batch_max_readings = n as usize,
                None => problems.push(format!("batch_max_readings must be 1 to 5000, not {value}")),
            }
        }
        if let Some(value) = remote.get("uplink") {
            match value.as_str() {
                Some("http") => self.uplink = UplinkKind::Http,
                Some("mqtt") => self.uplink = UplinkKind::Mqtt,
                _ => problems.push(format!("uplink must be \"http\" or \"mqtt\", not {value}")),
            }
        }
        self.version = version;
        for problem in &problems {
            tracing::warn!(version, problem, "Remote config value refused");
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn known_keys_change_and_bad_values_keep_the_old_one() {
        let mut config = RuntimeConfig::default();
        let problems = config.apply(
            3,
            &map(json!({"interval_s": 2.5, "collectors": ["mem", "cpu", "mem"], "drain_rate": 100,
                        "future_key": true})),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(config.interval, Duration::from_millis(2500));
        assert_eq!(config.families, vec![Family::Cpu, Family::Mem]);
        assert_eq!((config.drain_rate, config.version), (100, 3));
        assert_eq!(config.uplink, UplinkKind::Http);

        let problems = config.apply(
            4,
            &map(json!({"interval_s": 0, "collectors": ["gpu"], "batch_max_readings": 9000,
                        "uplink": "none"})),
        );
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(config.uplink, UplinkKind::Http);
        assert_eq!(config.interval, Duration::from_millis(2500));
        assert_eq!(config.families, vec![Family::Cpu, Family::Mem]);
        assert_eq!(config.version, 4);

        assert!(config.apply(5, &map(json!({"uplink": "mqtt"}))).is_empty());
        assert_eq!((config.uplink, config.version), (UplinkKind::Mqtt, 5));
    }
}
