//! Each collector on the machine running the tests: names valid, values plausible.

use super::*;

fn collect(family: Family) -> BTreeMap<MetricName, f64> {
    let mut host = HostCollector::new().unwrap();
    host.collect(&[family])
}

fn names(metrics: &BTreeMap<MetricName, f64>) -> Vec<&str> {
    metrics.keys().map(MetricName::as_str).collect()
}

#[test]
fn cpu_usage_overall_and_per_core() {
    let mut host = HostCollector::new().unwrap();
    host.collect(&[Family::Cpu]);
    std::thread::sleep(
        sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(std::time::Duration::from_millis(250)),
    );
    // Burn a little CPU so the second sample has something to see.
    let mut x = 0u64;
    for i in 0..5_000_000u64 {
        x = x.wrapping_add(i * i);
    }
    assert!(x > 0);
    let metrics = host.collect(&[Family::Cpu]);
    let total = metrics["cpu.usage_pct"];
    assert!((0.0..=100.0).contains(&total), "cpu.usage_pct = {total}");
    let cores = std::thread::available_parallelism().unwrap().get();
    let per_core: Vec<_> =
        metrics.iter().filter(|(k, _)| k.as_str().starts_with("cpu.core")).collect();
    assert!(per_core.len() >= cores, "{:?}", names(&metrics));
    for (name, value) in per_core {
        assert!(name.as_str().ends_with(".usage_pct"), "{name}");
        assert!((0.0..=100.0).contains(value), "{name} = {value}");
    }
    assert!(metrics.contains_key("cpu.core0.usage_pct"));
}

#[test]
fn load_averages_match_proc_loadavg() {
    let metrics = collect(Family::Load);
    assert_eq!(names(&metrics), vec!["load.15m", "load.1m", "load.5m"]);
    let proc: Vec<f64> = std::fs::read_to_string("/proc/loadavg")
        .unwrap()
        .split_whitespace()
        .take(3)
        .map(|v| v.parse().unwrap())
        .collect();
    for (name, from_proc) in ["load.1m", "load.5m", "load.15m"].iter().zip(proc) {
        let value = metrics[*name];
        assert!(value >= 0.0);
        assert!((value - from_proc).abs() < 2.0, "{name} {value} vs /proc {from_proc}");
    }
}

#[test]
fn memory_is_consistent() {
    let metrics = collect(Family::Mem);
    let (total, used, available) =
        (metrics["mem.total_bytes"], metrics["mem.used_bytes"], metrics["mem.available_bytes"]);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!((total - kib * 1024.0).abs() < 1024.0 * 1024.0, "total {total} vs meminfo {kib} KiB");
    assert!(used > 0.0 && used <= total, "used {used} of {total}");
    assert!(available > 0.0 && available <= total);
    assert!(metrics["swap.used_bytes"] >= 0.0);
}

#[test]
fn disks_report_used_below_total() {
    let metrics = collect(Family::Disk);
    assert!(!metrics.is_empty(), "no disk found");
    for (name, value) in &metrics {
        let name = name.as_str();
        assert!(name.starts_with("disk."), "{name}");
        if let Some(mount) = name.strip_suffix(".used_bytes") {
            let total = metrics[format!("{mount}.total_bytes").as_str()];
            assert!(*value <= total && total > 0.0, "{name}: {value} of {total}");
        } else {
            assert!(name.ends_with(".total_bytes"), "{name}");
        }
    }
    assert_eq!(mount_segment("/"), "root");
    assert_eq!(mount_segment("/boot/firmware"), "boot_firmware");
}

#[test]
fn network_counters_for_every_interface_but_loopback() {
    let metrics = collect(Family::Net);
    let ifaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    assert!(!ifaces.is_empty(), "this machine has no network interface but lo");
    for iface in ifaces {
        let seg = MetricName::sanitize_segment(&iface);
        let rx = metrics.get(format!("net.{seg}.rx_bytes").as_str());
        let tx = metrics.get(format!("net.{seg}.tx_bytes").as_str());
        assert!(rx.is_some() && tx.is_some(), "{iface}: {:?}", names(&metrics));
        let sysfs: f64 =
            std::fs::read_to_string(format!("/sys/class/net/{iface}/statistics/rx_bytes"))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
        assert!(*rx.unwrap() <= sysfs, "counters only grow: {rx:?} then {sysfs}");
    }
    assert!(!metrics.keys().any(|k| k.as_str().starts_with("net.lo.")));
}

#[test]
fn uptime_and_process_count() {
    let metrics = collect(Family::System);
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((metrics["uptime_s"] - uptime).abs() < 5.0, "{} vs {uptime}", metrics["uptime_s"]);
    let procs = metrics["procs.count"];
    assert!((1.0..1_000_000.0).contains(&procs), "procs.count = {procs}");
}

#[test]
fn temperatures_of_this_machine_match_its_thermal_zones() {
    let metrics = collect(Family::Temp);
    let readable = std::fs::read_dir("/sys/class/thermal")
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
                .filter(|e| std::fs::read_to_string(e.path().join("temp")).is_ok())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(metrics.len(), readable, "{:?}", names(&metrics));
    for (name, celsius) in &metrics {
        assert!(name.as_str().starts_with("temp.") && name.as_str().ends_with("_c"));
        assert!((-40.0..=150.0).contains(celsius), "{name} = {celsius}");
    }
}

#[test]
fn thermal_zones_are_parsed_from_the_sysfs_layout() {
    // The layout of a Raspberry Pi 4 plus a duplicate type and a zone that cannot be read.
    let root = std::env::temp_dir()
        .join(format!("edgewatch-thermal-{}", edgewatch_protocol::DeviceId::new()));
    for (zone, kind, temp) in [
        ("thermal_zone0", "cpu-thermal\n", Some("48686\n")),
        ("thermal_zone1", "acpitz\n", Some("-5000\n")),
        ("thermal_zone2", "acpitz\n", Some("30000\n")),
        ("thermal_zone3", "broken\n", None),
    ] {
        let dir = root.join(zone);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("type"), kind).unwrap();
        if let Some(temp) = temp {
            std::fs::write(dir.join("temp"), temp).unwrap();
        }
    }
    std::fs::create_dir_all(root.join("cooling_device0")).unwrap();
    assert_eq!(
        read_thermal_zones(&root),
        vec![
            ("cpu_thermal".to_owned(), 48.686),
            ("acpitz_1".to_owned(), -5.0),
            ("acpitz_2".to_owned(), 30.0)
        ]
    );
    let mut host = HostCollector::new().unwrap();
    host.thermal_root = root;
    let metrics = host.collect(&[Family::Temp]);
    assert_eq!(names(&metrics), vec!["temp.acpitz_1_c", "temp.acpitz_2_c", "temp.cpu_thermal_c"]);
}

#[test]
fn every_family_together_gives_one_valid_reading() {
    let mut host = HostCollector::new().unwrap();
    let metrics = host.collect(&Family::ALL);
    assert!(metrics.len() <= edgewatch_protocol::limits::MAX_METRICS);
    for name in ["cpu.usage_pct", "load.1m", "mem.total_bytes", "uptime_s", "procs.count"] {
        assert!(metrics.contains_key(name), "{name} missing: {:?}", names(&metrics));
    }
}
