//! The operator commands on a buffer a real process wrote.

use std::process::Command;

use super::cloud::temp_dir;

fn agent(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn status_and_export_read_the_buffer() {
    let dir = temp_dir();
    let missing = agent(&dir, &["status"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no buffer"));

    // A real agent run without uplink collects into the buffer; stop it after two cycles.
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
        .arg("--data-dir")
        .arg(&dir)
        .args(["run", "--uplink", "none", "--interval", "0.2"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();

    let status = agent(&dir, &["status", "--json"]);
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let stats: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let pending = stats["pending_readings"].as_u64().unwrap();
    assert!(pending >= 2, "{stats}");
    assert_eq!(stats["device_id"], serde_json::Value::Null);
    let text = agent(&dir, &["status"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains(&format!("pending readings:     {pending}"))
    );

    let jsonl = agent(&dir, &["buffer", "export", "--format", "jsonl"]);
    assert!(jsonl.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, pending);
    assert!(lines.iter().all(|r| r["metrics"]["mem.total_bytes"].as_f64().unwrap() > 0.0));
    assert!(
        lines
            .windows(2)
            .all(|w| w[0]["seq"].as_u64().unwrap() + 1 == w[1]["seq"].as_u64().unwrap())
    );

    let csv = agent(&dir, &["buffer", "export", "--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("seq,ts,metric,value"));
    let metrics_total: usize = lines.iter().map(|r| r["metrics"].as_object().unwrap().len()).sum();
    assert_eq!(rows.clone().count(), metrics_total);
    assert!(rows.any(|r| r.contains(",cpu.usage_pct,")));
}

#[test]
fn help_names_every_command() {
    let help = agent(&temp_dir(), &["--help"]);
    let text = String::from_utf8(help.stdout).unwrap();
    for command in ["run", "enroll", "status", "buffer"] {
        assert!(text.contains(command), "{text}");
    }
    assert!(!text.contains("debug-fill"));
}
