//! The routes of API.md "Monitoring". Handlers are thin: parse, call [`Queries`], map.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{FromRef, Path, Query, State, rejection::QueryRejection},
    http::HeaderMap,
    routing::get,
};
use edgewatch_common::{
    ApiError,
    auth::{Authenticated, TokenVerifier},
    telemetry_store::{Agg, LatestReading, MetricSpan, Point},
};
use edgewatch_protocol::{DeviceId, MetricName, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::{
    error::MonitoringError,
    query::{Queries, RangeRequest, parse_step, range_of},
};

#[derive(Clone)]
pub struct AppState {
    pub queries: Queries,
    pub verifier: Arc<dyn TokenVerifier>,
}

impl FromRef<AppState> for Arc<dyn TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/telemetry/{device_id}", get(range))
        .route("/api/v1/telemetry/{device_id}/latest", get(latest))
        .route("/api/v1/telemetry/{device_id}/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// The caller's token; [`Authenticated`] has verified it before a handler runs.
pub(crate) fn token(headers: &HeaderMap) -> &str {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .map_or("", |(_, token)| token.trim())
}

fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::invalid_field("device_id", e.to_string()))
}

#[utoipa::path(get, path = "/api/v1/telemetry/{device_id}/latest", security(("bearer" = [])),
    params(("device_id" = String, Path)),
    responses((status = 200, description = "`{device_id, ts, seq, metrics}`"),
        (status = 403, description = "not your device"), (status = 404, description = "unknown device or no readings yet")))]
async fn latest(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    headers: HeaderMap,
    Path(device): Path<String>,
) -> Result<Json<LatestReading>, ApiError> {
    Ok(Json(state.queries.latest(token(&headers), device_id(&device)?).await?))
}

#[derive(Serialize)]
struct Catalogue {
    items: Vec<MetricSpan>,
}

#[utoipa::path(get, path = "/api/v1/telemetry/{device_id}/metrics", security(("bearer" = [])),
    params(("device_id" = String, Path)),
    responses((status = 200, description = "`{items: [{name, first_ts, last_ts}]}`")))]
async fn metrics(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    headers: HeaderMap,
    Path(device): Path<String>,
) -> Result<Json<Catalogue>, ApiError> {
    let items = state.queries.metrics(token(&headers), device_id(&device)?).await?;
    Ok(Json(Catalogue { items }))
}

#[derive(Deserialize, utoipa::IntoParams)]
struct RangeParams {
    /// The metric's name.
    metric: Option<String>,
    /// RFC 3339; default: an hour before `to`.
    from: Option<String>,
    /// RFC 3339, exclusive; default: now.
    to: Option<String>,
    /// Bucket width (`30s`, `1m`, `1h`, `1d`); raw points when absent.
    step: Option<String>,
    /// avg (default), min, max, sum or count.
    agg: Option<String>,
    /// Most raw points (default and maximum: the service's `max_points`).
    limit: Option<usize>,
}

#[derive(Serialize)]
struct RangeAnswer {
    device_id: DeviceId,
    metric: MetricName,
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agg: Option<String>,
    points: Vec<Point>,
}

fn timestamp(field: &'static str, raw: Option<&str>) -> Result<Option<Timestamp>, MonitoringError> {
    raw.map(|raw| {
        Timestamp::parse(raw).map_err(|e| MonitoringError::InvalidField(field, e.to_string()))
    })
    .transpose()
}

impl RangeParams {
    fn parse(&self, max_points: usize) -> Result<RangeRequest, MonitoringError> {
        let metric = self
            .metric
            .as_deref()
            .ok_or_else(|| MonitoringError::InvalidField("metric", "metric is required".into()))?;
        let metric = MetricName::parse(metric.to_owned())
            .map_err(|e| MonitoringError::InvalidField("metric", e.to_string()))?;
        let range = range_of(
            timestamp("from", self.from.as_deref())?,
            timestamp("to", self.to.as_deref())?,
        )?;
        let step = match &self.step {
            Some(step) => {
                let agg = match &self.agg {
                    Some(agg) => agg
                        .parse::<Agg>()
                        .map_err(|why| MonitoringError::InvalidField("agg", why))?,
                    None => Agg::Avg,
                };
                Some((parse_step(step)?, agg))
            }
            None if self.agg.is_some() => {
                return Err(MonitoringError::InvalidField("step", "agg needs a step".into()));
            }
            None => None,
        };
        Ok(RangeRequest { metric, range, step, limit: self.limit.unwrap_or(max_points) })
    }
}

#[utoipa::path(get, path = "/api/v1/telemetry/{device_id}", security(("bearer" = [])),
    params(("device_id" = String, Path), RangeParams),
    responses((status = 200, description = "`{device_id, metric, points: [[ts, value]]}`"),
        (status = 422, description = "a parameter out of range, named in `fields`")))]
async fn range(
    State(state): State<AppState>,
    Authenticated(_caller): Authenticated,
    headers: HeaderMap,
    Path(device): Path<String>,
    params: Result<Query<RangeParams>, QueryRejection>,
) -> Result<Json<RangeAnswer>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    let device = device_id(&device)?;
    let request = params.parse(state.queries.max_points)?;
    let points = state.queries.range(token(&headers), device, &request).await?;
    Ok(Json(RangeAnswer {
        device_id: device,
        metric: request.metric,
        step: request.step.and(params.step),
        agg: request.step.map(|(_, agg)| agg.to_string()),
        points,
    }))
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgewatch monitoring",
        description = "Telemetry queries (API.md \"Monitoring\"); live push on Socket.IO namespace /live."
    ),
    paths(latest, metrics, range)
)]
struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
