//! Series in, forecast out: the one function the agent (on the device) and monitoring (the
//! `/api/v1/forecast` answer) call.
//!
//! Why this shape: device series are irregular, have gaps and NaNs, and are sometimes far too
//! short to learn from, yet a caller always wants an answer it can show. So the series is put on a
//! regular grid (median spacing; short gaps interpolated, long ones left out of training), a few
//! candidate models are scored by a walk-forward backtest over the most recent horizons, the best
//! one forecasts recursively, and its backtest residual quantiles give the band. When nothing can
//! be learned (too short, constant) the answer is persistence and says why. Features: lags (1–3
//! steps and one day), the mean of the last day, hour-of-day and day-of-year harmonics of the
//! predicted time, and optionally a covariate (e.g. open-meteo temperature) at that time.

use std::time::Duration;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use smartcore::{
    ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters},
    linalg::basic::matrix::DenseMatrix,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::ridge::Ridge;

/// A timestamped value.
pub type Point = (OffsetDateTime, f64);

/// What to forecast and with what.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// How far ahead (rounded up to whole steps of the series).
    pub horizon: Duration,
    /// A covariate known in the past and for the horizon (weather forecast), e.g. hourly
    /// temperature; used only when it covers the whole horizon.
    pub covariate: Option<&'a [Point]>,
}

/// The span the chosen model was trained on.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedOn {
    pub from: OffsetDateTime,
    pub to: OffsetDateTime,
    pub points: usize,
}

/// One forecast step: the value and its band (10 % and 90 % backtest residual quantiles).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForecastPoint {
    pub ts: OffsetDateTime,
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

/// A forecast with the model that made it (API.md `/api/v1/forecast` answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// `ridge`, `ridge+temperature`, `random_forest`, `seasonal_naive` or `persistence`.
    pub model: String,
    pub trained_on: TrainedOn,
    /// Mean absolute error of the chosen model in the walk-forward backtest; `None` when there was
    /// too little data to backtest (the answer is then persistence).
    pub mae_backtest: Option<f64>,
    /// Backtest MAE of every candidate tried, for reports.
    pub candidates: Vec<(String, f64)>,
    /// Why the model is a fallback (persistence), when it is.
    pub fallback_reason: Option<String>,
    pub points: Vec<ForecastPoint>,
    /// Signed backtest residuals (actual − predicted) of the chosen model, step by step.
    pub backtest_residuals: Vec<f64>,
}

/// `t` as RFC 3339 (`2026-11-26T20:00:00Z`), the contract's time format.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

impl Serialize for Forecast {
    /// `{model, trained_on: {from, to, points}, mae_backtest, points: [[ts, value, lo, hi]]}`
    /// plus `fallback_reason` when there is one.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Forecast", 5)?;
        s.serialize_field("model", &self.model)?;
        s.serialize_field(
            "trained_on",
            &serde_json::json!({
                "from": rfc3339(self.trained_on.from),
                "to": rfc3339(self.trained_on.to),
                "points": self.trained_on.points,
            }),
        )?;
        s.serialize_field("mae_backtest", &self.mae_backtest)?;
        let points: Vec<(String, f64, f64, f64)> =
            self.points.iter().map(|p| (rfc3339(p.ts), p.value, p.lo, p.hi)).collect();
        s.serialize_field("points", &points)?;
        if let Some(reason) = &self.fallback_reason {
            s.serialize_field("fallback_reason", reason)?;
        }
        s.end()
    }
}

/// Parses a horizon such as `24h`, `90m`, `7d`, `3600s` (a number and a unit).
pub fn parse_horizon(text: &str) -> Result<Duration, SeriesError> {
    let text = text.trim();
    let bad = || SeriesError::BadHorizon(text.to_owned());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let horizon = Duration::from_secs(n.checked_mul(seconds).ok_or_else(bad)?);
    if horizon.is_zero() {
        return Err(SeriesError::ZeroHorizon);
    }
    Ok(horizon)
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SeriesError {
    #[error("horizon `{0}` is not a number with a unit s, m, h or d (e.g. `24h`)")]
    BadHorizon(String),
    #[error("the series has no finite values: send at least one reading")]
    Empty,
    #[error("the horizon must be positive")]
    ZeroHorizon,
    #[error(
        "the horizon is {steps} steps of the series; at most {MAX_STEPS} are forecast (ask for a shorter horizon)"
    )]
    HorizonTooLong { steps: usize },
}

/// Most steps forecast at once.
pub const MAX_STEPS: usize = 2000;
/// Most grid points used (the newest); older ones add little and cost training time.
const MAX_GRID: usize = 5000;
/// Gaps up to this many steps are interpolated.
const MAX_INTERPOLATED_GAP: usize = 6;
/// Backtest origins (each one horizon long), newest first.
const FOLDS: usize = 3;
/// Rows the random forest trains on at most (the newest).
const FOREST_ROWS: usize = 1000;

/// The series on a regular grid: `values[k]` is at `start + k * step`, NaN where unknown.
struct Grid {
    start: OffsetDateTime,
    step: time::Duration,
    values: Vec<f64>,
}

impl Grid {
    fn at(&self, k: usize) -> OffsetDateTime {
        offset(self.start, self.step, k)
    }
}

/// `start + k * step`, saturating instead of overflowing.
fn offset(start: OffsetDateTime, step: time::Duration, k: usize) -> OffsetDateTime {
    let ms = step.whole_milliseconds().saturating_mul(k as i128);
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    start.checked_add(time::Duration::milliseconds(ms)).unwrap_or(start)
}

fn grid(series: &[Point]) -> Result<Grid, SeriesError> {
    let mut points: Vec<Point> = series.iter().copied().filter(|(_, v)| v.is_finite()).collect();
    if points.is_empty() {
        return Err(SeriesError::Empty);
    }
    points.sort_by_key(|p| p.0);
    let mut gaps: Vec<i128> = points
        .windows(2)
        .map(|w| (w[1].0 - w[0].0).whole_milliseconds())
        .filter(|d| *d > 0)
        .collect();
    gaps.sort_unstable();
    let step_ms = gaps.get(gaps.len() / 2).copied().unwrap_or(3_600_000).max(1);
    let step = time::Duration::milliseconds(i64::try_from(step_ms).unwrap_or(3_600_000));
    let first = points[0].0;
    let span_steps =
        ((points[points.len() - 1].0 - first).whole_milliseconds() + step_ms / 2) / step_ms;
    let len = usize::try_from(span_steps).unwrap_or(usize::MAX).saturating_add(1);
    let skip = len.saturating_sub(MAX_GRID);
    let len = len - skip;
    let start = offset(first, step, skip);
    let mut sums = vec![(0.0, 0u32); len];
    for (t, v) in points {
        let k = ((t - start).whole_milliseconds() + step_ms / 2).div_euclid(step_ms);
        if let Ok(k) = usize::try_from(k)
            && k < len
        {
            sums[k].0 += v;
            sums[k].1 += 1;
        }
    }
    let mut values: Vec<f64> = sums
        .iter()
        .map(|(s, n)| if *n == 0 || !s.is_finite() { f64::NAN } else { s / f64::from(*n) })
        .collect();
    // Interpolate short gaps linearly.
    let mut k = 0;
    while k < values.len() {
        if values[k].is_nan() {
            let gap_start = k;
            while k < values.len() && values[k].is_nan() {
                k += 1;
            }
            if gap_start > 0 && k < values.len() && k - gap_start <= MAX_INTERPOLATED_GAP {
                let (a, b) = (values[gap_start - 1], values[k]);
                let n = (k - gap_start + 1) as f64;
                for (i, slot) in values[gap_start..k].iter_mut().enumerate() {
                    *slot = a + (b - a) * (i + 1) as f64 / n;
                }
            }
        } else {
            k += 1;
        }
    }
    Ok(Grid { start, step, values })
}

/// Linear interpolation of a covariate at `t`; `None` outside its range or across a long gap.
fn covariate_at(covariate: &[Point], t: OffsetDateTime) -> Option<f64> {
    let i = covariate.partition_point(|p| p.0 < t);
    let after = covariate.get(i)?;
    if after.0 == t {
        return Some(after.1);
    }
    let before = covariate.get(i.checked_sub(1)?)?;
    let span = (after.0 - before.0).as_seconds_f64();
    if span > 6.0 * 3600.0 {
        return None;
    }
    Some(before.1 + (after.1 - before.1) * (t - before.0).as_seconds_f64() / span)
}

/// How rows are built for one series.
struct Layout<'a> {
    start: OffsetDateTime,
    step: time::Duration,
    /// Steps per day when the series is sub-daily and long enough to use a one-day lag.
    day: Option<usize>,
    covariate: Option<&'a [Point]>,
}

impl Layout<'_> {
    fn lookback(&self) -> usize {
        self.day.unwrap_or(3).max(3)
    }

    /// Features for the value at grid index `j` from `values[..j]`; `None` when any is unknown.
    fn row(&self, values: &[f64], j: usize) -> Option<Vec<f64>> {
        if j < self.lookback() {
            return None;
        }
        let mut r = vec![values[j - 1], values[j - 2], values[j - 3]];
        if let Some(day) = self.day {
            r.push(values[j - day]);
            r.push(values[j - day..j].iter().sum::<f64>() / day as f64);
        }
        let t = offset(self.start, self.step, j);
        let hour = f64::from(t.hour()) + f64::from(t.minute()) / 60.0;
        let h = std::f64::consts::TAU * hour / 24.0;
        let d = std::f64::consts::TAU * f64::from(t.ordinal()) / 365.25;
        r.extend([h.sin(), h.cos(), d.sin(), d.cos()]);
        if let Some(c) = self.covariate {
            r.push(covariate_at(c, t)?);
        }
        r.iter().all(|v| v.is_finite()).then_some(r)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Persistence,
    SeasonalNaive,
    Ridge,
    Forest,
}

enum Fitted {
    Persistence,
    SeasonalNaive(usize),
    Ridge {
        model: Ridge,
        keep: Vec<usize>,
    },
    Forest {
        model: Box<RandomForestRegressor<f64, f64, DenseMatrix<f64>, Vec<f64>>>,
        keep: Vec<usize>,
    },
}

/// Columns that vary in the training rows (a constant column breaks standardisation).
fn varying_columns(rows: &[Vec<f64>]) -> Vec<usize> {
    let width = rows.first().map_or(0, Vec::len);
    (0..width)
        .filter(|&c| {
            let first = rows[0][c];
            rows.iter().any(|r| (r[c] - first).abs() > 1e-9 * first.abs().max(1.0))
        })
        .collect()
}

fn pick(row: &[f64], keep: &[usize]) -> Vec<f64> {
    keep.iter().map(|&c| row[c]).collect()
}

fn fit(kind: Kind, layout: &Layout<'_>, values: &[f64]) -> Option<(Fitted, usize)> {
    match kind {
        Kind::Persistence => Some((Fitted::Persistence, 0)),
        Kind::SeasonalNaive => layout.day.map(|d| (Fitted::SeasonalNaive(d), 0)),
        Kind::Ridge | Kind::Forest => {
            let (mut rows, mut targets) = (Vec::new(), Vec::new());
            for j in layout.lookback()..values.len() {
                if values[j].is_finite()
                    && let Some(r) = layout.row(values, j)
                {
                    rows.push(r);
                    targets.push(values[j]);
                }
            }
            if kind == Kind::Forest && rows.len() > FOREST_ROWS {
                let cut = rows.len() - FOREST_ROWS;
                rows.drain(..cut);
                targets.drain(..cut);
            }
            let keep = if rows.is_empty() { Vec::new() } else { varying_columns(&rows) };
            if keep.is_empty() || rows.len() < 2 * keep.len() + 10 {
                return None;
            }
            let rows: Vec<Vec<f64>> = rows.iter().map(|r| pick(r, &keep)).collect();
            let n = rows.len();
            let fitted = if kind == Kind::Ridge {
                Fitted::Ridge { model: Ridge::fit(&rows, &targets, 1.0).ok()?, keep }
            } else {
                let flat: Vec<f64> = rows.iter().flatten().copied().collect();
                let x = DenseMatrix::new(n, keep.len(), flat, false).ok()?;
                let parameters = RandomForestRegressorParameters::default()
                    .with_n_trees(30)
                    .with_max_depth(8)
                    .with_min_samples_leaf(3)
                    .with_seed(42);
                let model = RandomForestRegressor::fit(&x, &targets, parameters).ok()?;
                Fitted::Forest { model: Box::new(model), keep }
            };
            Some((fitted, n))
        }
    }
}

impl Fitted {
    /// Forecasts `steps` values after `values` (recursively: each prediction feeds the next lags).
    fn forecast(&self, layout: &Layout<'_>, values: &[f64], steps: usize) -> Option<Vec<f64>> {
        let last = values.iter().rev().copied().find(|v| v.is_finite())?;
        let mut extended = values.to_vec();
        let mut out = Vec::with_capacity(steps);
        for _ in 0..steps {
            let j = extended.len();
            let next = match self {
                Fitted::Persistence => last,
                Fitted::SeasonalNaive(day) => {
                    let v = extended[j - day];
                    if v.is_finite() { v } else { last }
                }
                Fitted::Ridge { model, keep } => {
                    model.predict(&pick(&layout.row(&extended, j)?, keep)).ok()?
                }
                Fitted::Forest { model, keep } => {
                    let x = DenseMatrix::new(
                        1,
                        keep.len(),
                        pick(&layout.row(&extended, j)?, keep),
                        false,
                    )
                    .ok()?;
                    *model.predict(&x).ok()?.first()?
                }
            };
            if !next.is_finite() {
                return None;
            }
            extended.push(next);
            out.push(next);
        }
        Some(out)
    }
}

fn name(kind: Kind, covariate: bool) -> String {
    let base = match kind {
        Kind::Persistence => "persistence",
        Kind::SeasonalNaive => "seasonal_naive",
        Kind::Ridge => "ridge",
        Kind::Forest => "random_forest",
    };
    if covariate && matches!(kind, Kind::Ridge | Kind::Forest) {
        format!("{base}+covariate")
    } else {
        base.to_owned()
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The series' forecast for the requested horizon, with the model chosen by backtest.
pub fn forecast(series: &[Point], request: &Request<'_>) -> Result<Forecast, SeriesError> {
    if request.horizon.is_zero() {
        return Err(SeriesError::ZeroHorizon);
    }
    let grid = grid(series)?;
    let step_ms = grid.step.whole_milliseconds().max(1);
    let steps = usize::try_from(request.horizon.as_millis().div_ceil(step_ms.unsigned_abs()))
        .unwrap_or(usize::MAX);
    if steps > MAX_STEPS {
        return Err(SeriesError::HorizonTooLong { steps });
    }
    let n = grid.values.len();
    let future_ts = |h: usize| grid.at(n + h);
    let finite: Vec<f64> = grid.values.iter().copied().filter(|v| v.is_finite()).collect();
    let known = finite.len();
    let trained_on = TrainedOn { from: grid.start, to: grid.at(n - 1), points: known };

    // The covariate is used only when it covers every step of the horizon.
    let covariate = request.covariate.filter(|c| {
        c.windows(2).all(|w| w[0].0 < w[1].0)
            && (1..=steps).all(|h| covariate_at(c, future_ts(h - 1)).is_some())
    });
    let steps_per_day = (86_400_000 / step_ms) as usize;
    let day = (step_ms < 86_400_000
        && 86_400_000 % step_ms == 0
        && steps_per_day > 3
        && n >= 3 * steps_per_day)
        .then_some(steps_per_day);
    let layout = Layout { start: grid.start, step: grid.step, day, covariate };

    let persistence = |reason: String| {
        let last = finite.last().copied().unwrap_or(0.0);
        let mut diffs: Vec<f64> = finite.windows(2).map(|w| w[1] - w[0]).collect();
        diffs.sort_by(f64::total_cmp);
        let (q10, q90) = (quantile(&diffs, 0.1), quantile(&diffs, 0.9));
        Forecast {
            model: "persistence".into(),
            trained_on: trained_on.clone(),
            mae_backtest: None,
            candidates: Vec::new(),
            fallback_reason: Some(reason),
            points: (0..steps)
                .map(|h| {
                    let widen = ((h + 1) as f64).sqrt();
                    ForecastPoint {
                        ts: future_ts(h),
                        value: last,
                        lo: last + (q10 * widen).min(0.0),
                        hi: last + (q90 * widen).max(0.0),
                    }
                })
                .collect(),
            backtest_residuals: Vec::new(),
        }
    };

    let spread = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - finite.iter().copied().fold(f64::INFINITY, f64::min);
    if spread <= 1e-12 * finite[0].abs().max(1.0) {
        return Ok(persistence("the series is constant".into()));
    }
    // Backtest origins: the last FOLDS horizons, each leaving enough history to learn from.
    let min_history = layout.lookback() + 30;
    let origins: Vec<usize> = (1..=FOLDS)
        .filter_map(|k| n.checked_sub(k * steps))
        .filter(|&o| o >= min_history)
        .collect();
    if origins.is_empty() {
        return Ok(persistence(format!(
            "{known} points are too few to backtest a {steps}-step horizon (need about {} points)",
            min_history + steps
        )));
    }
    let kinds = [Kind::Persistence, Kind::SeasonalNaive, Kind::Ridge, Kind::Forest];
    let mut scored: Vec<(Kind, f64, Vec<Vec<f64>>)> = Vec::new();
    for kind in kinds {
        let mut residuals: Vec<Vec<f64>> = vec![Vec::new(); steps];
        let mut ok = true;
        for &origin in &origins {
            let history = &grid.values[..origin];
            let Some(predicted) =
                fit(kind, &layout, history).and_then(|(m, _)| m.forecast(&layout, history, steps))
            else {
                ok = false;
                break;
            };
            for (h, p) in predicted.iter().enumerate() {
                let actual = grid.values[origin + h];
                if actual.is_finite() {
                    residuals[h].push(actual - p);
                }
            }
        }
        let all: Vec<f64> = residuals.iter().flatten().copied().collect();
        if ok && !all.is_empty() {
            let mae = all.iter().map(|r| r.abs()).sum::<f64>() / all.len() as f64;
            scored.push((kind, mae, residuals));
        }
    }
    let candidates: Vec<(String, f64)> =
        scored.iter().map(|(k, m, _)| (name(*k, covariate.is_some()), *m)).collect();
    let Some((kind, mae, residuals)) = scored.into_iter().min_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Ok(persistence(
            "no model could be backtested (the series has too many gaps)".into(),
        ));
    };
    let fitted = fit(kind, &layout, &grid.values);
    let Some(values) = fitted.as_ref().and_then(|(m, _)| m.forecast(&layout, &grid.values, steps))
    else {
        return Ok(persistence(format!(
            "the {} model could not be fitted on the full series",
            name(kind, false)
        )));
    };
    let trained_on = match fitted {
        Some((_, rows)) if rows > 0 => TrainedOn { points: rows, ..trained_on },
        _ => trained_on,
    };
    let points = values
        .iter()
        .enumerate()
        .map(|(h, &value)| {
            // Residuals of this step and its neighbours, pooled for a steadier quantile.
            let mut pool: Vec<f64> = residuals[h / 2..=h].iter().flatten().copied().collect();
            pool.sort_by(f64::total_cmp);
            ForecastPoint {
                ts: future_ts(h),
                value,
                lo: value + quantile(&pool, 0.1).min(0.0),
                hi: value + quantile(&pool, 0.9).max(0.0),
            }
        })
        .collect();
    Ok(Forecast {
        model: name(kind, covariate.is_some()),
        trained_on,
        mae_backtest: Some(mae),
        candidates,
        fallback_reason: None,
        points,
        backtest_residuals: residuals.into_iter().flatten().collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hourly(n: usize, f: impl Fn(usize) -> f64) -> Vec<Point> {
        let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000 - 1_700_000_000 % 3600).unwrap();
        (0..n).map(|i| (t0 + time::Duration::hours(i as i64), f(i))).collect()
    }

    fn request(hours: u64) -> Request<'static> {
        Request { horizon: Duration::from_secs(hours * 3600), covariate: None }
    }

    #[test]
    fn a_daily_cycle_is_learned_and_beats_persistence() {
        let series = hourly(24 * 30, |i| {
            10.0 + 5.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin()
                + ((i * 7919) % 13) as f64 * 0.05
        });
        let f = forecast(&series, &request(24)).unwrap();
        assert_eq!(f.points.len(), 24);
        assert_ne!(f.model, "persistence", "{:?}", f.candidates);
        let persistence = f.candidates.iter().find(|c| c.0 == "persistence").unwrap().1;
        assert!(f.mae_backtest.unwrap() < persistence / 3.0, "{:?}", f.candidates);
        assert_eq!(f.points[0].ts, series.last().unwrap().0 + time::Duration::hours(1));
        for p in &f.points {
            assert!(p.lo <= p.value && p.value <= p.hi, "{p:?}");
        }
        // The forecast follows the cycle: 6 h after the series ends the truth is known.
        let truth = |i: usize| 10.0 + 5.0 * (std::f64::consts::TAU * i as f64 / 24.0).sin();
        for (h, p) in f.points.iter().enumerate() {
            assert!((p.value - truth(24 * 30 + h)).abs() < 1.5, "step {h}: {p:?}");
        }
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(json["points"][0].as_array().unwrap().len(), 4);
        assert!(json["points"][0][0].as_str().unwrap().ends_with('Z'));
        assert!(json["trained_on"]["from"].is_string());
    }

    #[test]
    fn bad_input_is_a_typed_error_or_a_persistence_fallback() {
        assert_eq!(forecast(&[], &request(1)), Err(SeriesError::Empty));
        let nan = hourly(10, |_| f64::NAN);
        assert_eq!(forecast(&nan, &request(1)), Err(SeriesError::Empty));
        assert_eq!(forecast(&hourly(10, |i| i as f64), &request(0)), Err(SeriesError::ZeroHorizon));
        assert!(matches!(
            forecast(&hourly(10, |i| i as f64), &request(10_000)),
            Err(SeriesError::HorizonTooLong { .. })
        ));

        let one = forecast(&hourly(1, |_| 3.0), &request(3)).unwrap();
        assert_eq!(one.model, "persistence");
        assert_eq!(one.points.iter().map(|p| p.value).collect::<Vec<_>>(), vec![3.0; 3]);

        let constant = forecast(&hourly(500, |_| 7.0), &request(5)).unwrap();
        assert_eq!(constant.model, "persistence");
        assert_eq!(constant.fallback_reason.as_deref(), Some("the series is constant"));
        assert!(constant.points.iter().all(|p| p.lo == 7.0 && p.hi == 7.0));

        let short = forecast(&hourly(20, |i| i as f64), &request(5)).unwrap();
        assert_eq!(short.model, "persistence");
        assert!(short.fallback_reason.unwrap().contains("too few"));
        assert_eq!(short.points[0].value, 19.0);
    }

    #[test]
    fn horizons_parse() {
        assert_eq!(parse_horizon("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_horizon("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_horizon("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_horizon("0h"), Err(SeriesError::ZeroHorizon));
        for bad in ["", "h", "24", "24x", "-1h", "1.5h", "99999999999999999999d"] {
            assert!(matches!(parse_horizon(bad), Err(SeriesError::BadHorizon(_))), "{bad}");
        }
    }

    #[test]
    fn gaps_and_nans_are_tolerated() {
        let mut series =
            hourly(24 * 20, |i| 20.0 + 3.0 * (std::f64::consts::TAU * i as f64 / 24.0).cos());
        for i in (0..series.len()).step_by(17) {
            series[i].1 = f64::NAN;
        }
        series.drain(100..160); // a long gap
        series.reverse(); // out of order
        let f = forecast(&series, &request(12)).unwrap();
        assert_eq!(f.points.len(), 12);
        assert!(f.points.iter().all(|p| p.value.is_finite() && p.lo.is_finite()));
        assert!(f.mae_backtest.unwrap() < 1.0, "{:?}", f.candidates);
    }

    #[test]
    fn a_covariate_covering_the_horizon_is_used() {
        // The series follows the covariate (plus a lag), which is known for the horizon.
        let cov = hourly(24 * 25, |i| 10.0 + ((i * 37) % 11) as f64);
        let series: Vec<Point> = cov[..24 * 24].iter().map(|(t, v)| (*t, 2.0 * v + 1.0)).collect();
        let f = forecast(
            &series,
            &Request { horizon: Duration::from_secs(24 * 3600), covariate: Some(&cov) },
        )
        .unwrap();
        assert!(f.model.ends_with("+covariate"), "{:?}", f.candidates);
        for (h, p) in f.points.iter().enumerate() {
            assert!((p.value - (2.0 * cov[24 * 24 + h].1 + 1.0)).abs() < 1.0, "{h}: {p:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
        #[test]
        fn never_panics(values in proptest::collection::vec(proptest::num::f64::ANY, 0..120),
                        gaps in proptest::collection::vec(0i64..5, 0..120),
                        hours in 1u64..30) {
            let t0 = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
            let mut t = t0;
            let series: Vec<Point> = values.iter().zip(gaps.iter().chain(std::iter::repeat(&1))).map(|(v, g)| {
                t += time::Duration::minutes(30 * g);
                (t, *v)
            }).collect();
            if let Ok(f) = forecast(&series, &request(hours)) {
                proptest::prop_assert!(!f.points.is_empty());
                for p in f.points {
                    proptest::prop_assert!(p.lo <= p.value && p.value <= p.hi || !p.value.is_finite());
                }
            }
        }
    }
}
