//! `edgewatch-agent run`: the collector, the uplink and the config poller as three tasks around
//! one buffer. The collector only ever appends; the uplink only ever peeks, acks and
//! quarantines; either may fail (full disk, cloud down) without stopping the other.
//!
//! The uplink runs under a supervisor that follows the config's `uplink`: when a remote config
//! names the other transport it stops the running one (its drain, and its MQTT session or HTTP
//! config poller) and starts the other. A batch in flight at that moment stays in the buffer
//! until some transport's ack; if both delivered it, the cloud drops the second copy by seq.

use std::{path::PathBuf, sync::Arc, time::Duration};

use edgewatch_protocol::{ConfigMessage, MetricName, Tags, Timestamp, limits};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

use crate::{
    AgentError, Result,
    buffer::{Buffer, BufferOptions, NewReading, Note, SharedBuffer},
    collect::HostCollector,
    config::RuntimeConfig,
    enroll::Credentials,
    uplink::{self, http::HttpUplink},
};

pub use crate::config::UplinkKind;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub data_dir: PathBuf,
    pub credentials: PathBuf,
    pub uplink: UplinkKind,
    pub buffer: BufferOptions,
    /// The settings before any remote config arrives.
    pub config: RuntimeConfig,
    /// How often an HTTP agent asks for its config.
    pub config_poll: Duration,
    /// Overrides the server of the credentials file.
    pub server: Option<String>,
    /// A local broker to take sensor readings from (`sensors/#`).
    pub sensors: Option<crate::collect::sensors::SensorSource>,
    /// The CA certificate(s) of a private MQTT broker with TLS (else the system's CA store).
    pub mqtt_ca: Option<PathBuf>,
    /// Where to serve `GET /metrics` for Prometheus, if anywhere.
    pub metrics: Option<std::net::SocketAddr>,
}

pub fn buffer_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("buffer.db")
}

/// Runs until `shutdown`. Fails only at start (no buffer, not enrolled).
pub async fn run(options: RunOptions, shutdown: CancellationToken) -> Result<()> {
    std::fs::create_dir_all(&options.data_dir).map_err(|source| AgentError::Io {
        context: "creating the data directory",
        path: options.data_dir.clone(),
        source,
    })?;
    let buffer = Buffer::open(&buffer_path(&options.data_dir), options.buffer.clone())?;
    let mut initial = options.config.clone();
    initial.uplink = options.uplink;
    if let Some(saved) = buffer.remote_config()? {
        initial.apply(saved.version, &saved.config);
    }
    let buffer = SharedBuffer::new(buffer);
    let metrics = match options.metrics {
        Some(addr) => {
            Some(tokio::net::TcpListener::bind(addr).await.map_err(|source| AgentError::Io {
                context: "listening for metrics scrapes",
                path: PathBuf::from(addr.to_string()),
                source,
            })?)
        }
        None => None,
    };
    let credentials = match options.uplink {
        UplinkKind::None => None,
        _ => Some(Credentials::load(&options.credentials)?),
    };
    let (config_tx, config_rx) = watch::channel(initial);
    let wake = Arc::new(Notify::new());
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(listener) = metrics {
        tasks.spawn(crate::metrics::serve(listener, buffer.clone(), shutdown.clone()));
    }
    tasks.spawn(collect_loop(
        buffer.clone(),
        config_rx.clone(),
        Arc::clone(&wake),
        shutdown.clone(),
    ));
    if let Some(source) = options.sensors.clone() {
        let (buffer, wake, shutdown) = (buffer.clone(), Arc::clone(&wake), shutdown.clone());
        tasks.spawn(async move {
            if let Err(err) = crate::collect::sensors::run(source, buffer, wake, shutdown).await {
                tracing::error!(%err, "Sensor collection stopped");
            }
        });
    }
    if let Some(credentials) = credentials {
        let server = options.server.clone().unwrap_or_else(|| credentials.server.clone());
        let link = Link {
            server,
            credentials,
            mqtt_ca: options.mqtt_ca.clone(),
            buffer: buffer.clone(),
            config: config_tx,
            wake: Arc::clone(&wake),
            config_poll: options.config_poll,
        };
        tasks.spawn(link.supervise(shutdown.clone()));
    }
    tracing::info!(data_dir = %options.data_dir.display(), uplink = ?options.uplink, "Agent running");
    crate::systemd::ready(buffer.clone(), shutdown.clone());
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// What an uplink needs, whichever transport it is.
struct Link {
    server: String,
    credentials: Credentials,
    mqtt_ca: Option<PathBuf>,
    buffer: SharedBuffer,
    config: watch::Sender<RuntimeConfig>,
    wake: Arc<Notify>,
    config_poll: Duration,
}

impl Link {
    /// Runs the uplink the config names until `shutdown`, switching when the config changes it.
    async fn supervise(self, shutdown: CancellationToken) {
        let mut config = self.config.subscribe();
        loop {
            let kind = config.borrow_and_update().uplink;
            let stop = shutdown.child_token();
            let mut running = tokio::task::JoinSet::new();
            if let Err(err) = self.start(kind, &mut running, &stop) {
                tracing::error!(%err, uplink = ?kind, "Cannot start the uplink; waiting for another config");
            }
            let next = loop {
                tokio::select! {
                    changed = config.changed() => {
                        if changed.is_err() {
                            break None;
                        }
                        let next = config.borrow_and_update().uplink;
                        if next != kind {
                            break Some(next);
                        }
                    }
                    () = shutdown.cancelled() => break None,
                }
            };
            stop.cancel();
            while running.join_next().await.is_some() {}
            match next {
                Some(next) => tracing::info!(from = ?kind, to = ?next, "Switching the uplink"),
                None => return,
            }
        }
    }

    fn start(
        &self,
        kind: UplinkKind,
        running: &mut tokio::task::JoinSet<()>,
        stop: &CancellationToken,
    ) -> Result<()> {
        let device_id = self.credentials.device_id;
        match kind {
            UplinkKind::Http => {
                let uplink =
                    HttpUplink::new(&self.server, device_id, &self.credentials.device_secret)?;
                running.spawn(self.drain(Arc::new(uplink), stop));
                running.spawn(poll_config(
                    self.server.clone(),
                    self.credentials.clone(),
                    self.buffer.clone(),
                    self.config.clone(),
                    self.config_poll,
                    stop.clone(),
                ));
            }
            UplinkKind::Mqtt => {
                let (uplink, session) = uplink::mqtt::MqttUplink::start(
                    &self.credentials,
                    self.mqtt_ca.as_deref(),
                    self.buffer.clone(),
                    self.config.clone(),
                    stop.clone(),
                )?;
                running.spawn(session);
                running.spawn(self.drain(Arc::new(uplink), stop));
            }
            UplinkKind::None => {}
        }
        Ok(())
    }

    fn drain<U: uplink::Uplink>(
        &self,
        uplink: Arc<U>,
        stop: &CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        uplink::drain(
            self.buffer.clone(),
            uplink,
            self.credentials.device_id,
            self.config.subscribe(),
            Arc::clone(&self.wake),
            stop.clone(),
        )
    }
}

async fn collect_loop(
    buffer: SharedBuffer,
    mut config: watch::Receiver<RuntimeConfig>,
    wake: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let mut host = match tokio::task::spawn_blocking(HostCollector::new).await {
        Ok(Ok(host)) => host,
        Ok(Err(err)) => {
            tracing::error!(%err, "No host collector; collecting nothing");
            return;
        }
        Err(err) => {
            tracing::error!(%err, "No host collector; collecting nothing");
            return;
        }
    };
    let mut last = Instant::now();
    // CPU usage is a difference between two samples: the first collection waits long enough for
    // the one taken when the collector was built to be comparable.
    let mut next = last + sysinfo::MINIMUM_CPU_UPDATE_INTERVAL;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            changed = config.changed() => {
                if changed.is_err() { return; }
                // A new interval counts from the last collection, not from the old schedule.
                next = last + config.borrow().interval;
                continue;
            }
            () = shutdown.cancelled() => return,
        }
        let (interval, families) = {
            let c = config.borrow();
            (c.interval, c.families.clone())
        };
        last = Instant::now();
        next = (next + interval).max(last);
        let ts = Timestamp::now();
        let joined = tokio::task::spawn_blocking(move || {
            let metrics = host.collect(&families);
            (host, metrics)
        })
        .await;
        let metrics = match joined {
            Ok((back, metrics)) => {
                host = back;
                metrics
            }
            Err(err) => {
                tracing::error!(%err, "A collector panicked; stopping collection");
                return;
            }
        };
        if metrics.is_empty() {
            continue;
        }
        let readings = split(ts, metrics);
        match buffer.with(move |b| b.append(readings)).await {
            Ok(_) => wake.notify_one(),
            Err(err) => {
                // A full disk or a locked file: this cycle is lost (logged, counted by the
                // operator's log), the agent keeps running and the next cycle tries again.
                tracing::error!(%err, "Cannot store the readings of this cycle");
                let text = err.to_string();
                let _ = buffer.with(move |b| b.set_note(Note::LastError, &text)).await;
            }
        }
    }
}

/// One reading per at most 256 metrics (the contract's limit), all with the same time.
fn split(ts: Timestamp, metrics: std::collections::BTreeMap<MetricName, f64>) -> Vec<NewReading> {
    let mut tags = Tags::new();
    if let Ok(key) = MetricName::parse("source") {
        tags.insert(key, "host".into());
    }
    let mut readings = Vec::new();
    let mut current = std::collections::BTreeMap::new();
    for (name, value) in metrics {
        current.insert(name, value);
        if current.len() == limits::MAX_METRICS {
            readings.push(NewReading {
                ts,
                metrics: std::mem::take(&mut current),
                tags: tags.clone(),
            });
        }
    }
    if !current.is_empty() {
        readings.push(NewReading { ts, metrics: current, tags });
    }
    readings
}

/// Applies a config the cloud sent if it is newer than the one in force, and keeps it in the
/// buffer's file so a restart without a link starts with it.
pub async fn apply_remote(
    message: ConfigMessage,
    config: &watch::Sender<RuntimeConfig>,
    buffer: &SharedBuffer,
) {
    if message.version <= config.borrow().version {
        return;
    }
    let mut next = config.borrow().clone();
    next.apply(message.version, &message.config);
    let version = message.version;
    match buffer.with(move |b| b.save_remote_config(&message)).await {
        Ok(()) => tracing::info!(version, "Remote config applied"),
        Err(err) => tracing::error!(%err, version, "Remote config applied but not saved"),
    }
    config.send_replace(next);
}

async fn poll_config(
    server: String,
    credentials: Credentials,
    buffer: SharedBuffer,
    config: watch::Sender<RuntimeConfig>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build();
    let Ok(client) = client else { return };
    let url = format!(
        "{}/api/v1/devices/{}/config/current",
        server.trim_end_matches('/'),
        credentials.device_id
    );
    loop {
        let answer = client.get(&url).bearer_auth(&credentials.device_secret).send().await;
        match answer {
            Ok(response) if response.status().is_success() => {
                match response.json::<ConfigMessage>().await {
                    Ok(message) => apply_remote(message, &config, &buffer).await,
                    Err(err) => tracing::warn!(%err, "Unreadable config from the server"),
                }
            }
            Ok(response) => tracing::debug!(status = %response.status(), "No config fetched"),
            Err(err) => tracing::debug!(%err, "Config poll failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
