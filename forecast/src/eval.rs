//! Walk-forward evaluation of next-day maximum temperature.
//!
//! The last `test_days` days are the test. Each test day is predicted by a model fitted on every
//! day before it (refitted daily, as a device would), and scored by absolute error. The ridge
//! penalty is chosen the same way on the `test_days` days before the test, so the test is never
//! looked at to choose it. Baselines: persistence (tomorrow = today) and climatology (the mean of
//! the same calendar day in earlier years).

use std::time::{Duration, Instant};

use crate::{
    daily::Day,
    features::{HISTORY, row},
    ridge::{FitError, Ridge},
};

/// Penalties tried by model selection.
pub const ALPHAS: [f64; 7] = [2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0];

#[derive(Debug, Clone)]
pub struct Report {
    pub test_days: usize,
    pub first_test_day: time::Date,
    pub last_test_day: time::Date,
    pub persistence_mae: f64,
    pub climatology_mae: f64,
    /// Validation MAE of each penalty tried.
    pub validation: Vec<(f64, f64)>,
    pub alpha: f64,
    pub ridge_mae: f64,
    pub median_fit: Duration,
    pub training_rows: usize,
    /// Per test day: (model error, persistence error, climatology error), signed (actual − predicted).
    pub test_errors: Vec<(f64, f64, f64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error(
        "{have} days are too few: the evaluation needs {need} ({HISTORY} of history plus two periods of {test_days})"
    )]
    TooShort { have: usize, need: usize, test_days: usize },
    #[error(transparent)]
    Fit(#[from] FitError),
}

/// Runs the evaluation on `days` (consecutive, oldest first).
pub fn walk_forward(days: &[Day], test_days: usize) -> Result<Report, EvalError> {
    let need = HISTORY + 2 * test_days + 100;
    if days.len() < need || test_days == 0 {
        return Err(EvalError::TooShort { have: days.len(), need, test_days });
    }
    // Row for target day j is built at day j - 1.
    let targets: Vec<usize> = (HISTORY..days.len()).collect();
    let rows: Vec<Vec<f64>> =
        targets.iter().filter_map(|&j| row(days, j - 1).map(|r| r.to_vec())).collect();
    let values: Vec<f64> = targets.iter().map(|&j| days[j].temp_max_c).collect();
    let test_start = targets.len() - test_days;
    let validation_start = test_start - test_days;

    let mut fit_times = Vec::new();
    let mut errors = |alpha: f64, range: std::ops::Range<usize>| -> Result<Vec<f64>, EvalError> {
        let mut out = Vec::with_capacity(range.len());
        for i in range {
            let started = Instant::now();
            let model = Ridge::fit(&rows[..i], &values[..i], alpha)?;
            fit_times.push(started.elapsed());
            out.push(values[i] - model.predict(&rows[i])?);
        }
        Ok(out)
    };
    let mae = |errors: &[f64]| errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
    let mut validation = Vec::new();
    for alpha in ALPHAS {
        validation.push((alpha, mae(&errors(alpha, validation_start..test_start)?)));
    }
    let (alpha, _) = validation
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((ALPHAS[0], f64::NAN));
    let model_errors = errors(alpha, test_start..targets.len())?;
    let ridge_mae = mae(&model_errors);

    let test_targets = &targets[test_start..];
    let persistence_errors: Vec<f64> =
        test_targets.iter().map(|&j| days[j].temp_max_c - days[j - 1].temp_max_c).collect();
    let climatology_errors: Vec<f64> =
        test_targets.iter().map(|&j| days[j].temp_max_c - climatology(days, j)).collect();
    let persistence_mae = mae(&persistence_errors);
    let climatology_mae = mae(&climatology_errors);
    fit_times.sort_unstable();
    Ok(Report {
        test_days,
        first_test_day: days[test_targets[0]].date,
        last_test_day: days[days.len() - 1].date,
        persistence_mae,
        climatology_mae,
        validation,
        alpha,
        ridge_mae,
        median_fit: fit_times[fit_times.len() / 2],
        training_rows: test_start,
        test_errors: model_errors
            .into_iter()
            .zip(persistence_errors)
            .zip(climatology_errors)
            .map(|((m, p), c)| (m, p, c))
            .collect(),
    })
}

/// The mean maximum of the same month and day in the years before day `j`'s; the 30-day mean
/// before `j` when there is no earlier year.
fn climatology(days: &[Day], j: usize) -> f64 {
    let target = days[j].date;
    let same: Vec<f64> = days[..j]
        .iter()
        .filter(|d| d.date.month() == target.month() && d.date.day() == target.day())
        .map(|d| d.temp_max_c)
        .collect();
    if same.is_empty() {
        let window = &days[j.saturating_sub(30)..j];
        window.iter().map(|d| d.temp_max_c).sum::<f64>() / window.len().max(1) as f64
    } else {
        same.iter().sum::<f64>() / same.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daily;

    fn seattle() -> Vec<Day> {
        daily::load(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/seattle-weather.csv"
        )))
        .unwrap()
    }

    #[test]
    fn seattle_walk_forward_matches_the_known_baseline_and_beats_it() {
        let report = walk_forward(&seattle(), 365).unwrap();
        assert_eq!(report.first_test_day.to_string(), "2015-01-01");
        // The reference: persistence scores 2.24 °C on this split.
        assert!((report.persistence_mae - 2.24).abs() < 0.005, "{report:?}");
        assert!(report.ridge_mae < report.persistence_mae - 0.15, "{report:?}");
        assert!(report.ridge_mae < report.climatology_mae, "{report:?}");
        // The target (2.05 °C); today's result is 2.034, see docs/benchmarks.md.
        assert!(report.ridge_mae <= 2.05, "{report:?}");
        assert_eq!(report.test_errors.len(), 365);
        let model_mae = report.test_errors.iter().map(|e| e.0.abs()).sum::<f64>() / 365.0;
        assert!((model_mae - report.ridge_mae).abs() < 1e-12);
    }

    #[test]
    fn too_little_data_is_a_typed_error() {
        let days = seattle();
        assert!(matches!(walk_forward(&days[..500], 365), Err(EvalError::TooShort { .. })));
        assert!(matches!(walk_forward(&days, 0), Err(EvalError::TooShort { .. })));
    }
}
