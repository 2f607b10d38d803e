//! Enrollment: trade a one-time enrollment token for the device's id and secret
//! (`POST /api/v1/devices/enroll`) and keep them in a credentials file only its owner can read
//! (mode 0600), written to a temporary file and renamed so a crash never leaves half a file.

use std::{
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use edgewatch_protocol::{DeviceId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{AgentError, Result};

/// Where the broker is, as the devices service told the device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// The credentials file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    pub device_id: DeviceId,
    pub device_secret: String,
    /// The URL the operator enrolled against; the HTTP uplink uses it, since it demonstrably
    /// reaches the service from this device.
    pub server: String,
    /// What the service advertises as its public base URL (informational).
    pub http_base_url: String,
    pub mqtt: MqttEndpoint,
    pub enrolled_at: Timestamp,
}

#[derive(Deserialize)]
struct Enrolled {
    device_id: DeviceId,
    device_secret: String,
    mqtt: MqttEndpoint,
    http: HttpEndpoint,
}

#[derive(Deserialize)]
struct HttpEndpoint {
    base_url: String,
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                AgentError::NotEnrolled(path.to_owned())
            } else {
                AgentError::Io { context: "reading the credentials", path: path.to_owned(), source }
            }
        })?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Writes the file with mode 0600, atomically (temporary file, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let io = |context, path: &Path| {
            let path = path.to_owned();
            move |source| AgentError::Io { context, path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io("creating the directory", dir))?;
        }
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        let _ = std::fs::remove_file(&tmp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("creating", &tmp))?;
        file.write_all(&serde_json::to_vec_pretty(self)?).map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
        Ok(())
    }
}

/// Enrolls at `server` (the devices service or the gateway, e.g. `https://edgewatch.example`)
/// and saves the credentials to `path`.
pub async fn enroll(
    client: &reqwest::Client,
    server: &str,
    token: &str,
    path: &Path,
) -> Result<Credentials> {
    let server = server.trim_end_matches('/');
    let hardware = serde_json::json!({
        "arch": std::env::consts::ARCH,
        "os": std::env::consts::OS,
        "hostname": sysinfo::System::host_name().ok(),
        "agent_version": env!("CARGO_PKG_VERSION"),
    });
    let response = client
        .post(format!("{server}/api/v1/devices/enroll"))
        .json(&serde_json::json!({"enrollment_token": token, "hardware": hardware}))
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if !status.is_success() {
        return Err(AgentError::Refused {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(500).collect(),
        });
    }
    let enrolled: Enrolled = serde_json::from_slice(&body)?;
    let credentials = Credentials {
        device_id: enrolled.device_id,
        device_secret: enrolled.device_secret,
        server: server.to_owned(),
        http_base_url: enrolled.http.base_url,
        mqtt: enrolled.mqtt,
        enrolled_at: Timestamp::now(),
    };
    credentials.save(path)?;
    tracing::info!(device_id = %credentials.device_id, path = %path.display(), "Enrolled");
    Ok(credentials)
}
