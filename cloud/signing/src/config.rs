//! The signing service's configuration (defaults -> file -> `EDGEWATCH_*`; see
//! `edgewatch_common::config`). The defaults are the embedded shape's: SQLite and memory under
//! `./edgewatch-data`, keys generated on first start.

use std::path::PathBuf;

use edgewatch_common::config::{HttpConfig, LogConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SigningConfig {
    pub http: HttpConfig,
    pub log: LogConfig,
    /// `postgres://...` or `sqlite://path`.
    pub database_url: String,
    /// `redis://...` or `memory://`.
    pub cache_url: String,
    /// Prefix of this deployment's keys in a shared Redis.
    pub cache_namespace: String,
    /// Ed25519 PKCS#8 PEM files; every one is published, the newest signs.
    pub keys_dir: PathBuf,
    /// Create a key in `keys_dir` when it holds none (embedded shape); off in production.
    pub generate_keys: bool,
    /// The keys as PEM text instead of files (`EDGEWATCH_SIGNING_KEYS`); the first block signs.
    pub signing_keys: String,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
    /// The bearer credential services present to `/introspect`. Required.
    pub service_token: String,
    pub login_per_ip: u64,
    pub login_per_account: u64,
    pub login_window_s: u64,
    /// Take the client address from `X-Forwarded-For` (only behind the nginx gateway).
    pub trust_forwarded_for: bool,
    /// Password hashes computed at once, each on a thread of its own that keeps its 19 MiB
    /// block; more wait their turn.
    pub max_concurrent_hashes: usize,
}

impl Default for SigningConfig {
    fn default() -> Self {
        Self {
            http: HttpConfig::default(),
            log: LogConfig::default(),
            database_url: "sqlite://edgewatch-data/signing.db".into(),
            cache_url: "memory://".into(),
            cache_namespace: "edgewatch:".into(),
            keys_dir: PathBuf::from("edgewatch-data/keys"),
            generate_keys: true,
            signing_keys: String::new(),
            access_ttl_s: 15 * 60,
            refresh_ttl_s: 30 * 24 * 3600,
            service_token: String::new(),
            login_per_ip: 30,
            login_per_account: 10,
            login_window_s: 60,
            trust_forwarded_for: false,
            max_concurrent_hashes: 2,
        }
    }
}

impl edgewatch_common::binary::ServiceConfig for SigningConfig {
    fn log(&self) -> &LogConfig {
        &self.log
    }
}
