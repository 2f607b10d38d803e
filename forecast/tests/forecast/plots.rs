//! The charts are real PNG files of the asked size.

use std::{path::PathBuf, time::Duration};

use edgewatch_forecast::{plot, series};

use crate::replay::normals;

/// Width and height from a PNG's IHDR chunk, after checking the signature.
fn png_size(path: &PathBuf) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

fn out(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("forecast-plots");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[test]
fn forecast_and_error_charts_are_pngs_of_the_expected_size() {
    let history: Vec<series::Point> = normals().into_iter().take(24 * 21).collect();
    let forecast = series::forecast(
        &history,
        &series::Request { horizon: Duration::from_secs(48 * 3600), covariate: None },
    )
    .unwrap();
    let chart = out("forecast.png");
    plot::forecast_chart(
        &chart,
        "Seattle temperature",
        "°C",
        &history[history.len() - 24 * 7..],
        &forecast,
        (800, 400),
    )
    .unwrap();
    assert_eq!(png_size(&chart), (800, 400));

    let errors = out("errors.png");
    let abs: Vec<f64> = forecast.backtest_residuals.iter().map(|r| r.abs()).collect();
    plot::errors_chart(
        &errors,
        "Backtest errors",
        "step",
        "|error| °C",
        &[("model", abs)],
        plot::SIZE,
    )
    .unwrap();
    assert_eq!(png_size(&errors), plot::SIZE);
    // Something was drawn: a blank white chart compresses to almost nothing.
    assert!(std::fs::metadata(&chart).unwrap().len() > 5_000);
}

#[test]
fn an_unwritable_path_is_an_error_not_a_panic() {
    let history: Vec<series::Point> = normals().into_iter().take(48).collect();
    let forecast = series::forecast(
        &history,
        &series::Request { horizon: Duration::from_secs(3600), covariate: None },
    )
    .unwrap();
    let path = out("missing-dir").join("nested").join("chart.png");
    assert!(plot::forecast_chart(&path, "t", "°C", &history, &forecast, (300, 200)).is_err());
}
