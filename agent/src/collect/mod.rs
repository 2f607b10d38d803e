//! Host collectors: the metric names of API.md ("Host metric names the agent emits"), one small
//! function per family so each can be switched off by remote config and tested on its own.
//!
//! sysinfo covers CPU, memory, disks and network; the thermal zones and the process count are
//! read straight from `/sys` and `/proc`, which is cheaper and works on ARM boards where
//! sysinfo's component list is empty.

pub mod sensors;
mod thermal;

use std::{collections::BTreeMap, path::PathBuf};

use edgewatch_protocol::MetricName;
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, Networks, RefreshKind, System};

pub use thermal::read_thermal_zones;

/// One family of host metrics.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `cpu.usage_pct`, `cpu.core<N>.usage_pct`
    Cpu,
    /// `load.1m|5m|15m`
    Load,
    /// `mem.total_bytes|used_bytes|available_bytes`, `swap.used_bytes`
    Mem,
    /// `disk.<mount>.used_bytes|total_bytes`
    Disk,
    /// `net.<iface>.rx_bytes|tx_bytes` (counters since boot)
    Net,
    /// `temp.<sensor>_c`
    Temp,
    /// `uptime_s`, `procs.count`
    System,
}

impl Family {
    pub const ALL: [Family; 7] =
        [Self::Cpu, Self::Load, Self::Mem, Self::Disk, Self::Net, Self::Temp, Self::System];
}

/// The collectors' state: sysinfo needs the previous CPU sample to compute usage.
pub struct HostCollector {
    system: System,
    disks: Disks,
    networks: Networks,
    thermal_root: PathBuf,
    proc_root: PathBuf,
}

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCollector").field("thermal_root", &self.thermal_root).finish()
    }
}

impl HostCollector {
    pub fn new() -> crate::Result<Self> {
        let refresh = RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::everything());
        let system = System::new_with_specifics(refresh)
            .map_err(|e| crate::AgentError::Config(format!("cannot read the host: {e:?}")))?;
        let disks = Disks::new_with_refreshed_list()
            .map_err(|e| crate::AgentError::Config(format!("cannot list disks: {e:?}")))?;
        let networks = Networks::new_with_refreshed_list()
            .map_err(|e| crate::AgentError::Config(format!("cannot list networks: {e:?}")))?;
        Ok(Self {
            system,
            disks,
            networks,
            thermal_root: PathBuf::from("/sys/class/thermal"),
            proc_root: PathBuf::from("/proc"),
        })
    }

    /// Collects the enabled families into one reading's metrics.
    pub fn collect(&mut self, families: &[Family]) -> BTreeMap<MetricName, f64> {
        let mut out = Metrics::default();
        for family in families {
            match family {
                Family::Cpu => self.cpu(&mut out),
                Family::Load => load(&mut out),
                Family::Mem => self.mem(&mut out),
                Family::Disk => self.disk(&mut out),
                Family::Net => self.net(&mut out),
                Family::Temp => {
                    for (name, celsius) in read_thermal_zones(&self.thermal_root) {
                        out.put(format!("temp.{name}_c"), celsius);
                    }
                }
                Family::System => self.system_info(&mut out),
            }
        }
        out.0
    }

    pub fn cpu(&mut self, out: &mut Metrics) {
        self.system.refresh_cpu_usage();
        out.put("cpu.usage_pct".into(), f64::from(self.system.global_cpu_usage()));
        for (n, cpu) in self.system.cpus().iter().enumerate() {
            out.put(format!("cpu.core{n}.usage_pct"), f64::from(cpu.usage()));
        }
    }

    pub fn mem(&mut self, out: &mut Metrics) {
        self.system.refresh_memory();
        out.put("mem.total_bytes".into(), self.system.total_memory() as f64);
        out.put("mem.used_bytes".into(), self.system.used_memory() as f64);
        out.put("mem.available_bytes".into(), self.system.available_memory() as f64);
        out.put("swap.used_bytes".into(), self.system.used_swap() as f64);
    }

    pub fn disk(&mut self, out: &mut Metrics) {
        self.disks.refresh(true);
        for disk in self.disks.iter() {
            let mount = mount_segment(&disk.mount_point().to_string_lossy());
            let total = disk.total_space();
            out.put(format!("disk.{mount}.total_bytes"), total as f64);
            out.put(
                format!("disk.{mount}.used_bytes"),
                total.saturating_sub(disk.available_space()) as f64,
            );
        }
    }

    pub fn net(&mut self, out: &mut Metrics) {
        self.networks.refresh(true);
        for (name, data) in self.networks.iter() {
            let name = name.to_string_lossy();
            if name == "lo" {
                continue;
            }
            let iface = MetricName::sanitize_segment(&name);
            out.put(format!("net.{iface}.rx_bytes"), data.total_received() as f64);
            out.put(format!("net.{iface}.tx_bytes"), data.total_transmitted() as f64);
        }
    }

    pub fn system_info(&mut self, out: &mut Metrics) {
        if let Ok(uptime) = System::uptime() {
            out.put("uptime_s".into(), uptime as f64);
        }
        if let Ok(entries) = std::fs::read_dir(&self.proc_root) {
            let count = entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
                .count();
            out.put("procs.count".into(), count as f64);
        }
    }
}

pub fn load(out: &mut Metrics) {
    if let Ok(load) = System::load_average() {
        out.put("load.1m".into(), load.one);
        out.put("load.5m".into(), load.five);
        out.put("load.15m".into(), load.fifteen);
    }
}

/// `/` is `root`; other mounts lose their leading slash: `/boot/firmware` is `boot_firmware`.
pub fn mount_segment(mount: &str) -> String {
    let trimmed = mount.trim_matches('/');
    if trimmed.is_empty() { "root".into() } else { MetricName::sanitize_segment(trimmed) }
}

/// Metrics of one reading; names that are not valid (too long) or values that are not finite are
/// left out with a log line rather than poisoning the whole reading.
#[derive(Debug, Default)]
pub struct Metrics(pub BTreeMap<MetricName, f64>);

impl Metrics {
    pub fn put(&mut self, name: String, value: f64) {
        if !value.is_finite() {
            tracing::debug!(name, value, "Skipping a non-finite metric");
            return;
        }
        match MetricName::parse(name) {
            Ok(name) => {
                self.0.insert(name, value);
            }
            Err(err) => tracing::debug!(%err, "Skipping a metric with an unusable name"),
        }
    }
}

#[cfg(test)]
mod tests;
