//! `edgewatch forecast plot|report` as a user runs them: charts written, numbers printed, bad
//! input named.

use std::{path::PathBuf, process::Command};

fn edgewatch(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgewatch")).args(args).output().expect("run edgewatch")
}

fn data(name: &str) -> String {
    format!("{}/forecast/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("forecast-cli-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn is_png(path: &PathBuf) -> bool {
    std::fs::read(path).is_ok_and(|b| b.starts_with(b"\x89PNG\r\n\x1a\n"))
}

#[test]
fn plot_forecasts_a_csv_column_and_writes_both_charts() {
    let out = out_dir("plot");
    let run = edgewatch(&[
        "forecast",
        "plot",
        "--data",
        &data("seattle-weather-hourly-normals.csv"),
        "--column",
        "temperature",
        "--horizon",
        "24h",
        "--last",
        "1500",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("backtest MAE") && stdout.contains("candidates"), "{stdout}");
    let json_line = stdout.lines().find(|l| l.starts_with('{')).expect("the JSON answer");
    let json: serde_json::Value = serde_json::from_str(json_line).unwrap();
    assert_eq!(json["points"].as_array().unwrap().len(), 24);
    assert_eq!(json["trained_on"]["to"], "2010-12-31T23:00:00Z");
    assert!(json["mae_backtest"].as_f64().unwrap() < 1.0, "{json}");
    assert!(is_png(&out.join("forecast.png")));
    assert!(is_png(&out.join("backtest-errors.png")));
}

#[test]
fn plot_names_bad_input() {
    let out = out_dir("bad");
    let normals = data("seattle-weather-hourly-normals.csv");
    let cases: [(&[&str], &str); 3] = [
        (&["--column", "humidity"], "no column `humidity`"),
        (&["--column", "temperature", "--horizon", "soon"], "horizon `soon`"),
        (&["--column", "temperature", "--horizon", "5000h"], "at most"),
    ];
    for (extra, message) in cases {
        let mut args = vec!["forecast", "plot", "--data", &normals, "--out", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let run = edgewatch(&args);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(message), "{extra:?}: {stderr}");
    }
    // A file that cannot be read or parsed exits with 2, like `protocol validate`.
    let bad_file = out.join("bad.csv");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(&bad_file, "date,temperature\nyesterday,1\n").unwrap();
    for file in [bad_file.to_str().unwrap(), "/nonexistent.csv"] {
        let run = edgewatch(&["forecast", "plot", "--data", file, "--column", "temperature"]);
        assert_eq!(run.status.code(), Some(2), "{}", String::from_utf8_lossy(&run.stderr));
    }
}

#[test]
fn report_prints_the_three_maes_and_writes_the_error_chart() {
    let out = out_dir("report");
    let run = edgewatch(&[
        "forecast",
        "report",
        "--data",
        &data("seattle-weather.csv"),
        // A shorter test span keeps this quick; the full-year target is asserted in
        // forecast/src/eval.rs.
        "--test-days",
        "120",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let mae = |name: &str| -> f64 {
        let line = stdout.lines().find(|l| l.trim_start().starts_with(name)).unwrap();
        let after = line.split("MAE ").nth(1).unwrap();
        after.split_whitespace().next().unwrap().parse().unwrap()
    };
    assert!(mae("ridge") < mae("persistence"), "{stdout}");
    assert!(mae("ridge") < mae("climatology"), "{stdout}");
    assert!(stdout.contains("(2015-09-03 .. 2015-12-31)"), "{stdout}");
    assert!(is_png(&out.join("eval-errors.png")));
}
