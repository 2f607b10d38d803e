//! The devices service: the device registry with ownership, credentials and enrollment, and
//! telemetry ingest, which it hands to the bus with publisher confirms before it acknowledges
//! the device (API.md "Devices").
//!
//! Parts: the registry store ([`repository`], PostgreSQL and SQLite) with its event outbox and
//! the relay that publishes it ([`outbox`]); the transport-agnostic service ([`service`]: CRUD
//! with ownership, search, enrollment, rotation, ingest, config, status); HTTP ([`http`]); MQTT
//! ([`mqtt`]: config push and the ingest bridge); and the offline sweep. Background tasks (relay,
//! sweep, MQTT clients) end with the `shutdown` given to [`build`].

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod mqtt;
pub mod outbox;
pub mod repository;
pub mod service;

use std::{sync::Arc, time::Duration};

use axum::Router;
use edgewatch_common::{
    auth::HttpVerifier,
    bus::{self, Topology},
    cache,
    http::{Readiness, serve as serve_http, service_router},
    shutdown::Shutdown,
};

pub use config::DevicesConfig;
pub use service::Devices;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "service_token is empty: set EDGEWATCH_SERVICE_TOKEN (the token the signing service accepts)"
    )]
    NoServiceToken,
    #[error("cannot open the device database: {0}")]
    Database(#[from] repository::RepoError),
    #[error("cannot reach the message bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error("cannot reach the cache: {0}")]
    Cache(#[from] cache::CacheError),
    #[error("bad mqtt_url: {0}")]
    Mqtt(String),
    #[error("cannot listen on {addr}: {cause}")]
    Listen { addr: std::net::SocketAddr, cause: std::io::Error },
}

/// The service's router and core; background tasks (the MQTT client) end with `shutdown`.
pub async fn build(
    config: &DevicesConfig,
    shutdown: &Shutdown,
) -> Result<(Router, Devices), StartError> {
    let bus = bus::connect(&config.bus_url, Topology::standard()).await?;
    build_with(config, shutdown, bus).await
}

/// [`build`] with the bus given (the embedded shape shares one in-process bus with monitoring).
pub async fn build_with(
    config: &DevicesConfig,
    shutdown: &Shutdown,
    bus: Arc<dyn bus::Bus>,
) -> Result<(Router, Devices), StartError> {
    if config.service_token.trim().is_empty() {
        return Err(StartError::NoServiceToken);
    }
    let repo = repository::connect(&config.database_url).await?;
    let endpoints = service::Endpoints {
        mqtt: service::MqttEndpoint {
            host: config.public_mqtt_host.clone(),
            port: config.public_mqtt_port,
            tls: config.public_mqtt_tls,
        },
        http: service::HttpEndpoint { base_url: config.public_http_base_url.clone() },
    };
    let mqtt = match &config.mqtt_url {
        Some(url) => {
            // The config publisher logs in like the bridge: an authenticating broker (the
            // edgewatch broker) refuses anonymous clients.
            let credentials = config
                .mqtt_username
                .clone()
                .map(|user| (user, config.mqtt_password.clone().unwrap_or_default()));
            Some(
                mqtt::ConfigPublisher::start(url, credentials, shutdown.clone())
                    .map_err(StartError::Mqtt)?,
            )
        }
        None => None,
    };
    let ttl = Duration::from_secs(config.enrollment_ttl_s.max(1));
    let credentials = cache::connect(&config.cache_url, &config.cache_namespace).await?;
    let devices = Devices::new(repo, bus, ttl, endpoints, mqtt, credentials)
        .with_offline_after(Duration::from_secs(config.offline_after_s.max(1)));
    if let (Some(url), true) = (&config.mqtt_url, config.mqtt_ingest) {
        let options = mqtt::bridge::BridgeOptions {
            url: url.clone(),
            client_id: config.mqtt_client_id.clone().unwrap_or_else(default_client_id),
            share_group: config.mqtt_share_group.clone(),
            credentials: config
                .mqtt_username
                .clone()
                .map(|user| (user, config.mqtt_password.clone().unwrap_or_default())),
            concurrency: config.mqtt_concurrency,
        };
        mqtt::bridge::start(options, devices.clone(), shutdown.clone())
            .map_err(StartError::Mqtt)?;
    }
    outbox::spawn(
        Arc::clone(&devices.repo),
        Arc::clone(&devices.bus),
        devices.events.clone(),
        shutdown.clone(),
    );
    devices.spawn_offline_sweep(shutdown.clone());
    let readiness = {
        let (repo, bus) = (Arc::clone(&devices.repo), Arc::clone(&devices.bus));
        Readiness::new()
            .with("database", move || {
                let repo = Arc::clone(&repo);
                async move { repo.ping().await }
            })
            .with("bus", move || {
                let bus = Arc::clone(&bus);
                async move { bus.ping().await }
            })
    };
    let verifier = Arc::new(HttpVerifier::new(&config.signing_url, &config.service_token));
    let api = http::routes(http::AppState { devices: devices.clone(), verifier });
    Ok((service_router("devices", api, readiness, config.http.body_limit), devices))
}

fn default_client_id() -> String {
    match std::env::var("HOSTNAME") {
        Ok(host) if !host.is_empty() => format!("edgewatch-devices-bridge-{host}"),
        _ => format!("edgewatch-devices-bridge-{}", mqtt::uuid_suffix()),
    }
}

/// Runs the service until `shutdown` fires.
pub async fn serve(config: DevicesConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let (router, _) = build(&config, &shutdown).await?;
    let addr = config.http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| StartError::Listen { addr, cause })?;
    tracing::info!(%addr, "Devices service listening");
    serve_http(listener, router, shutdown).await.map_err(|cause| StartError::Listen { addr, cause })
}
