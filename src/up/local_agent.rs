//! The agent for the machine `edgewatch up` runs on: the same code as `edgewatch-agent`, in this
//! process. On first start it registers a device named after the host and enrolls exactly like a
//! remote agent would (over HTTP, with a one-time token), so what the dashboard shows for it is
//! what any device gets. Its buffer and credentials live under `<data>/agent/`.

use std::{path::Path, time::Duration};

use edgewatch_agent::{
    buffer::BufferOptions,
    collect::sensors::SensorSource,
    config::RuntimeConfig,
    enroll::{self, Credentials},
    run::{RunOptions, UplinkKind},
};
use edgewatch_common::shutdown::Shutdown;
use edgewatch_devices::{Devices, domain::DeviceInput};
use tokio::task::JoinHandle;

use super::{UpError, admin::Admin};

pub struct Options {
    /// This process's HTTP address, for enrollment and the uplink.
    pub server: String,
    pub interval_s: f64,
    /// The broker's sensors, with the agent's login (`mqtt://user:password@host:port`).
    pub sensors: Option<String>,
}

/// Enrolls on first start, then runs the agent until `shutdown`.
pub async fn start(
    devices: &Devices,
    admin: &Admin,
    data: &Path,
    options: Options,
    shutdown: Shutdown,
) -> Result<JoinHandle<()>, UpError> {
    let Options { server, interval_s, sensors } = options;
    let server = server.as_str();
    if !(interval_s.is_finite() && (0.1..=86_400.0).contains(&interval_s)) {
        return Err(UpError::Agent(format!(
            "agent_interval_s must be 0.1 to 86400 seconds, not {interval_s}"
        )));
    }
    let dir = data.join("agent");
    let credentials = dir.join("credentials.json");
    if Credentials::load(&credentials).is_err() {
        let host = sysinfo::System::host_name().unwrap_or_else(|_| "this host".into());
        let input = DeviceInput {
            name: host,
            kind: Some("host".into()),
            tags: vec!["local".into()],
            location: None,
            metadata: serde_json::Map::new(),
        };
        let (_, token) = devices
            .create(&admin.principal(), input)
            .await
            .map_err(|e| UpError::Agent(format!("registering this host: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| UpError::Agent(e.to_string()))?;
        enroll::enroll(&client, server, &token, &credentials)
            .await
            .map_err(|e| UpError::Agent(format!("enrolling this host: {e}")))?;
    }
    let options = RunOptions {
        data_dir: dir,
        credentials,
        uplink: UplinkKind::Http,
        buffer: BufferOptions::default(),
        config: RuntimeConfig {
            interval: Duration::from_secs_f64(interval_s),
            ..RuntimeConfig::default()
        },
        config_poll: Duration::from_secs(5),
        // The port may differ from the enrolling start's (port 0, a changed --http).
        server: Some(server.to_owned()),
        sensors: sensors.map(|url| SensorSource { url, client_id: "edgewatch-up-agent".into() }),
        mqtt_ca: None,
        metrics: None,
    };
    Ok(tokio::spawn(async move {
        if let Err(err) = edgewatch_agent::run::run(options, shutdown).await {
            tracing::error!(%err, "The local agent stopped");
        }
    }))
}
