//! `edgewatch forecast ...`: the evaluation, a forecast of any CSV series with its charts, and a
//! report (evaluation + error chart). Kept out of main.rs so the umbrella's other subcommands and
//! this one change independently; the work itself lives in the forecast crate.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::Subcommand;
use edgewatch_forecast::{daily, eval, plot, series, table};

#[derive(Subcommand)]
pub enum ForecastCommand {
    /// Walk-forward evaluation of next-day maximum temperature on a daily weather CSV
    /// (`date,precipitation,temp_max,temp_min,wind,weather`, e.g. forecast/data/seattle-weather.csv):
    /// the model against persistence and climatology, MAE in °C.
    Eval {
        /// The daily weather CSV.
        #[arg(long)]
        data: PathBuf,
        /// Days at the end of the file to test on (the same number before them choose the model).
        #[arg(long, default_value_t = 365)]
        test_days: usize,
    },
    /// Forecast one column of a CSV series (first column = time) with the model a walk-forward
    /// backtest picks, print it, and write `forecast.png` (history + forecast + 10-90 % band)
    /// and `backtest-errors.png` into --out.
    /// Example: --data forecast/data/seattle-weather-hourly-normals.csv --column temperature --horizon 48h
    Plot {
        /// CSV with a header; times as RFC 3339, YYYY-MM-DDTHH:MM:SS (UTC) or YYYY-MM-DD.
        #[arg(long)]
        data: PathBuf,
        /// The column to forecast.
        #[arg(long)]
        column: String,
        /// How far ahead: a number and a unit s, m, h or d.
        #[arg(long, default_value = "24h")]
        horizon: String,
        /// Use only the last N points of the file (0 = all).
        #[arg(long, default_value_t = 0)]
        last: usize,
        /// Directory for the PNG files (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Also print the forecast as the /api/v1/forecast JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// `eval`, plus `eval-errors.png` in --out: the 7-day mean absolute error of the model,
    /// persistence and climatology over the test days.
    Report {
        /// The daily weather CSV.
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value_t = 365)]
        test_days: usize,
        /// Directory for the PNG file (created if missing).
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
}

/// Why a command failed; `Input` (the data file cannot be read or parsed) exits with 2, like
/// `protocol validate`, everything else with 1.
enum Failure {
    Input(String),
    Other(String),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Other(message)
    }
}

pub fn run(command: ForecastCommand) -> ExitCode {
    let result = match command {
        ForecastCommand::Eval { data, test_days } => evaluate(&data, test_days).map(|_| ()),
        ForecastCommand::Report { data, test_days, out } => report(&data, test_days, &out),
        ForecastCommand::Plot { data, column, horizon, last, out, json } => {
            forecast_plot(&data, &column, &horizon, last, &out, json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Input(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
fn evaluate(data: &Path, test_days: usize) -> Result<eval::Report, Failure> {
    let days = daily::load(data).map_err(|e| Failure::Input(format!("{}: {e}", data.display())))?;
    eprintln!(
        "Fitting {} models (walk-forward, refitted daily)...",
        test_days * (eval::ALPHAS.len() + 1)
    );
    let report = eval::walk_forward(&days, test_days).map_err(|e| e.to_string())?;
    println!(
        "next-day temp_max, walk-forward over {} days ({} .. {})",
        report.test_days, report.first_test_day, report.last_test_day
    );
    println!("  persistence            MAE {:.3} °C", report.persistence_mae);
    println!("  climatology            MAE {:.3} °C", report.climatology_mae);
    println!("  ridge (alpha {:<4})      MAE {:.3} °C", report.alpha, report.ridge_mae);
    let tried: Vec<String> =
        report.validation.iter().map(|(a, m)| format!("{a}: {m:.3}")).collect();
    println!(
        "  alpha chosen on the {} days before the test (validation MAE {})",
        report.test_days,
        tried.join(", ")
    );
    println!(
        "  training: median {:.2} ms per fit ({} rows x {} features at the test start)",
        report.median_fit.as_secs_f64() * 1e3,
        report.training_rows,
        edgewatch_forecast::features::WIDTH
    );
    Ok(report)
}

fn out_dir(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out)
        .map_err(|e| format!("cannot create the output directory {}: {e}", out.display()))
}

#[allow(clippy::print_stdout)]
fn report(data: &Path, test_days: usize, out: &Path) -> Result<(), Failure> {
    let report = evaluate(data, test_days)?;
    out_dir(out)?;
    let path = out.join("eval-errors.png");
    let curve = |f: fn(&(f64, f64, f64)) -> f64| {
        let abs: Vec<f64> = report.test_errors.iter().map(|e| f(e).abs()).collect();
        plot::rolling_mean(&abs, 7)
    };
    let title = format!(
        "Next-day temp_max, |error| (7-day mean), {} .. {}",
        report.first_test_day, report.last_test_day
    );
    plot::errors_chart(
        &path,
        &title,
        "test day",
        "°C",
        &[
            (&format!("ridge, MAE {:.3}", report.ridge_mae), curve(|e| e.0)),
            (&format!("persistence, MAE {:.3}", report.persistence_mae), curve(|e| e.1)),
            (&format!("climatology, MAE {:.3}", report.climatology_mae), curve(|e| e.2)),
        ],
        plot::SIZE,
    )
    .map_err(|e| e.to_string())?;
    println!("wrote {}", path.display());
    Ok(())
}

#[allow(clippy::print_stdout)]
fn forecast_plot(
    data: &Path,
    column: &str,
    horizon: &str,
    last: usize,
    out: &Path,
    json: bool,
) -> Result<(), Failure> {
    let horizon = series::parse_horizon(horizon).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(data)
        .map_err(|e| Failure::Input(format!("cannot read {}: {e}", data.display())))?;
    let mut points = table::read(&text, column).map_err(|e| {
        let message = format!("{}: {e}", data.display());
        match e {
            table::TableError::NoColumn { .. } => Failure::Other(message),
            _ => Failure::Input(message),
        }
    })?;
    if last > 0 && points.len() > last {
        points.drain(..points.len() - last);
    }
    let started = std::time::Instant::now();
    let forecast = series::forecast(&points, &series::Request { horizon, covariate: None })
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    println!(
        "{column}: model {}, trained on {} points ({} .. {}), backtest MAE {}",
        forecast.model,
        forecast.trained_on.points,
        series::rfc3339(forecast.trained_on.from),
        series::rfc3339(forecast.trained_on.to),
        forecast.mae_backtest.map_or("n/a".into(), |m| format!("{m:.3}")),
    );
    if let Some(reason) = &forecast.fallback_reason {
        println!("  fallback: {reason}");
    }
    let tried: Vec<String> =
        forecast.candidates.iter().map(|(n, m)| format!("{n} {m:.3}")).collect();
    if !tried.is_empty() {
        println!("  candidates (backtest MAE): {}", tried.join(", "));
    }
    println!(
        "  {} steps forecast in {:.0} ms (selection + fit)",
        forecast.points.len(),
        took.as_secs_f64() * 1e3
    );
    if json {
        println!("{}", serde_json::to_string(&forecast).map_err(|e| e.to_string())?);
    }
    out_dir(out)?;
    let shown = (forecast.points.len() * 4).max(48).min(points.len());
    let chart = out.join("forecast.png");
    plot::forecast_chart(
        &chart,
        column,
        "",
        &points[points.len() - shown..],
        &forecast,
        plot::SIZE,
    )
    .map_err(|e| e.to_string())?;
    let errors = out.join("backtest-errors.png");
    let abs: Vec<f64> = forecast.backtest_residuals.iter().map(|r| r.abs()).collect();
    plot::errors_chart(
        &errors,
        &format!("{column}: backtest |error| of {}, fold after fold", forecast.model),
        "backtest step",
        "|error|",
        &[(forecast.model.as_str(), abs)],
        plot::SIZE,
    )
    .map_err(|e| e.to_string())?;
    println!("wrote {} and {}", chart.display(), errors.display());
    Ok(())
}
