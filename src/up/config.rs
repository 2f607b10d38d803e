//! What `edgewatch up` can be told, and from where: built-in defaults, then a TOML file
//! (`--config`), then `EDGEWATCH_*` variables (e.g. `EDGEWATCH_HTTP_LISTEN=0.0.0.0:9000`), then
//! flags. Each flag names its variable in `--help`, so the layers never surprise.

use std::{net::SocketAddr, path::PathBuf};

use edgewatch_common::config::LogConfig;
use serde::{Deserialize, Serialize};

/// The settings of the embedded shape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct UpConfig {
    /// Where every database, key and credential of this installation lives.
    pub data_dir: PathBuf,
    /// The one HTTP port: API, Socket.IO and dashboard.
    pub http_listen: SocketAddr,
    /// The MQTT listener for devices and local sensors.
    pub mqtt_listen: SocketAddr,
    /// How devices reach this machine (advertised at enrollment, HTTP and MQTT host);
    /// `http://localhost:<port>` when empty.
    pub public_url: String,
    /// The administrator created on first start.
    pub admin_email: String,
    /// Simulated devices started alongside (0: none).
    pub sim: usize,
    /// Run an agent for this host.
    pub local_agent: bool,
    /// Seconds between the local agent's collections.
    pub agent_interval_s: f64,
    /// A directory with a built dashboard to serve instead of the one compiled in.
    pub dashboard_dir: Option<PathBuf>,
    pub log: LogConfig,
}

impl Default for UpConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("edgewatch-data"),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            mqtt_listen: SocketAddr::from(([0, 0, 0, 0], 1883)),
            public_url: String::new(),
            admin_email: "admin@edgewatch.local".into(),
            sim: 3,
            local_agent: true,
            agent_interval_s: 2.0,
            dashboard_dir: None,
            // rumqttd logs every connection (and each ordinary disconnect as an error).
            log: LogConfig { filter: "info,rumqttd=off".into(), ..LogConfig::default() },
        }
    }
}

/// `edgewatch up`'s flags; each one overrides the file and the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UpArgs {
    /// A TOML file with any of the settings below (keys as in the variables, lower case, without
    /// the `EDGEWATCH_` prefix: `data_dir`, `http_listen`, `sim`, ...).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Where data lives; restarting with the same directory keeps everything
    /// [env: EDGEWATCH_DATA_DIR] [default: ./edgewatch-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The HTTP address (dashboard, API, Socket.IO); port 0 picks a free one
    /// [env: EDGEWATCH_HTTP_LISTEN] [default: 0.0.0.0:8080].
    #[arg(long = "http", value_name = "ADDR")]
    pub http_listen: Option<SocketAddr>,
    /// The MQTT address for devices and sensors; port 0 picks a free one
    /// [env: EDGEWATCH_MQTT_LISTEN] [default: 0.0.0.0:1883].
    #[arg(long = "mqtt", value_name = "ADDR")]
    pub mqtt_listen: Option<SocketAddr>,
    /// The URL devices on other machines use to reach this one, e.g. http://gateway.local:8080;
    /// set it before enrolling remote devices (their MQTT host is taken from it too)
    /// [env: EDGEWATCH_PUBLIC_URL] [default: http://localhost:<http port>].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The administrator account created on first start [env: EDGEWATCH_ADMIN_EMAIL]
    /// [default: admin@edgewatch.local].
    #[arg(long, value_name = "EMAIL")]
    pub admin_email: Option<String>,
    /// Simulated devices to run, so the dashboard has something to show; 0 for none
    /// [env: EDGEWATCH_SIM] [default: 3].
    #[arg(long, value_name = "N")]
    pub sim: Option<usize>,
    /// Do not run an agent for this host [env: EDGEWATCH_LOCAL_AGENT=false].
    #[arg(long)]
    pub no_agent: bool,
    /// Seconds between the local agent's collections [env: EDGEWATCH_AGENT_INTERVAL_S]
    /// [default: 2].
    #[arg(long, value_name = "SECONDS")]
    pub agent_interval: Option<f64>,
    /// Serve the dashboard from this directory (a `vite build` output) instead of the copy
    /// compiled into the binary [env: EDGEWATCH_DASHBOARD_DIR].
    #[arg(long, value_name = "DIR")]
    pub dashboard_dir: Option<PathBuf>,
}

impl UpArgs {
    /// Defaults, then the file, then the environment, then these flags.
    pub fn load(&self) -> Result<UpConfig, edgewatch_common::config::ConfigError> {
        let mut config: UpConfig = edgewatch_common::config::load(self.config.as_deref())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(addr) = self.http_listen {
            config.http_listen = addr;
        }
        if let Some(addr) = self.mqtt_listen {
            config.mqtt_listen = addr;
        }
        if let Some(url) = &self.public_url {
            config.public_url = url.clone();
        }
        if let Some(email) = &self.admin_email {
            config.admin_email = email.clone();
        }
        if let Some(n) = self.sim {
            config.sim = n;
        }
        if self.no_agent {
            config.local_agent = false;
        }
        if let Some(seconds) = self.agent_interval {
            config.agent_interval_s = seconds;
        }
        if let Some(dir) = &self.dashboard_dir {
            config.dashboard_dir = Some(dir.clone());
        }
        Ok(config)
    }
}
