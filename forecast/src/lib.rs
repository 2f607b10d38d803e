//! Forecasting on the device and in the cloud.
//!
//! - [`series`]: the integration point — a series (a device metric, optionally with a weather
//!   covariate) in, a forecast with its model, training span, backtest MAE and band out.
//! - [`openmeteo`] and [`cache`]: the open-meteo client (forecast and archive APIs) with retries
//!   and a SQLite cache that serves the last answer, marked stale, when offline.
//! - [`daily`], [`features`], [`ridge`], [`eval`]: the next-day temperature evaluation behind
//!   `edgewatch forecast eval` (walk-forward against persistence and climatology).
//! - [`plot`]: PNG charts of history + forecast + band and of backtest errors; [`table`] reads a
//!   series from a CSV file for them.

pub mod cache;
pub mod daily;
pub mod eval;
pub mod features;
pub mod openmeteo;
pub mod plot;
pub mod ridge;
pub mod series;
pub mod table;
