//! The MQTT broker of the embedded shape: the same authorising front and rumqttd as the
//! `edgewatch-broker` binary, with device logins checked in process against the registry
//! instead of over HTTP, and three static accounts made at start: the devices service's bridge,
//! local sensors, and the local agent reading them. The sensors' password is kept under the
//! data directory so real sensors can be configured once.
//!
//! Devices' telemetry goes from the broker's front straight to `Devices::ingest_mqtt` in process
//! (the [`Ingest`] port), so a PUBACK means the batch is on the bus; the bridge then carries
//! status only.

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use edgewatch_broker::{
    Account, AccountRole, Accounts, AuthError, Authenticator, BrokerConfig, BrokerHandle, Chain,
    Identity, Ingest, IngestError, IngestKind, Login, MqttListener, Outcome, Publication, Role,
};
use edgewatch_common::shutdown::Shutdown;
use edgewatch_devices::{Devices, error::DevicesError, service::Handled};
use edgewatch_protocol::DeviceId;

use super::UpError;

pub const BRIDGE_USER: &str = "edgewatch-bridge";
pub const SENSORS_USER: &str = "sensors";
pub const AGENT_USER: &str = "edgewatch-agent";

/// The static logins of this process.
pub struct Logins {
    pub bridge_password: String,
    pub sensors_password: String,
    pub agent_password: String,
}

impl Logins {
    /// Fresh bridge and agent passwords (they never leave the process); the sensors' password
    /// from `<data>/sensors.password`, created on first start.
    pub fn load(data: &Path) -> Result<Self, UpError> {
        let file = data.join("sensors.password");
        let sensors_password = match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
            _ => {
                let password = super::random_token();
                write_private(&file, &password)
                    .map_err(|cause| UpError::DataDir { path: file.clone(), cause })?;
                password
            }
        };
        Ok(Self {
            bridge_password: super::random_token(),
            sensors_password,
            agent_password: super::random_token(),
        })
    }
}

pub fn write_private(path: &Path, text: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_ref())?;
    file.sync_all()
}

/// Device logins against the registry of this process; set once the devices service is built
/// (it connects its bridge to the broker while being built, so the broker starts first).
#[derive(Clone, Default)]
pub struct Registry(Arc<OnceLock<Devices>>);

impl Registry {
    pub fn set(&self, devices: Devices) {
        let _ = self.0.set(devices);
    }
}

#[async_trait]
impl Authenticator for Registry {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        let Ok(id) = DeviceId::parse(&login.username) else {
            return Err(AuthError::UnknownUser);
        };
        let Some(devices) = self.0.get() else {
            return Err(AuthError::Unavailable("starting".into()));
        };
        match devices.authenticate(id, &login.password).await {
            Ok(()) => Ok(Identity::Device(id)),
            Err(DevicesError::BadDeviceCredential | DevicesError::NotFound) => {
                Err(AuthError::Denied)
            }
            Err(err) => Err(AuthError::Unavailable(err.to_string())),
        }
    }
}

/// Device telemetry into the registry's service, with the bridge's own function: validated,
/// the device marked seen, the batch on the bus with a confirm.
#[async_trait]
impl Ingest for Registry {
    async fn accept(&self, publication: Publication) -> Result<Outcome, IngestError> {
        let Some(devices) = self.0.get() else {
            return Err(IngestError::Unavailable("starting".into()));
        };
        match publication.kind {
            IngestKind::Telemetry => {
                match devices.ingest_mqtt(publication.device, &publication.payload).await {
                    Ok(Handled::Accepted) => Ok(Outcome::Accepted),
                    Ok(Handled::Refused(reason)) => Ok(Outcome::Refused(reason)),
                    Err(err) => Err(IngestError::Unavailable(err.to_string())),
                }
            }
            // Not acknowledged, so the device keeps them, until the devices service takes events.
            IngestKind::Events => {
                Err(IngestError::Unavailable("the devices service does not take events yet".into()))
            }
        }
    }
}

/// Starts the broker on `listen`; it stops with `shutdown`.
pub async fn start(
    listen: SocketAddr,
    logins: &Logins,
    registry: Registry,
    shutdown: Shutdown,
) -> Result<BrokerHandle, UpError> {
    let account = |username: &str, password: &str, role| Account {
        username: username.into(),
        password: password.into(),
        role,
        publish: Vec::new(),
        subscribe: Vec::new(),
    };
    let accounts = vec![
        account(BRIDGE_USER, &logins.bridge_password, AccountRole::Service),
        account(SENSORS_USER, &logins.sensors_password, AccountRole::Sensor),
        account(AGENT_USER, &logins.agent_password, AccountRole::Agent),
    ];
    let config = BrokerConfig {
        role: Role::Cloud,
        mqtt: Some(MqttListener { listen }),
        http: None,
        accounts: accounts.clone(),
        ..BrokerConfig::default()
    };
    let ingest: Arc<dyn Ingest> = Arc::new(registry.clone());
    let auth: Arc<dyn Authenticator> =
        Arc::new(Chain(vec![Arc::new(Accounts::new(accounts)), Arc::new(registry)]));
    edgewatch_broker::start(config, auth, Some(ingest), shutdown).await.map_err(|err| match err {
        edgewatch_broker::BrokerError::Bind(addr, cause) => {
            UpError::listen("the MQTT", "--mqtt", addr, cause)
        }
        other => UpError::Broker(other.to_string()),
    })
}
