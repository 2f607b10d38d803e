//! Thermal zones read from sysfs (`/sys/class/thermal/thermal_zone<N>/{type,temp}`, millidegrees
//! Celsius). This is where a Raspberry Pi reports its SoC temperature (`cpu-thermal`), and it
//! costs two small reads per zone.

use std::{collections::BTreeMap, path::Path};

use edgewatch_protocol::MetricName;

/// `(sensor name segment, degrees Celsius)` of every readable zone under `root`, sorted by zone
/// number. Two zones of the same type get their zone number appended (`acpitz_1`). Zones that
/// cannot be read right now (some report `EINVAL` while powered down) are skipped.
pub fn read_thermal_zones(root: &Path) -> Vec<(String, f64)> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut zones: BTreeMap<u32, (String, f64)> = BTreeMap::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(number) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("thermal_zone"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = entry.path();
        let kind = std::fs::read_to_string(dir.join("type"))
            .map(|t| MetricName::sanitize_segment(t.trim()))
            .unwrap_or_default();
        let kind = if kind.is_empty() { format!("zone{number}") } else { kind };
        let Some(millis) = std::fs::read_to_string(dir.join("temp"))
            .ok()
            .and_then(|t| t.trim().parse::<i64>().ok())
        else {
            continue;
        };
        zones.insert(number, (kind, millis as f64 / 1000.0));
    }
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (kind, _) in zones.values() {
        *seen.entry(kind.clone()).or_default() += 1;
    }
    zones
        .into_iter()
        .map(
            |(number, (kind, celsius))| {
                if seen[&kind] > 1 {
                    (format!("{kind}_{number}"), celsius)
                } else {
                    (kind, celsius)
                }
            },
        )
        .collect()
}
