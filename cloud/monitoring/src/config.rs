//! The monitoring service's configuration (defaults -> file -> `EDGEWATCH_*`); defaults are the
//! embedded shape's.

use std::path::PathBuf;

use edgewatch_common::config::{HttpConfig, LogConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    pub http: HttpConfig,
    pub log: LogConfig,
    /// `mongodb://host:port/db` or `sqlite://path`.
    pub store_url: String,
    /// `amqp://...` or `memory://`.
    pub bus_url: String,
    /// The signing service, for token verification.
    pub signing_url: String,
    /// The devices service, asked who owns a device.
    pub devices_url: String,
    /// This service's credential for signing's introspection. Required.
    pub service_token: String,
    pub consumer: ConsumerConfig,
    pub retention: RetentionConfig,
    /// Most points one query answers; a larger range or a smaller step gets a 422 naming it.
    pub max_points: usize,
    /// The dashboard's static files, served at `/` when set (the embedded shape).
    pub static_dir: Option<PathBuf>,
    /// Socket.IO packets queued per client before further pushes to it are dropped (counted).
    pub live_buffer: usize,
    /// Redis for the Socket.IO adapter when several replicas serve live clients.
    pub live_redis_url: Option<String>,
    /// The adapter's channel prefix in that Redis (one per deployment).
    pub live_redis_prefix: String,
    /// open-meteo for `/api/v1/weather`.
    pub weather: crate::forecasts::WeatherConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The most deliveries written in one store call; twice as many may be held unacked, so
    /// the next call's deliveries arrive while one is written.
    pub prefetch: u16,
    /// How long to wait for more deliveries before writing what is there.
    pub linger_ms: u64,
}

/// How long each tier is kept, in hours; 0 keeps it forever.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub raw_hours: u64,
    pub minute_hours: u64,
    pub hour_hours: u64,
    /// How often retention (and the store's repair sweep) runs.
    pub interval_s: u64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            log: LogConfig::default(),
            store_url: "sqlite://edgewatch-data/telemetry.db".into(),
            bus_url: "memory://".into(),
            signing_url: "http://127.0.0.1:8080".into(),
            devices_url: "http://127.0.0.1:8080".into(),
            service_token: String::new(),
            consumer: ConsumerConfig::default(),
            retention: RetentionConfig::default(),
            max_points: 10_000,
            static_dir: None,
            live_buffer: 256,
            live_redis_url: None,
            live_redis_prefix: "edgewatch-live".into(),
            weather: crate::forecasts::WeatherConfig::default(),
        }
    }
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self { prefetch: 64, linger_ms: 20 }
    }
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self { raw_hours: 7 * 24, minute_hours: 30 * 24, hour_hours: 2 * 365 * 24, interval_s: 300 }
    }
}

impl RetentionConfig {
    /// Every tier kept forever: for an archive, and for tests whose readings carry fixed dates
    /// (with the default horizons such a test would start failing once its dates grew old).
    pub fn keep_everything() -> Self {
        Self { raw_hours: 0, minute_hours: 0, hour_hours: 0, ..Self::default() }
    }
}

impl edgewatch_common::binary::ServiceConfig for MonitoringConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}
