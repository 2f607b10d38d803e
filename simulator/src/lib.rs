//! The sensor fleet simulator (`edgewatch-sim`): N local sensors publishing to an edge broker,
//! or N enrolled devices publishing batches straight to the cloud (MQTT or HTTP), with values
//! from a pure, seeded generator ([`generator`]), and a load mode ([`load`]) that reports the
//! achieved and acknowledged rates and delivery latency percentiles.
//!
//! Library use (`edgewatch up --sim N`): call [`run_device`] (or [`run_sensor`]) once per
//! simulated device in a task; each runs until its duration ends or `shutdown` fires.

pub mod generator;
pub mod load;
mod mqtt;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use edgewatch_protocol::{
    Batch, DeviceId, MetricName, Reading, Seq, StatusMessage, Timestamp, Topic,
};
use rumqttc::{LastWill, QoS};
use tokio_util::sync::CancellationToken;

pub use mqtt::Broker;

/// The simulator's one error type.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("MQTT: {0}")]
    Mqtt(String),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("invalid option: {0}")]
    Options(String),
}

/// What a sensor publishes on `sensors/{id}/{metric}`: a bare number or `{"value", "ts"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SensorPayload {
    #[default]
    Number,
    Json,
}

/// Where the simulated time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The wall clock: live data.
    Real,
    /// Starts at this Unix millisecond and advances one interval a tick: replays are identical.
    From(i64),
}

/// How one simulated sensor or device behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    /// Time between two samples.
    pub interval: Duration,
    /// Stop after this long (`None`: until shutdown).
    pub duration: Option<Duration>,
    pub clock: Clock,
    pub payload: SensorPayload,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            seed: 1,
            interval: Duration::from_secs(5),
            duration: None,
            clock: Clock::Real,
            payload: SensorPayload::Number,
        }
    }
}

/// Counters of one run, shared so a caller can watch them while it runs.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages (MQTT) or requests (HTTP) sent.
    pub sent: AtomicU64,
    /// Acknowledged: PUBACK for QoS 1, a 2xx answer for HTTP.
    pub acked: AtomicU64,
    /// Samples not sent because the sensor was in a dropout.
    pub dropouts: AtomicU64,
    /// Refused or failed sends.
    pub errors: AtomicU64,
}

impl Stats {
    pub fn get(&self) -> (u64, u64, u64, u64) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (load(&self.sent), load(&self.acked), load(&self.dropouts), load(&self.errors))
    }
}

/// An enrolled device's credential.
#[derive(Debug, Clone)]
pub struct DeviceCredential {
    pub id: DeviceId,
    pub secret: String,
}

/// Where a simulated device sends its batches.
#[derive(Debug, Clone)]
pub enum DeviceTarget {
    /// A broker: batches on `edgewatch/v1/devices/{id}/telemetry`, QoS 1; a retained status
    /// (and an offline will).
    Mqtt(Broker),
    /// The devices service: `POST {base}/api/v1/devices/{id}/telemetry`.
    Http(String),
}

/// The ticks of a run: (tick number, simulated Unix ms), one per interval until the duration
/// ends or shutdown fires.
struct Ticker {
    options: SimOptions,
    started: tokio::time::Instant,
    interval: tokio::time::Interval,
    n: u64,
}

impl Ticker {
    fn new(options: &SimOptions) -> Self {
        let mut interval = tokio::time::interval(options.interval.max(Duration::from_millis(1)));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { options: options.clone(), started: tokio::time::Instant::now(), interval, n: 0 }
    }

    async fn next(&mut self, shutdown: &CancellationToken) -> Option<i64> {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            _ = self.interval.tick() => {}
        }
        if let Some(limit) = self.options.duration
            && self.started.elapsed() >= limit
        {
            return None;
        }
        let t = match self.options.clock {
            Clock::Real => Timestamp::now().as_millis(),
            Clock::From(start) => {
                start + (self.n as i64) * self.options.interval.as_millis() as i64
            }
        };
        self.n += 1;
        Some(t)
    }
}

/// The two metrics a simulated sensor reports.
const METRICS: [&str; 2] = ["temp_c", "humidity_pct"];

/// Runs local sensor `index` (`sensors/sim-{index}/temp_c|humidity_pct`) against an edge broker.
pub async fn run_sensor(
    broker: &Broker,
    index: u64,
    options: &SimOptions,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    let sensor_id = format!("sim-{index:04}");
    let client =
        mqtt::connect(broker, &format!("sim-sensor-{index}-{}", options.seed), None, stats.clone())
            .await?;
    let mut ticker = Ticker::new(options);
    while let Some(t) = ticker.next(&shutdown).await {
        let Some(sample) = generator::sample(options.seed, index, t) else {
            stats.dropouts.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        for (metric, value) in METRICS.into_iter().zip([sample.temp_c, sample.humidity_pct]) {
            let payload = match options.payload {
                SensorPayload::Number => value.to_string(),
                SensorPayload::Json => {
                    let ts =
                        Timestamp::from_millis(t).map_err(|e| SimError::Options(e.to_string()))?;
                    serde_json::json!({"value": value, "ts": ts.to_string()}).to_string()
                }
            };
            client
                .publish(&format!("sensors/{sensor_id}/{metric}"), payload.into_bytes(), &stats)
                .await;
        }
    }
    client.close().await;
    Ok(())
}

/// One reading of device `index` at `t` (`None` in a dropout). `seq` is the sample's Unix
/// millisecond, so it keeps increasing across restarts of the simulator.
pub fn reading(seed: u64, index: u64, t: i64) -> Option<Reading> {
    let sample = generator::sample(seed, index, t)?;
    let metrics =
        [("sensor.sim.temp_c", sample.temp_c), ("sensor.sim.humidity_pct", sample.humidity_pct)]
            .into_iter()
            .filter_map(|(name, value)| Some((MetricName::parse(name).ok()?, value)))
            .collect();
    Some(Reading {
        seq: Seq::new(u64::try_from(t).ok()?).ok()?,
        ts: Timestamp::from_millis(t).ok()?,
        metrics,
        tags: Default::default(),
    })
}

/// Runs simulated device `index` with `device`'s credential against `target`: one reading a
/// tick, as a one-reading batch.
pub async fn run_device(
    target: &DeviceTarget,
    device: &DeviceCredential,
    index: u64,
    options: &SimOptions,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) -> Result<(), SimError> {
    let id = device.id;
    match target {
        DeviceTarget::Mqtt(broker) => {
            let broker = Broker {
                username: Some(id.to_string()),
                password: Some(device.secret.clone()),
                ..broker.clone()
            };
            let status = |online: bool| {
                serde_json::to_vec(&StatusMessage {
                    online,
                    ts: Timestamp::now(),
                    agent_version: Some(format!("edgewatch-sim {}", env!("CARGO_PKG_VERSION"))),
                    config_version: None,
                })
                .unwrap_or_default()
            };
            let status_topic = Topic::Status(id).to_string();
            let will = LastWill::new(&status_topic, status(false), QoS::AtLeastOnce, true);
            let client = mqtt::connect(&broker, &id.to_string(), Some(will), stats.clone()).await?;
            client.publish_retained(&status_topic, status(true)).await;
            let topic = Topic::Telemetry(id).to_string();
            let mut ticker = Ticker::new(options);
            while let Some(t) = ticker.next(&shutdown).await {
                let Some(batch) = batch(id, options.seed, index, t, &stats)? else { continue };
                client.publish(&topic, batch, &stats).await;
            }
            client.publish_retained(&status_topic, status(false)).await;
            client.close().await;
        }
        DeviceTarget::Http(base) => {
            let http = reqwest::Client::new();
            let url = format!("{}/api/v1/devices/{id}/telemetry", base.trim_end_matches('/'));
            let mut ticker = Ticker::new(options);
            while let Some(t) = ticker.next(&shutdown).await {
                let Some(batch) = batch(id, options.seed, index, t, &stats)? else { continue };
                stats.sent.fetch_add(1, Ordering::Relaxed);
                let answer = http
                    .post(&url)
                    .bearer_auth(&device.secret)
                    .header("content-type", "application/json")
                    .body(batch)
                    .send()
                    .await;
                match answer {
                    Ok(a) if a.status().is_success() => {
                        stats.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(a) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(status = %a.status(), device = %id, "Telemetry refused");
                    }
                    Err(err) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%err, device = %id, "Telemetry not sent");
                    }
                }
            }
        }
    }
    Ok(())
}

fn batch(
    id: DeviceId,
    seed: u64,
    index: u64,
    t: i64,
    stats: &Stats,
) -> Result<Option<Vec<u8>>, SimError> {
    let Some(reading) = reading(seed, index, t) else {
        stats.dropouts.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    };
    let batch = Batch::new(id, vec![reading]).map_err(|e| SimError::Options(e.to_string()))?;
    serde_json::to_vec(&batch).map(Some).map_err(|e| SimError::Options(e.to_string()))
}
