//! The routes of API.md "Devices" built so far. Handlers are thin: parse, call [`Devices`], map.

use std::{io::Read, sync::Arc};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        DefaultBodyLimit, FromRef, FromRequest, Path, Query, Request, State,
        rejection::QueryRejection,
    },
    http::{HeaderMap, StatusCode, header::CONTENT_ENCODING, request::Parts},
    routing::{get, post},
};
use edgewatch_common::{
    ApiError,
    auth::{Authenticated, TokenVerifier, bearer},
    http::{ApiJson, request_id},
};
use edgewatch_protocol::{
    ConfigMessage, DeviceId, DeviceRecord, DeviceStatus, limits::MAX_BATCH_BYTES,
};
use serde::{Deserialize, Serialize};
use utoipa::OpenApi;

use crate::{
    domain::{DeviceInput, DevicePatch},
    service::{ConfigView, Devices, Enrolled, Ingested, Page, Search},
};

pub const MAX_PAGE: usize = 500;
const DEFAULT_PAGE: usize = 100;

#[derive(Clone)]
pub struct AppState {
    pub devices: Devices,
    pub verifier: Arc<dyn TokenVerifier>,
}

impl FromRef<AppState> for Arc<dyn TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/devices", post(create).get(list))
        .route("/api/v1/devices/enroll", post(enroll))
        .route("/api/v1/devices/{id}", get(read).patch(patch).delete(remove))
        .route("/api/v1/devices/{id}/credentials", post(rotate))
        .route("/api/v1/devices/{id}/config", get(read_config).put(write_config))
        .route("/api/v1/devices/{id}/config/current", get(current_config))
        .route(
            "/api/v1/devices/{id}/telemetry",
            // A batch is at most 1 MiB: anything bigger is refused before it is buffered (a gzip
            // body also while it is inflated, see `BatchBody`).
            post(ingest).layer(DefaultBodyLimit::max(MAX_BATCH_BYTES)),
        )
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

fn device_id(raw: &str) -> Result<DeviceId, ApiError> {
    DeviceId::parse(raw).map_err(|e| ApiError::invalid_field("id", e.to_string()))
}

#[derive(Serialize, utoipa::ToSchema)]
struct Created {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    device: DeviceRecord,
    /// One-time token for `POST /devices/enroll`; shown only here.
    enrollment_token: String,
}

#[utoipa::path(post, path = "/api/v1/devices", request_body = DeviceInput, security(("bearer" = [])),
    responses((status = 201, body = Created), (status = 422, description = "invalid field")))]
async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    ApiJson(input): ApiJson<DeviceInput>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let (device, enrollment_token) = state.devices.create(&principal, input).await?;
    Ok((StatusCode::CREATED, Json(Created { device, enrollment_token })))
}

#[derive(Deserialize)]
struct ListParams {
    q: Option<String>,
    tag: Option<String>,
    status: Option<String>,
    kind: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

impl ListParams {
    fn into_search(self) -> Result<Search, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::invalid_field("limit", format!("must be 1 to {MAX_PAGE}")));
        }
        let status = self
            .status
            .map(|s| serde_json::from_value::<DeviceStatus>(serde_json::Value::String(s)))
            .transpose()
            .map_err(|_| {
                ApiError::invalid_field("status", "must be never_seen, online or offline")
            })?;
        let cursor =
            self.cursor.map(|c| DeviceId::parse(&c)).transpose().map_err(|_| {
                ApiError::invalid_field("cursor", "is not a cursor this API returned")
            })?;
        Ok(Search { q: self.q, tag: self.tag, status, kind: self.kind, limit, cursor })
    }
}

#[utoipa::path(get, path = "/api/v1/devices", security(("bearer" = [])),
    params(("q" = Option<String>, Query, description = "text in the name or a tag"), ("tag" = Option<String>, Query),
           ("status" = Option<String>, Query), ("kind" = Option<String>, Query),
           ("limit" = Option<usize>, Query, description = "1..=500, default 100"), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = Page)))]
async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid_field("query", e.body_text()))?;
    Ok(Json(state.devices.list(&principal, params.into_search()?).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", security(("bearer" = [])),
    responses((status = 200, description = "the device"), (status = 403, description = "not yours"), (status = 404)))]
async fn read(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DeviceRecord>, ApiError> {
    Ok(Json(state.devices.get(&principal, device_id(&id)?).await?))
}

#[utoipa::path(patch, path = "/api/v1/devices/{id}", request_body = DevicePatch, security(("bearer" = [])),
    responses((status = 200, description = "the device"), (status = 403), (status = 404), (status = 422)))]
async fn patch(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    ApiJson(changes): ApiJson<DevicePatch>,
) -> Result<Json<DeviceRecord>, ApiError> {
    Ok(Json(state.devices.patch(&principal, device_id(&id)?, changes).await?))
}

#[utoipa::path(delete, path = "/api/v1/devices/{id}", security(("bearer" = [])), responses((status = 204), (status = 403), (status = 404)))]
async fn remove(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.devices.delete(&principal, device_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, utoipa::ToSchema)]
struct Secret {
    device_secret: String,
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/credentials", security(("bearer" = [])), responses((status = 200, body = Secret)))]
async fn rotate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Secret>, ApiError> {
    let device_secret = state.devices.rotate_secret(&principal, device_id(&id)?).await?;
    Ok(Json(Secret { device_secret }))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/config", security(("bearer" = [])), responses((status = 200, body = ConfigView)))]
async fn read_config(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ConfigView>, ApiError> {
    Ok(Json(state.devices.config(&principal, device_id(&id)?).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ConfigBody {
    #[schema(value_type = Object)]
    config: serde_json::Map<String, serde_json::Value>,
}

#[utoipa::path(put, path = "/api/v1/devices/{id}/config", request_body = ConfigBody, security(("bearer" = [])),
    responses((status = 200, body = ConfigView, description = "stored as a new version and pushed to the device")))]
async fn write_config(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ConfigBody>,
) -> Result<Json<ConfigView>, ApiError> {
    Ok(Json(state.devices.set_config(&principal, device_id(&id)?, body.config).await?))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/config/current", security(("device" = [])),
    responses((status = 200, description = "`{version, config}` for HTTP-only agents"), (status = 401)))]
async fn current_config(
    State(state): State<AppState>,
    Path(id): Path<String>,
    DeviceSecret(secret): DeviceSecret,
) -> Result<Json<ConfigMessage>, ApiError> {
    Ok(Json(state.devices.current_config(device_id(&id)?, &secret).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct EnrollBody {
    enrollment_token: String,
    /// What the agent reports about its hardware; accepted and not yet stored.
    #[allow(dead_code)]
    #[schema(value_type = Option<Object>)]
    hardware: Option<serde_json::Value>,
}

#[utoipa::path(post, path = "/api/v1/devices/enroll", request_body = EnrollBody,
    responses((status = 200, body = Enrolled), (status = 401, description = "invalid_enrollment_token")))]
async fn enroll(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EnrollBody>,
) -> Result<Json<Enrolled>, ApiError> {
    Ok(Json(state.devices.enroll(&body.enrollment_token).await?))
}

/// The device credential: `Authorization: Bearer <device_secret>`.
struct DeviceSecret(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for DeviceSecret {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let secret = bearer(parts).map_err(|_| {
            ApiError::unauthorized(
                "invalid_device_credential",
                "send the device secret as a bearer token",
            )
        })?;
        Ok(Self(secret.to_owned()))
    }
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/telemetry", security(("device" = [])),
    request_body(content = Object, description = "a batch (API.md \"Readings and batches\")"),
    responses((status = 202, body = Ingested), (status = 400), (status = 401), (status = 403), (status = 413), (status = 415, description = "a Content-Encoding other than gzip"), (status = 422),
              (status = 503, description = "not handed on durably; retry after Retry-After")))]
async fn ingest(
    State(state): State<AppState>,
    Path(id): Path<String>,
    DeviceSecret(secret): DeviceSecret,
    headers: HeaderMap,
    BatchBody(body): BatchBody,
) -> Result<(StatusCode, Json<Ingested>), ApiError> {
    let request = request_id(&headers).map(str::to_owned);
    let outcome = state.devices.ingest(device_id(&id)?, &secret, &body, request).await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}

/// A telemetry body: JSON, or JSON sent with `Content-Encoding: gzip` (what the agent sends by
/// default; host batches shrink to about a quarter). The compressed body is capped by the route's
/// `DefaultBodyLimit`, the inflated one while inflating, so a small gzip bomb never grows past
/// `MAX_BATCH_BYTES` in memory.
struct BatchBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for BatchBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let encoding = req
            .headers()
            .get(CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not text)").trim().to_ascii_lowercase());
        let body = Bytes::from_request(req, state).await?;
        match encoding.as_deref() {
            None | Some("identity") => Ok(Self(body)),
            Some("gzip" | "x-gzip") => inflate(&body).map(Self),
            Some(other) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Encoding `{other}` is not accepted: send gzip or plain JSON"),
            )),
        }
    }
}

fn inflate(gzip: &[u8]) -> Result<Bytes, ApiError> {
    let mut json = Vec::with_capacity((gzip.len() * 8).min(MAX_BATCH_BYTES));
    let mut decoder = flate2::read::GzDecoder::new(gzip).take(MAX_BATCH_BYTES as u64 + 1);
    decoder
        .read_to_end(&mut json)
        .map_err(|e| ApiError::malformed(format!("the gzip body cannot be inflated: {e}")))?;
    if json.len() > MAX_BATCH_BYTES {
        return Err(ApiError::too_large(format!(
            "the batch is larger than {MAX_BATCH_BYTES} bytes once inflated"
        )));
    }
    Ok(json.into())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgewatch devices",
        description = "Device registry, credentials, enrollment, ingest (API.md \"Devices\")"
    ),
    paths(create, list, read, patch, remove, rotate, enroll, ingest),
    components(schemas(
        DeviceInput,
        DevicePatch,
        Created,
        Page,
        Secret,
        EnrollBody,
        Enrolled,
        Ingested
    ))
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
