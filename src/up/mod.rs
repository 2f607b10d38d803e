//! `edgewatch up`: the whole system in one process. Signing, devices and monitoring run on their
//! embedded adapters (SQLite files under the data directory, an in-process bus kept in one of
//! them, an in-memory cache) behind
//! one HTTP port that routes like the production gateway; the MQTT broker, an agent for this host
//! and a few simulated devices join them, so the dashboard is alive seconds after start.
//!
//! Nothing acknowledged is lost, however the process ends: the bus (`bus.db`) holds every message
//! on disk from before the device's 202 until the store has it, so after a crash, `kill -9` or
//! power cut the next start delivers what was left (the store's unique key absorbs the repeats).
//! Shutdown is still ordered, so that a clean stop leaves nothing to redeliver: first the intake
//! stops (HTTP, MQTT, the local agent and simulators; in-flight requests finish), then the bus is
//! drained into the telemetry store, and only then do the consumers and background tasks stop.

mod admin;
mod broker;
pub mod config;
mod error;
pub mod gateway;
mod local_agent;
mod sim;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use edgewatch_common::{
    bus::{Topology, memory::DEFAULT_CAPACITY, sqlite::SqliteBus},
    config::HttpConfig,
    http::serve as serve_http,
    observability,
    shutdown::{self, Shutdown},
    telemetry_store,
};
use edgewatch_protocol::{DEVICE_EVENTS_QUEUE, MONITORING_QUEUE};

pub use config::{UpArgs, UpConfig};
pub use error::UpError;

/// How long Ctrl-C waits for the bus to drain into the store before giving up (and saying so).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the devices service's MQTT bridge gets to hand on what the broker accepted last.
const BRIDGE_GRACE: Duration = Duration::from_millis(500);

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: UpConfig) -> Result<(), UpError> {
    observability::init_tracing(&config.log);
    // Listen for Ctrl-C from the start: one that comes before the listener is installed would
    // kill the process the default way, without the ordered shutdown.
    let mut stop = tokio::spawn(shutdown::signal());
    let data = prepare_data_dir(&config.data_dir)?;
    let listener = tokio::net::TcpListener::bind(config.http_listen)
        .await
        .map_err(|cause| UpError::listen("the HTTP", "--http", config.http_listen, cause))?;
    let http_addr = listener
        .local_addr()
        .map_err(|cause| UpError::Listen { addr: config.http_listen, cause })?;
    // The services call each other (token checks, the registry) over this port, on loopback.
    let internal_url = format!("http://{}", reachable(http_addr, false));
    let public_url = if config.public_url.trim().is_empty() {
        format!("http://{}", reachable(http_addr, true))
    } else {
        config.public_url.trim_end_matches('/').to_owned()
    };
    let service_token = random_token();
    // Stopped in this order: what produces readings, then what takes them in, then the rest.
    let sources = Shutdown::new();
    let intake = Shutdown::new();
    let backend = Shutdown::new();
    let failed = |service: &'static str, cause: &dyn std::fmt::Display| UpError::Service {
        service,
        cause: cause.to_string(),
        data_dir: data.clone(),
    };

    let signing_config = edgewatch_signing::SigningConfig {
        http: HttpConfig { listen: http_addr, ..HttpConfig::default() },
        log: config.log.clone(),
        database_url: sqlite_url(&data.join("signing.db")),
        keys_dir: data.join("keys"),
        service_token: service_token.clone(),
        // One sign-in at a time (about 50 ms each): a gateway on a Pi keeps one 19 MiB hashing
        // block resident rather than two.
        max_concurrent_hashes: 1,
        ..Default::default()
    };
    let (signing_router, signing) =
        edgewatch_signing::build(&signing_config).await.map_err(|e| failed("signing", &e))?;

    // The broker first: the devices service connects its bridge while it is built.
    let logins = broker::Logins::load(&data)?;
    let registry = broker::Registry::default();
    let mqtt = broker::start(config.mqtt_listen, &logins, registry.clone(), intake.clone()).await?;
    let mqtt_addr = mqtt.mqtt_addr.unwrap_or(config.mqtt_listen);
    let internal_mqtt = format!("mqtt://{}", reachable(mqtt_addr, false));

    let bus = SqliteBus::open(data.join("bus.db"), Topology::standard(), DEFAULT_CAPACITY)
        .await
        .map_err(|e| failed("bus", &e))?;
    let devices_config = edgewatch_devices::DevicesConfig {
        http: HttpConfig { listen: http_addr, ..HttpConfig::default() },
        log: config.log.clone(),
        database_url: sqlite_url(&data.join("devices.db")),
        signing_url: internal_url.clone(),
        service_token: service_token.clone(),
        public_http_base_url: public_url.clone(),
        public_mqtt_host: host_of(&public_url),
        public_mqtt_port: mqtt_addr.port(),
        mqtt_url: Some(internal_mqtt.clone()),
        mqtt_username: Some(broker::BRIDGE_USER.into()),
        mqtt_password: Some(logins.bridge_password.clone()),
        // One bridge: plain subscriptions (rumqttd 0.20 mishandles a persistent session with a
        // shared subscription when it ends; see broker/README.md).
        mqtt_share_group: String::new(),
        ..Default::default()
    };
    let (devices_router, devices) =
        edgewatch_devices::build_with(&devices_config, &backend, Arc::new(bus.clone()))
            .await
            .map_err(|e| failed("devices", &e))?;
    registry.set(devices.clone());

    let monitoring_config = edgewatch_monitoring::MonitoringConfig {
        http: HttpConfig { listen: http_addr, ..HttpConfig::default() },
        log: config.log.clone(),
        signing_url: internal_url.clone(),
        devices_url: internal_url.clone(),
        service_token: service_token.clone(),
        static_dir: config.dashboard_dir.clone(),
        // The last weather answers survive a restart and serve (marked stale) while offline.
        weather: edgewatch_monitoring::forecasts::WeatherConfig {
            cache_path: Some(data.join("weather.db")),
            ..Default::default()
        },
        ..Default::default()
    };
    let store = telemetry_store::connect(&sqlite_url(&data.join("telemetry.db")))
        .await
        .map_err(|e| failed("monitoring", &e))?;
    let (monitoring_router, _) = edgewatch_monitoring::build_with(
        &monitoring_config,
        &backend,
        store,
        Arc::new(bus.clone()),
    )
    .await
    .map_err(|e| failed("monitoring", &e))?;

    let app = gateway::router(gateway::Services {
        signing: signing_router,
        devices: devices_router,
        monitoring: monitoring_router,
    });
    let mut server = tokio::spawn(serve_http(listener, app, intake.clone()));

    let admin = admin::ensure(&signing, &config.admin_email).await?;
    let sensors_url = {
        let address = internal_mqtt.trim_start_matches("mqtt://");
        format!("mqtt://{}:{}@{address}", broker::AGENT_USER, logins.agent_password)
    };
    let mut agent = None;
    if config.local_agent {
        let options = local_agent::Options {
            server: internal_url.clone(),
            interval_s: config.agent_interval_s,
            sensors: (config.sim > 0).then_some(sensors_url),
        };
        agent = Some(local_agent::start(&devices, &admin, &data, options, sources.clone()).await?);
    }
    let sensor_login = (config.local_agent && config.sim > 0)
        .then(|| (broker::SENSORS_USER.to_owned(), logins.sensors_password.clone()));
    let mut sims = sim::start(
        &devices,
        &admin,
        &data,
        config.sim,
        mqtt_addr.port(),
        sensor_login,
        sources.clone(),
    )
    .await?;
    print_banner(&public_url, &admin, &data, mqtt_addr, config.dashboard_dir.is_some());

    tokio::select! {
        _ = &mut stop => {}
        result = &mut server => {
            // The server only ends by itself when it fails.
            sources.cancel();
            let cause = match result {
                Ok(Ok(())) => std::io::Error::other("the HTTP server stopped"),
                Ok(Err(err)) => err,
                Err(join) => std::io::Error::other(join.to_string()),
            };
            backend.cancel();
            return Err(UpError::Listen { addr: http_addr, cause });
        }
    }
    eprintln!("Stopping: finishing requests in flight...");
    sources.cancel();
    if let Some(agent) = agent {
        let _ = agent.await;
    }
    while sims.join_next().await.is_some() {}
    // What the broker took in last is relayed by the bridge; give it a moment.
    tokio::time::sleep(BRIDGE_GRACE).await;
    intake.cancel();
    let _ = server.await;
    mqtt.stopped().await;
    drain(&bus).await;
    backend.cancel();
    eprintln!("Stopped.");
    Ok(())
}

/// Waits until every accepted reading and event is stored (acked off the bus), and the acks are
/// on disk. What is not drained in time stays in `bus.db` for the next start.
async fn drain(bus: &SqliteBus) {
    let started = Instant::now();
    let pending = || bus.depth(MONITORING_QUEUE) + bus.depth(DEVICE_EVENTS_QUEUE);
    let mut told = false;
    while pending() > 0 {
        if started.elapsed() > DRAIN_TIMEOUT {
            eprintln!(
                "warning: {} messages were still on the bus after {}s; the next start stores them",
                pending(),
                DRAIN_TIMEOUT.as_secs()
            );
            break;
        }
        if !told && started.elapsed() > Duration::from_secs(1) {
            eprintln!("Storing {} readings still on the bus...", pending());
            told = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Err(err) = bus.flush().await {
        eprintln!(
            "warning: the bus file could not record the last acks ({err}); the next start delivers them again, harmlessly"
        );
    }
}

#[allow(clippy::print_stdout)]
fn print_banner(
    url: &str,
    admin: &admin::Admin,
    data: &Path,
    mqtt: SocketAddr,
    own_dashboard: bool,
) {
    println!("edgewatch is up: {url}");
    match &admin.new_password {
        Some(password) => {
            println!("  administrator: {} / {password}", admin.email);
            println!("  (shown this once and stored hashed: keep it somewhere safe)");
        }
        None => println!("  administrator: {} (password as printed on first start)", admin.email),
    }
    println!("  MQTT for devices and sensors: {}:{}", host_of(url), mqtt.port());
    println!(
        "  (local sensors log in as `{}` with the password in {})",
        broker::SENSORS_USER,
        data.join("sensors.password").display()
    );
    println!("  data: {}", data.display());
    if !own_dashboard && !edgewatch_monitoring::dashboard::is_embedded() {
        println!(
            "  dashboard: not built into this binary (run scripts/build-dashboard.sh, or pass --dashboard-dir)"
        );
    }
    println!("Press Ctrl-C to stop.");
}

/// Creates the data directory and proves it writable, so a bad one fails now, in one line.
fn prepare_data_dir(dir: &Path) -> Result<PathBuf, UpError> {
    let fail = |cause| UpError::DataDir { path: dir.to_owned(), cause };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    std::path::absolute(dir).map_err(fail)
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The address to reach a listener at: loopback for this process, the host name for others.
fn reachable(addr: SocketAddr, public: bool) -> String {
    let ip = addr.ip();
    if ip.is_unspecified() {
        if public {
            return format!("localhost:{}", addr.port());
        }
        let loopback = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        return SocketAddr::new(loopback, addr.port()).to_string();
    }
    addr.to_string()
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => authority.to_owned(),
    }
}

fn random_token() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_for_this_process_and_for_devices() {
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(reachable(any, false), "127.0.0.1:8080");
        assert_eq!(reachable(any, true), "localhost:8080");
        let v6: SocketAddr = "[::]:9000".parse().unwrap();
        assert_eq!(reachable(v6, false), "[::1]:9000");
        let set: SocketAddr = "192.168.1.5:80".parse().unwrap();
        assert_eq!(reachable(set, true), "192.168.1.5:80");
        assert_eq!(host_of("http://gateway.local:8080/x"), "gateway.local");
        assert_eq!(host_of("https://edgewatch.example"), "edgewatch.example");
        assert_eq!(host_of("http://[::1]:8080"), "[::1]");
    }

    #[test]
    fn an_unwritable_data_dir_is_refused_in_one_line() {
        let err = prepare_data_dir(Path::new("/proc/edgewatch-data")).unwrap_err().to_string();
        assert!(err.contains("--data-dir"), "{err}");
        assert!(!err.contains('\n'));
    }
}
