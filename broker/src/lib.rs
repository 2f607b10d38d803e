//! The MQTT broker, built on rumqttd, in two roles: `cloud` (devices authenticate with their
//! device id and secret and may only touch `edgewatch/v1/devices/{id}/`; the devices service's
//! bridge reads all telemetry and publishes configs) and `edge` (local sensors on a field gateway
//! publish `sensors/...` for the agent).
//!
//! rumqttd authenticates but has no topic ACL, so clients never reach it directly: an
//! authorising front ([`front`]) owns the public listeners (plain and TLS), authenticates each
//! CONNECT through the [`Authenticator`] port, checks every PUBLISH topic and SUBSCRIBE filter
//! against the client's permissions ([`acl`]) and relays the rest to rumqttd, which listens on a
//! random loopback port behind an internal account with a random password. Devices' telemetry and
//! events skip rumqttd: the front hands them to the [`Ingest`] port and acknowledges them only
//! once they are on the bus ([`ingest`]). See broker/README.md for the design, its cost and
//! rumqttd's limits.
//!
//! In-process use (`edgewatch up`):
//!
//! ```no_run
//! # async fn run(auth: std::sync::Arc<dyn edgewatch_broker::Authenticator>) -> Result<(), edgewatch_broker::BrokerError> {
//! use edgewatch_broker::{BrokerConfig, start};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let config = BrokerConfig { http: None, ..BrokerConfig::default() };
//! // `None`: no ingest port; see [`start`].
//! let broker = start(config, auth, None, shutdown.clone()).await?;
//! println!("MQTT on {:?}", broker.mqtt_addr);
//! shutdown.cancel();
//! broker.stopped().await;
//! # Ok(()) }
//! ```

pub mod acl;
pub mod auth;
pub mod config;
mod front;
pub mod ingest;
pub mod packet;
mod tls;

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};
use tokio_util::sync::CancellationToken;

pub use acl::{Identity, Permissions};
pub use auth::{
    AuthError, Authenticator, Chain, Login,
    accounts::{Account, AccountRole, Accounts},
    devices_http::DevicesHttp,
};
pub use config::{BrokerConfig, MqttListener, Role, TlsListener};
pub use ingest::{
    Ingest, IngestError, IngestKind, Outcome, Publication, devices_http::DevicesHttpIngest,
};

/// The broker's one error type.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen on {0}: {1} (is another broker running there? pick another address)")]
    Bind(SocketAddr, std::io::Error),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("invalid broker configuration: {0}")]
    Config(String),
    #[error("the embedded rumqttd did not start: {0}")]
    Embedded(String),
}

/// A running broker: where it listens, and a way to wait for it to stop.
#[derive(Debug)]
pub struct BrokerHandle {
    /// The plain MQTT listener's bound address (port 0 in the config is resolved here).
    pub mqtt_addr: Option<SocketAddr>,
    /// The TLS listener's bound address.
    pub tls_addr: Option<SocketAddr>,
    /// The `/metrics` + `/healthz` listener's bound address.
    pub http_addr: Option<SocketAddr>,
    /// rumqttd's private loopback listener (for diagnostics; clients must not use it).
    pub internal_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl BrokerHandle {
    /// Waits until every listener has stopped after the shutdown token fired; each open client
    /// connection closes on the same token. The rumqttd thread itself cannot be stopped
    /// (rumqttd 0.20 has no shutdown); it idles behind its loopback port until the process exits.
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The authenticator the configuration describes: the static accounts, then (cloud role) the
/// devices service over HTTP.
pub fn authenticator(config: &BrokerConfig) -> Result<Arc<dyn Authenticator>, BrokerError> {
    let mut chain: Vec<Arc<dyn Authenticator>> =
        vec![Arc::new(Accounts::new(config.accounts.iter().cloned()))];
    match (config.role, &config.devices_url) {
        (Role::Cloud, Some(url)) => chain.push(Arc::new(DevicesHttp::new(
            url,
            config.auth_cache_ttl(),
            Duration::from_millis(config.auth_timeout_ms),
        ))),
        (Role::Cloud, None) => {
            return Err(BrokerError::Config(
                "a cloud broker needs devices_url (EDGEWATCH_DEVICES_URL=http://devices:8080) to \
                 check device logins; use role = \"edge\" for a broker with static accounts only"
                    .into(),
            ));
        }
        (Role::Edge, _) => {}
    }
    Ok(Arc::new(Chain(chain)))
}

/// The ingest port the configuration describes: on a cloud broker, the devices service's HTTP
/// ingest endpoints (the same `devices_url` device logins are checked against); an edge broker
/// has no devices, hence none.
pub fn ingest(config: &BrokerConfig) -> Result<Option<Arc<dyn Ingest>>, BrokerError> {
    match (config.role, &config.devices_url) {
        (Role::Cloud, Some(url)) => {
            Ok(Some(Arc::new(DevicesHttpIngest::new(url, config.ingest_timeout()))))
        }
        (Role::Cloud, None) => Err(BrokerError::Config(
            "a cloud broker needs devices_url (EDGEWATCH_DEVICES_URL=http://devices:8080) to hand \
             device telemetry to"
                .into(),
        )),
        (Role::Edge, _) => Ok(None),
    }
}

/// Only lets devices in on a cloud broker: an edge broker has static accounts alone.
struct RoleGate {
    inner: Arc<dyn Authenticator>,
    role: Role,
}

#[async_trait::async_trait]
impl Authenticator for RoleGate {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        match self.inner.authenticate(login).await? {
            Identity::Device(_) if self.role == Role::Edge => Err(AuthError::Denied),
            identity => Ok(identity),
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, BrokerError> {
    TcpListener::bind(addr).await.map_err(|e| BrokerError::Bind(addr, e))
}

/// Starts the broker: rumqttd on its own OS thread behind a loopback port, the authorising
/// front on the configured listeners, and the metrics endpoint. Returns once every listener is
/// bound and rumqttd accepts connections; runs until `shutdown` fires.
///
/// `ingest` takes devices' telemetry and events, and the front acknowledges them only after it
/// did ([`ingest`] builds the HTTP one). `None` leaves them to rumqttd, which acknowledges from
/// memory: only for brokers whose readers are not the durable path (tests, an edge broker).
pub async fn start(
    config: BrokerConfig,
    auth: Arc<dyn Authenticator>,
    ingest: Option<Arc<dyn Ingest>>,
    shutdown: CancellationToken,
) -> Result<BrokerHandle, BrokerError> {
    if config.mqtt.is_none() && config.tls.is_none() {
        return Err(BrokerError::Config(
            "neither an [mqtt] nor a [tls] listener is configured".into(),
        ));
    }
    let acceptor = match &config.tls {
        Some(tls) => Some(tls::acceptor(&tls.cert_path, &tls.key_path)?),
        None => None,
    };
    let mqtt_listener = match &config.mqtt {
        Some(mqtt) => Some(bind(mqtt.listen).await?),
        None => None,
    };
    let tls_listener = match &config.tls {
        Some(tls) => Some(bind(tls.listen).await?),
        None => None,
    };
    let http_listener = match &config.http {
        Some(http) => Some(bind(http.listen).await?),
        None => None,
    };

    let internal_user = "edgewatch-front".to_owned();
    let internal_password = format!("{:032x}", rand::random::<u128>());
    let internal_addr = start_rumqttd(&config, &internal_user, &internal_password).await?;

    let front = Arc::new(front::Front {
        auth: Arc::new(RoleGate { inner: auth, role: config.role }),
        upstream: internal_addr,
        internal_user,
        internal_password,
        max_packet_bytes: config.max_packet_bytes,
        connect_timeout: config.connect_timeout(),
        reauth_interval: config.reauth_interval(),
        slots: Arc::new(Semaphore::new(config.max_connections)),
        ingest,
        ingest_timeout: config.ingest_timeout(),
    });
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let mut handle = BrokerHandle {
        mqtt_addr: local(&mqtt_listener),
        tls_addr: local(&tls_listener),
        http_addr: local(&http_listener),
        internal_addr,
        tasks: Vec::new(),
    };
    if let Some(listener) = mqtt_listener {
        tracing::info!(addr = ?handle.mqtt_addr, role = ?config.role, "MQTT listening");
        handle.tasks.push(tokio::spawn(front::accept_loop(
            listener,
            None,
            front.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(listener) = tls_listener {
        tracing::info!(addr = ?handle.tls_addr, "MQTT over TLS listening");
        handle.tasks.push(tokio::spawn(front::accept_loop(
            listener,
            acceptor,
            front.clone(),
            shutdown.clone(),
        )));
    }
    if let Some(listener) = http_listener {
        let router = edgewatch_common::http::service_router(
            "broker",
            axum::Router::new(),
            edgewatch_common::http::Readiness::new(),
            1 << 16,
        );
        let shutdown = shutdown.clone();
        handle.tasks.push(tokio::spawn(async move {
            if let Err(err) = edgewatch_common::http::serve(listener, router, shutdown).await {
                tracing::error!(%err, "The metrics endpoint stopped");
            }
        }));
    }
    Ok(handle)
}

/// Starts rumqttd on a free loopback port with one account, and waits until it accepts.
async fn start_rumqttd(
    config: &BrokerConfig,
    user: &str,
    password: &str,
) -> Result<SocketAddr, BrokerError> {
    // rumqttd binds by itself and does not report the port, so pick a free one first. Another
    // process could take it in between; then the readiness probe below fails loudly.
    let probe = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| BrokerError::Embedded(format!("no free loopback port: {e}")))?;
    let addr = probe.local_addr().map_err(|e| BrokerError::Embedded(e.to_string()))?;
    drop(probe);

    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: config.max_packet_bytes,
        max_inflight_count: 500,
        auth: Some(HashMap::from([(user.to_owned(), password.to_owned())])),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "edgewatch-internal".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            // The front enforces the real limit; a few spare for reconnect overlap.
            max_connections: config.max_connections + 64,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: rumqttd::Strategy::default(),
        },
        v4: Some(HashMap::from([("internal".to_owned(), server)])),
        ..rumqttd::Config::default()
    };
    std::thread::Builder::new()
        .name("edgewatch-rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(rumqttd_config);
            if let Err(err) = broker.start() {
                tracing::error!(%err, "The embedded rumqttd stopped");
            }
        })
        .map_err(|e| BrokerError::Embedded(format!("cannot start its thread: {e}")))?;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            return probe_rumqttd(stream, user, password).await.map(|()| addr);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(BrokerError::Embedded(format!("nothing listens on {addr} after 10 s")));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Logs in to rumqttd with the internal account and leaves cleanly: proves it is up and that
/// the front's logins will be accepted (a bare TCP probe would only log an error in rumqttd).
async fn probe_rumqttd(
    mut stream: tokio::net::TcpStream,
    user: &str,
    password: &str,
) -> Result<(), BrokerError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = packet::Connect {
        protocol_name: "MQTT".into(),
        level: 4,
        clean_session: true,
        keep_alive: 10,
        client_id: format!("edgewatch-probe-{:016x}", rand::random::<u64>()),
        will: None,
        username: Some(user.to_owned()),
        password: Some(bytes::Bytes::from(password.to_owned())),
    };
    let mut connack = [0u8; 4];
    let answer = async {
        stream.write_all(&connect.encode()).await?;
        stream.read_exact(&mut connack).await?;
        stream.write_all(&[0xe0, 0x00]).await
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .map_err(|_| BrokerError::Embedded("no CONNACK within 10 s".into()))?
        .map_err(|e| BrokerError::Embedded(format!("probe login failed: {e}")))?;
    if connack != packet::connack(packet::ConnectReturn::Accepted) {
        return Err(BrokerError::Embedded(format!("it refused the internal login: {connack:?}")));
    }
    Ok(())
}
