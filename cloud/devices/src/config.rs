//! The devices service's configuration (defaults -> file -> `EDGEWATCH_*`); defaults are the
//! embedded shape's.

use edgewatch_common::config::{HttpConfig, LogConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DevicesConfig {
    pub http: HttpConfig,
    pub log: LogConfig,
    /// `postgres://...` or `sqlite://path`.
    pub database_url: String,
    /// `amqp://...` or `memory://`.
    pub bus_url: String,
    /// `redis://...` or `memory://`: the device-credential cache.
    pub cache_url: String,
    /// Prefix of this deployment's keys in a shared Redis.
    pub cache_namespace: String,
    /// The signing service, for token verification (JWKS and introspection).
    pub signing_url: String,
    /// This service's credential for signing's introspection. Required.
    pub service_token: String,
    pub enrollment_ttl_s: u64,
    /// The broker (`mqtt://host:port`): configs are pushed to it and, with `mqtt_ingest`,
    /// telemetry and status are bridged from it. Without it configs are served by HTTP only.
    pub mqtt_url: Option<String>,
    /// Bridge telemetry and status from the broker (needs `mqtt_url`).
    pub mqtt_ingest: bool,
    /// The bridge's client id: stable per replica so that a restart resumes its persistent
    /// session. Default: `edgewatch-devices-<HOSTNAME>`, or a random suffix without `HOSTNAME`.
    pub mqtt_client_id: Option<String>,
    /// The shared-subscription group of the bridge; replicas of one deployment share it. Empty:
    /// plain subscriptions, for a single bridge.
    pub mqtt_share_group: String,
    /// The bridge's broker login, if the broker asks for one.
    pub mqtt_username: Option<String>,
    pub mqtt_password: Option<String>,
    /// MQTT messages handled at once.
    pub mqtt_concurrency: usize,
    /// An online device not heard from (telemetry or status) for this long is marked offline.
    pub offline_after_s: u64,
    /// What enrolled devices are told to connect to.
    pub public_mqtt_host: String,
    pub public_mqtt_port: u16,
    pub public_mqtt_tls: bool,
    pub public_http_base_url: String,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            log: LogConfig::default(),
            database_url: "sqlite://edgewatch-data/devices.db".into(),
            bus_url: "memory://".into(),
            cache_url: "memory://".into(),
            cache_namespace: "edgewatch:".into(),
            signing_url: "http://127.0.0.1:8080".into(),
            service_token: String::new(),
            enrollment_ttl_s: 24 * 3600,
            mqtt_url: None,
            mqtt_ingest: true,
            mqtt_client_id: None,
            mqtt_share_group: "edgewatch-devices".into(),
            mqtt_username: None,
            mqtt_password: None,
            mqtt_concurrency: 64,
            offline_after_s: 300,
            public_mqtt_host: "localhost".into(),
            public_mqtt_port: 1883,
            public_mqtt_tls: false,
            public_http_base_url: "http://localhost:8080".into(),
        }
    }
}

impl edgewatch_common::binary::ServiceConfig for DevicesConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}
