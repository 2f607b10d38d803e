//! The `edgewatch` command as a user runs it.

use std::process::Command;

fn edgewatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgewatch")).args(args).output().expect("run edgewatch")
}

#[test]
fn validate_accepts_the_example_batch() {
    let out = edgewatch(&[
        "protocol",
        "validate",
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/batch.json"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("valid: device 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b with 2 readings"),
        "{stdout}"
    );
}

#[test]
fn validate_names_the_bad_field_and_fails() {
    let dir = std::env::temp_dir().join(format!("edgewatch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.json");
    std::fs::write(
        &file,
        r#"{"device_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            "readings": [{"seq": 1, "ts": "2026-11-26T20:00:00Z", "metrics": {"Temp C": 1}}]}"#,
    )
    .unwrap();
    let out = edgewatch(&["protocol", "validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HTTP 422") && stderr.contains("readings[0].metrics"), "{stderr}");

    let missing = edgewatch(&["protocol", "validate", "/nonexistent/batch.json"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn help_explains_the_commands() {
    let out = edgewatch(&["protocol", "validate", "--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Check a telemetry batch"));
}

#[test]
fn forecast_eval_prints_the_three_maes() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/forecast/data/seattle-weather.csv");
    let out = edgewatch(&["forecast", "eval", "--data", data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in ["persistence            MAE 2.240", "climatology            MAE", "ridge (alpha"] {
        assert!(stdout.contains(line), "{line} missing in {stdout}");
    }
    let missing = edgewatch(&["forecast", "eval", "--data", "/nonexistent.csv"]);
    assert_eq!(missing.status.code(), Some(2));
}
