//! Simulated devices and sensors for `edgewatch up --sim N`, so a first start has a live fleet:
//! N registered devices publishing over MQTT like real ones (their credentials kept under
//! `<data>/sim/` so a restart continues the same devices), and two local sensors publishing
//! `sensors/...` that this host's agent picks up.

use std::{path::Path, sync::Arc, time::Duration};

use edgewatch_common::shutdown::Shutdown;
use edgewatch_devices::{Devices, domain::DeviceInput};
use edgewatch_simulator::{Broker, DeviceCredential, DeviceTarget, SimOptions, Stats};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use super::{UpError, admin::Admin};

/// Local sensors simulated next to the devices.
const SENSORS: u64 = 2;
const INTERVAL: Duration = Duration::from_secs(2);

#[derive(Serialize, Deserialize)]
struct Saved {
    id: edgewatch_protocol::DeviceId,
    secret: String,
}

/// Registers the simulated devices that do not exist yet, then runs `count` of them (and the
/// sensors, when `sensors` has the broker's sensor login) until `shutdown`.
pub async fn start(
    devices: &Devices,
    admin: &Admin,
    data: &Path,
    count: usize,
    mqtt_port: u16,
    sensors: Option<(String, String)>,
    shutdown: Shutdown,
) -> Result<JoinSet<()>, UpError> {
    let mut tasks = JoinSet::new();
    if count == 0 {
        return Ok(tasks);
    }
    let dir = data.join("sim");
    let file = dir.join("devices.json");
    let failed = |what: &str, e: &dyn std::fmt::Display| UpError::Sim(format!("{what}: {e}"));
    let mut saved: Vec<Saved> = match std::fs::read(&file) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| failed("reading sim/devices.json", &e))?
        }
        Err(_) => Vec::new(),
    };
    if saved.len() < count {
        while saved.len() < count {
            let input = DeviceInput {
                name: format!("simulated-{}", saved.len() + 1),
                kind: Some("simulator".into()),
                tags: vec!["sim".into(), "greenhouse".into()],
                location: None,
                metadata: serde_json::Map::new(),
            };
            let (_, token) = devices
                .create(&admin.principal(), input)
                .await
                .map_err(|e| failed("registering", &e))?;
            let enrolled = devices.enroll(&token).await.map_err(|e| failed("enrolling", &e))?;
            saved.push(Saved { id: enrolled.device_id, secret: enrolled.device_secret });
        }
        std::fs::create_dir_all(&dir)
            .map_err(|cause| UpError::DataDir { path: dir.clone(), cause })?;
        let json = serde_json::to_vec_pretty(&saved).map_err(|e| failed("saving", &e))?;
        super::broker::write_private(&file, &json)
            .map_err(|cause| UpError::DataDir { path: file.clone(), cause })?;
    }

    let broker =
        Broker { host: "127.0.0.1".into(), port: mqtt_port, username: None, password: None };
    let stats = Arc::new(Stats::default());
    let options = |seed: u64| SimOptions { seed, interval: INTERVAL, ..SimOptions::default() };
    for (index, device) in saved.into_iter().take(count).enumerate() {
        let target = DeviceTarget::Mqtt(broker.clone());
        let credential = DeviceCredential { id: device.id, secret: device.secret };
        let (stats, shutdown) = (Arc::clone(&stats), shutdown.clone());
        let index = index as u64;
        let options = options(index + 1);
        tasks.spawn(async move {
            let run = edgewatch_simulator::run_device(
                &target,
                &credential,
                index,
                &options,
                stats,
                shutdown,
            );
            if let Err(err) = run.await {
                tracing::warn!(%err, device = %credential.id, "A simulated device stopped");
            }
        });
    }
    if let Some((username, password)) = sensors {
        let broker = Broker { username: Some(username), password: Some(password), ..broker };
        for index in 0..SENSORS {
            let (broker, stats, shutdown) = (broker.clone(), Arc::clone(&stats), shutdown.clone());
            let options = options(1000 + index);
            tasks.spawn(async move {
                let run =
                    edgewatch_simulator::run_sensor(&broker, index, &options, stats, shutdown);
                if let Err(err) = run.await {
                    tracing::warn!(%err, "A simulated sensor stopped");
                }
            });
        }
    }
    Ok(tasks)
}
