//! `GET /api/v1/forecast/{device_id}?metric=M&horizon=24h` and `GET /api/v1/weather?lat&lon&hours`
//! (API.md "Monitoring"). A module of its own so the forecast routes change apart from the
//! telemetry ones; the work is the forecast crate's: [`series::forecast`] on the metric's recent
//! history (bucketed, so the model sees at most a few thousand points), and the open-meteo client
//! with its SQLite cache, which answers stale (and says so) when open-meteo cannot be reached.

use std::{path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{FromRef, Path, Query, State, rejection::QueryRejection},
    http::HeaderMap,
    routing::get,
};
use edgewatch_common::{
    ApiError,
    auth::{Authenticated, TokenVerifier},
    telemetry_store::{Agg, TimeRange},
};
use edgewatch_forecast::{
    cache::Cache,
    openmeteo::{self, WeatherError},
    series::{self, SeriesError},
};
use edgewatch_protocol::{DeviceId, MetricName, Timestamp};
use serde::{Deserialize, Serialize};

use crate::{
    error::MonitoringError,
    query::{Queries, RangeRequest},
};

/// Where weather comes from (`[weather]` in the monitoring configuration).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeatherConfig {
    /// open-meteo's forecast API base (or a mirror).
    pub base_url: String,
    /// The SQLite file that keeps the last answers; in memory (lost on restart) when unset.
    pub cache_path: Option<PathBuf>,
    pub timeout_ms: u64,
    pub retries: u32,
}

impl Default for WeatherConfig {
    fn default() -> Self {
        Self {
            base_url: openmeteo::Config::default().forecast_base_url,
            cache_path: None,
            timeout_ms: 10_000,
            retries: 2,
        }
    }
}

/// Longest forecast horizon served.
const MAX_HORIZON: Duration = Duration::from_secs(7 * 86_400);
/// Points of history the model sees at most (the range is bucketed to fit).
const HISTORY_POINTS: i64 = 2_000;

#[derive(Clone)]
pub struct ForecastState {
    pub queries: Queries,
    pub verifier: Arc<dyn TokenVerifier>,
    pub weather: Arc<openmeteo::Client>,
}

impl FromRef<ForecastState> for Arc<dyn TokenVerifier> {
    fn from_ref(state: &ForecastState) -> Self {
        Arc::clone(&state.verifier)
    }
}

/// The open-meteo client the configuration describes.
pub fn weather_client(config: &WeatherConfig) -> Result<openmeteo::Client, WeatherError> {
    let cache = match &config.cache_path {
        Some(path) => Cache::open(path)?,
        None => Cache::in_memory()?,
    };
    openmeteo::Client::new(
        openmeteo::Config {
            forecast_base_url: config.base_url.clone(),
            archive_base_url: openmeteo::Config::default().archive_base_url,
            timeout: Duration::from_millis(config.timeout_ms.max(1)),
            retries: config.retries,
            ..openmeteo::Config::default()
        },
        cache,
    )
}

pub fn routes(state: ForecastState) -> Router {
    Router::new()
        .route("/api/v1/forecast/{device_id}", get(forecast))
        .route("/api/v1/weather", get(weather))
        .with_state(state)
}

#[derive(Deserialize)]
struct ForecastParams {
    metric: Option<String>,
    /// `24h` (default), `90m`, `7d`; at most 7 days.
    horizon: Option<String>,
}

/// The history a forecast of `horizon` looks at: four horizons, at least 3 days (a daily cycle
/// needs them), at most 30, bucketed so it is at most [`HISTORY_POINTS`] points.
fn history_window(horizon: Duration, now: Timestamp) -> Result<(TimeRange, i64), MonitoringError> {
    let day_ms = 86_400_000_i64;
    let horizon_ms = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
    let span = horizon_ms.saturating_mul(4).clamp(3 * day_ms, 30 * day_ms);
    // Whole minutes, rounded up so the bucket count stays within the budget.
    let step = ((span / HISTORY_POINTS).max(1) + 59_999) / 60_000 * 60_000;
    let from = Timestamp::from_millis(now.as_millis() - span)
        .map_err(|e| MonitoringError::InvalidField("horizon", e.to_string()))?;
    let range = TimeRange::new(from, now)
        .map_err(|e| MonitoringError::InvalidField("horizon", e.to_string()))?;
    Ok((range, step))
}

async fn forecast(
    State(state): State<ForecastState>,
    Authenticated(_caller): Authenticated,
    headers: HeaderMap,
    Path(device): Path<String>,
    params: Result<Query<ForecastParams>, QueryRejection>,
) -> Result<Json<series::Forecast>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let device = DeviceId::parse(&device)
        .map_err(|e| ApiError::invalid_field("device_id", e.to_string()))?;
    let metric = params
        .metric
        .as_deref()
        .ok_or_else(|| ApiError::invalid_field("metric", "metric is required"))?;
    let metric = MetricName::parse(metric.to_owned())
        .map_err(|e| ApiError::invalid_field("metric", e.to_string()))?;
    let horizon = series::parse_horizon(params.horizon.as_deref().unwrap_or("24h"))
        .map_err(|e| ApiError::invalid_field("horizon", e.to_string()))?;
    if horizon > MAX_HORIZON {
        return Err(ApiError::invalid_field("horizon", "the horizon is at most 7d"));
    }
    let (range, step) = history_window(horizon, Timestamp::now())?;
    let request = RangeRequest {
        metric,
        range,
        step: Some((step, Agg::Avg)),
        limit: state.queries.max_points,
    };
    let points = state.queries.range(crate::http::token(&headers), device, &request).await?;
    let history: Vec<series::Point> = points
        .iter()
        .filter_map(|p| {
            let ns = i128::from(p.ts.as_millis()) * 1_000_000;
            time::OffsetDateTime::from_unix_timestamp_nanos(ns).ok().map(|t| (t, p.value))
        })
        .collect();
    if history.is_empty() {
        return Err(MonitoringError::NoReadings.into());
    }
    // Training is CPU work: off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        series::forecast(&history, &series::Request { horizon, covariate: None })
    })
    .await
    .map_err(ApiError::internal)?;
    match answer {
        Ok(forecast) => Ok(Json(forecast)),
        Err(SeriesError::Empty) => Err(MonitoringError::NoReadings.into()),
        Err(err) => Err(ApiError::invalid_field("horizon", err.to_string())),
    }
}

#[derive(Deserialize)]
struct WeatherParams {
    lat: Option<f64>,
    lon: Option<f64>,
    /// Hours from today 00:00 UTC; default 48, at most 384 (16 days).
    hours: Option<u32>,
}

#[derive(Serialize)]
struct WeatherAnswer {
    latitude: f64,
    longitude: f64,
    /// True when open-meteo could not be reached and this is the last good answer.
    stale: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_reason: Option<String>,
    fetched_at: String,
    /// `[[ts, °C]]`, hourly.
    points: Vec<(String, f64)>,
}

async fn weather(
    State(state): State<ForecastState>,
    Authenticated(_caller): Authenticated,
    params: Result<Query<WeatherParams>, QueryRejection>,
) -> Result<Json<WeatherAnswer>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let lat = params.lat.ok_or_else(|| ApiError::invalid_field("lat", "lat is required"))?;
    let lon = params.lon.ok_or_else(|| ApiError::invalid_field("lon", "lon is required"))?;
    if !(-90.0..=90.0).contains(&lat) {
        return Err(ApiError::invalid_field("lat", "lat must be between -90 and 90"));
    }
    if !(-180.0..=180.0).contains(&lon) {
        return Err(ApiError::invalid_field("lon", "lon must be between -180 and 180"));
    }
    let hours = params.hours.unwrap_or(48);
    if !(1..=384).contains(&hours) {
        return Err(ApiError::invalid_field("hours", "hours must be between 1 and 384"));
    }
    let days = u8::try_from(hours.div_ceil(24)).unwrap_or(16);
    let answer = state.weather.forecast(lat, lon, 0, days).await.map_err(|err| match err {
        WeatherError::BadRequest(why) => ApiError::invalid_field("lat", why),
        other => ApiError::unavailable("open-meteo", other).with_retry_after(30),
    })?;
    let points = answer
        .hourly
        .points
        .iter()
        .take(hours as usize)
        .map(|(t, v)| (series::rfc3339(*t), *v))
        .collect();
    Ok(Json(WeatherAnswer {
        latitude: answer.hourly.latitude,
        longitude: answer.hourly.longitude,
        stale: answer.stale,
        stale_reason: answer.stale_reason,
        fetched_at: series::rfc3339(answer.fetched_at),
        points,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_history_window_fits_the_point_budget() {
        let now = Timestamp::from_millis(1_800_000_000_000).unwrap();
        for hours in [1u64, 24, 72, 168] {
            let (range, step) = history_window(Duration::from_secs(hours * 3600), now).unwrap();
            let span = range.to.as_millis() - range.from.as_millis();
            assert!(span >= 3 * 86_400_000, "{hours}");
            assert!(span / step <= HISTORY_POINTS, "{hours}: {span} / {step}");
            assert_eq!(step % 60_000, 0);
        }
    }
}
