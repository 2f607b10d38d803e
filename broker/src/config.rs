//! The broker's configuration: built-in defaults, then an optional TOML file, then
//! `EDGEWATCH_*` environment variables (e.g. `EDGEWATCH_MQTT__LISTEN=0.0.0.0:1883`,
//! `EDGEWATCH_DEVICES_URL=http://devices:8080`), like every other edgewatch service.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use edgewatch_common::config::{HttpConfig, LogConfig};
use serde::{Deserialize, Serialize};

use crate::auth::accounts::Account;

/// Which broker this is; it decides who may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// In front of the cloud: devices (checked against the devices service) plus accounts.
    Cloud,
    /// On a field gateway: static accounts only (sensors and the agent).
    Edge,
}

/// A plain MQTT listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttListener {
    pub listen: SocketAddr,
}

impl Default for MqttListener {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 1883)) }
    }
}

/// A TLS listener (rustls): a PEM certificate chain and its PEM private key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsListener {
    pub listen: SocketAddr,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

/// Everything [`crate::start`] needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub log: LogConfig,
    pub role: Role,
    /// The plain listener. `None` (in-process users only) leaves TLS as the only way in.
    pub mqtt: Option<MqttListener>,
    pub tls: Option<TlsListener>,
    /// `/metrics`, `/healthz`, `/readyz`. `None` when the host process serves its own metrics
    /// (`edgewatch up` renders the shared recorder).
    pub http: Option<HttpConfig>,
    /// The devices service, for device logins on a cloud broker.
    pub devices_url: Option<String>,
    /// How long a valid device login is remembered.
    pub auth_cache_ttl_ms: u64,
    /// How often a connected device's credential is checked again (revocation, rotation).
    pub reauth_interval_ms: u64,
    /// Timeout of one call to the devices service.
    pub auth_timeout_ms: u64,
    /// Static accounts (bridge, sensors, agent).
    pub accounts: Vec<Account>,
    /// Largest MQTT packet accepted, in bytes (a batch is at most 1 MiB of JSON).
    pub max_packet_bytes: usize,
    pub max_connections: usize,
    /// A client must send its CONNECT within this time.
    pub connect_timeout_ms: u64,
    /// How long the devices service may take to put one device message on the bus before the
    /// front gives up, leaves it unacknowledged and closes the connection.
    pub ingest_timeout_ms: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            // rumqttd logs every connection at info and every ordinary disconnect as an error;
            // the front logs each connection's outcome instead. `rumqttd=warn` brings it back.
            log: LogConfig { filter: "info,rumqttd=off".into(), ..LogConfig::default() },
            role: Role::Cloud,
            mqtt: Some(MqttListener::default()),
            tls: None,
            http: Some(HttpConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 9183)),
                ..HttpConfig::default()
            }),
            devices_url: None,
            auth_cache_ttl_ms: 2_000,
            reauth_interval_ms: 2_500,
            auth_timeout_ms: 3_000,
            accounts: Vec::new(),
            max_packet_bytes: (1 << 20) + (64 << 10),
            max_connections: 10_000,
            connect_timeout_ms: 10_000,
            ingest_timeout_ms: 10_000,
        }
    }
}

impl BrokerConfig {
    pub fn auth_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.auth_cache_ttl_ms)
    }

    pub fn reauth_interval(&self) -> Duration {
        Duration::from_millis(self.reauth_interval_ms.max(100))
    }

    pub fn ingest_timeout(&self) -> Duration {
        Duration::from_millis(self.ingest_timeout_ms.max(1))
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl edgewatch_common::binary::ServiceConfig for BrokerConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}
