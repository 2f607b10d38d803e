//! The monitoring service: consumes telemetry from the bus into the telemetry store (MongoDB or
//! SQLite, with rollups), answers queries over it, and pushes live telemetry and device status
//! to Socket.IO clients (API.md "Monitoring").
//!
//! [`serve`] runs it; [`build`] assembles the router and starts the background tasks (consumer,
//! status relay, retention) for tests and for `edgewatch up`.

pub mod config;
pub mod consumer;
pub mod dashboard;
pub mod error;
pub mod forecasts;
pub mod http;
pub mod live;
pub mod query;
pub mod registry;
pub mod retention;

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use axum::Router;
use edgewatch_common::{
    auth::{HttpVerifier, TokenVerifier},
    bus::{self, Bus, Topology},
    http::{Readiness, serve as serve_http, service_router},
    shutdown::Shutdown,
    telemetry_store::{self, StoreError, TelemetryStore},
};

pub use config::MonitoringConfig;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "service_token is empty: set EDGEWATCH_SERVICE_TOKEN (the token the signing service accepts)"
    )]
    NoServiceToken,
    #[error("cannot open the telemetry store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot reach the message bus: {0}")]
    Bus(#[from] bus::BusError),
    #[error(transparent)]
    Live(#[from] live::LiveError),
    #[error("cannot set up the weather client (check [weather] cache_path): {0}")]
    Weather(#[from] edgewatch_forecast::openmeteo::WeatherError),
    #[error("static_dir {0} is not a directory")]
    StaticDir(String),
    #[error("cannot listen on {addr}: {cause}")]
    Listen { addr: std::net::SocketAddr, cause: std::io::Error },
}

/// What `build` hands back besides the router.
pub struct Monitoring {
    pub store: Arc<dyn TelemetryStore>,
    pub bus: Arc<dyn Bus>,
}

/// The service's router; its background tasks run until `shutdown`.
pub async fn build(
    config: &MonitoringConfig,
    shutdown: &Shutdown,
) -> Result<(Router, Monitoring), StartError> {
    if config.service_token.trim().is_empty() {
        return Err(StartError::NoServiceToken);
    }
    let store = telemetry_store::connect(&config.store_url).await?;
    let bus = bus::connect(&config.bus_url, Topology::standard()).await?;
    build_with(config, shutdown, store, bus).await
}

/// [`build`] with the store and bus given (the embedded shape shares its bus with devices).
pub async fn build_with(
    config: &MonitoringConfig,
    shutdown: &Shutdown,
    store: Arc<dyn TelemetryStore>,
    bus: Arc<dyn Bus>,
) -> Result<(Router, Monitoring), StartError> {
    let verifier: Arc<dyn TokenVerifier> =
        Arc::new(HttpVerifier::new(&config.signing_url, &config.service_token));
    let registry: Arc<dyn registry::Registry> = registry::HttpRegistry::new(&config.devices_url);
    let queries = query::Queries {
        store: Arc::clone(&store),
        registry: Arc::clone(&registry),
        max_points: config.max_points.max(1),
    };
    let forecasts = forecasts::ForecastState {
        queries: queries.clone(),
        verifier: Arc::clone(&verifier),
        weather: Arc::new(forecasts::weather_client(&config.weather)?),
    };
    let mut api = http::routes(http::AppState { queries, verifier: Arc::clone(&verifier) })
        .merge(forecasts::routes(forecasts));
    if let Some(dir) = &config.static_dir
        && !dir.is_dir()
    {
        return Err(StartError::StaticDir(dir.display().to_string()));
    }
    api = api.merge(dashboard::routes(config.static_dir.clone()));
    let healthy = Arc::new(AtomicBool::new(true));
    let readiness = readiness(&store, &bus, &healthy);
    let router = service_router("monitoring", api, readiness, config.http.body_limit);
    let redis =
        config.live_redis_url.as_deref().map(|url| (url, config.live_redis_prefix.as_str()));
    let (router, live) =
        live::attach(router, verifier, Arc::clone(&registry), config.live_buffer, redis).await?;

    let consumer = consumer::Consumer {
        bus: Arc::clone(&bus),
        store: Arc::clone(&store),
        live: Some(live.clone()),
        prefetch: config.consumer.prefetch.max(1),
        linger: Duration::from_millis(config.consumer.linger_ms),
        healthy: Arc::clone(&healthy),
        retention: config.retention.clone(),
    };
    tokio::spawn(consumer.run(shutdown.clone()));
    tokio::spawn(consumer::follow_device_events(
        Arc::clone(&bus),
        live,
        Arc::clone(&registry),
        shutdown.clone(),
    ));
    tokio::spawn(retention::run(Arc::clone(&store), config.retention.clone(), shutdown.clone()));

    Ok((router, Monitoring { store, bus }))
}

fn readiness(
    store: &Arc<dyn TelemetryStore>,
    bus: &Arc<dyn Bus>,
    healthy: &Arc<AtomicBool>,
) -> Readiness {
    let (store, bus, healthy) = (Arc::clone(store), Arc::clone(bus), Arc::clone(healthy));
    Readiness::new()
        .with("consumer", move || {
            let writing = healthy.load(std::sync::atomic::Ordering::Relaxed);
            async move {
                if writing { Ok(()) } else { Err("the last telemetry write failed; retrying") }
            }
        })
        .with("telemetry_store", move || {
            let store = Arc::clone(&store);
            async move { store.ping().await }
        })
        .with("bus", move || {
            let bus = Arc::clone(&bus);
            async move { bus.ping().await }
        })
}

/// Runs the service until `shutdown` fires.
pub async fn serve(config: MonitoringConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let (router, _) = build(&config, &shutdown).await?;
    let addr = config.http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| StartError::Listen { addr, cause })?;
    tracing::info!(%addr, "Monitoring service listening");
    serve_http(listener, router, shutdown).await.map_err(|cause| StartError::Listen { addr, cause })
}
