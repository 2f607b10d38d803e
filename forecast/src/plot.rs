//! PNG charts: history + forecast + band, and error curves (backtest residuals, evaluation
//! errors) — the matplotlib part of the seed.
//!
//! plotters' bitmap backend draws without system libraries; text needs a font, and a device or
//! CI machine may have none, so a 10 kB subset of DejaVu Sans (ASCII and °, license in
//! `assets/LICENSE-DejaVu.txt`) is compiled in and registered with ab_glyph on first use.

use std::{path::Path, sync::Once};

use plotters::prelude::*;
use time::{OffsetDateTime, macros::format_description};

use crate::series::{Forecast, Point};

static FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");
static REGISTER: Once = Once::new();

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {cause}")]
pub struct PlotError {
    path: String,
    cause: String,
}

/// Chart size in pixels.
pub const SIZE: (u32, u32) = (1000, 500);

fn font() {
    REGISTER.call_once(|| {
        // The bytes are compiled in and known to parse (tested), so failure here cannot happen
        // at runtime; if it did, text would be missing and drawing would report the error.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(path: &Path) -> impl Fn(String) -> PlotError + '_ {
    move |cause| PlotError { path: path.display().to_string(), cause }
}

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(0.5);
    (lo - pad, hi + pad)
}

fn label(seconds: f64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds as i64)
        .ok()
        .and_then(|t| t.format(format_description!("[month]-[day] [hour]:[minute]")).ok())
        .unwrap_or_default()
}

/// Draws `history` (the last `keep` points), the forecast line and its band to a PNG at `path`.
pub fn forecast_chart(
    path: &Path,
    title: &str,
    unit: &str,
    history: &[Point],
    forecast: &Forecast,
    size: (u32, u32),
) -> Result<(), PlotError> {
    font();
    let e = err(path);
    let s = |t: OffsetDateTime| t.unix_timestamp() as f64;
    let history: Vec<(f64, f64)> =
        history.iter().filter(|p| p.1.is_finite()).map(|p| (s(p.0), p.1)).collect();
    let xs = history.iter().map(|p| p.0).chain(forecast.points.iter().map(|p| s(p.ts)));
    let (x0, x1) = range(xs);
    let ys = history
        .iter()
        .map(|p| p.1)
        .chain(forecast.points.iter().flat_map(|p| [p.lo, p.hi, p.value]));
    let (y0, y1) = range(ys);

    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let caption = match forecast.mae_backtest {
        Some(mae) => format!("{title}: {} (backtest MAE {mae:.2} {unit})", forecast.model),
        None => format!("{title}: {}", forecast.model),
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_labels(6)
        .x_label_formatter(&|x| label(*x))
        .y_desc(unit)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let band: Vec<(f64, f64)> = forecast
        .points
        .iter()
        .map(|p| (s(p.ts), p.hi))
        .chain(forecast.points.iter().rev().map(|p| (s(p.ts), p.lo)))
        .collect();
    chart
        .draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.2).filled())))
        .map_err(|x| e(x.to_string()))?
        .label("10-90 % band")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLUE.mix(0.2).filled()));
    chart
        .draw_series(LineSeries::new(history, BLACK.stroke_width(2)))
        .map_err(|x| e(x.to_string()))?
        .label("history")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    chart
        .draw_series(LineSeries::new(
            forecast.points.iter().map(|p| (s(p.ts), p.value)),
            BLUE.stroke_width(2),
        ))
        .map_err(|x| e(x.to_string()))?
        .label("forecast")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// Draws error curves (one line per named series, x = index) to a PNG at `path`.
pub fn errors_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    lines: &[(&str, Vec<f64>)],
    size: (u32, u32),
) -> Result<(), PlotError> {
    font();
    let e = err(path);
    let n = lines.iter().map(|l| l.1.len()).max().unwrap_or(0).max(2);
    let (y0, y1) = range(lines.iter().flat_map(|l| l.1.iter().copied()).chain([0.0]));
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0f64..(n - 1) as f64, y0..y1)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let colors = [BLUE, RED, GREEN, BLACK, MAGENTA, CYAN];
    for (i, (name, values)) in lines.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(
                values
                    .iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .map(|(k, v)| (k as f64, *v)),
                color.stroke_width(2),
            ))
            .map_err(|x| e(x.to_string()))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))
}

/// A centred rolling mean (window `w`), for readable daily error curves.
pub fn rolling_mean(values: &[f64], w: usize) -> Vec<f64> {
    let w = w.max(1);
    (0..values.len())
        .map(|i| {
            let a = i.saturating_sub(w / 2);
            let b = (i + w - w / 2).min(values.len());
            values[a..b].iter().sum::<f64>() / (b - a) as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_font_parses() {
        font();
        assert!(ab_glyph_parses());
        assert_eq!(rolling_mean(&[1.0, 2.0, 3.0], 3), vec![1.5, 2.0, 2.5]);
    }

    fn ab_glyph_parses() -> bool {
        plotters::style::register_font("check", FontStyle::Normal, FONT).is_ok()
    }
}
