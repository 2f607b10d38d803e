//! The HTTP skeleton every service shares: [`service_router`] wraps a service's API routes with
//! request ids (`x-request-id` kept from the client or made, echoed on the answer, and in every
//! log line of the request), access logs and Prometheus request metrics, the body limit, the
//! contract's 404/405 bodies, and the operational routes `/healthz`, `/readyz`, `/metrics`.

mod error;
mod readiness;

use std::{net::SocketAddr, time::Instant};

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::{HeaderName, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::Instrument;

pub use error::{ApiError, ApiJson};
pub use readiness::Readiness;

use crate::shutdown::Shutdown;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `api` with the shared layers and operational routes of one service.
pub fn service_router(
    service: &'static str,
    api: Router,
    readiness: Readiness,
    body_limit: usize,
) -> Router {
    // Install the recorder before the first request, so no early measurement is lost.
    crate::observability::prometheus();
    let operational = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readiness::readyz).with_state(readiness))
        .route("/metrics", get(metrics));
    api.merge(operational)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestIdV7))
                .layer(middleware::from_fn_with_state(service, observe))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID)),
        )
}

/// Serves `router` on `listener` until `shutdown` fires, then finishes in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The id of the request being handled, for handlers that pass it on (bus headers, outbound calls).
pub fn request_id(req: &axum::http::HeaderMap) -> Option<&str> {
    req.get(REQUEST_ID).and_then(|v| v.to_str().ok())
}

#[derive(Clone, Copy)]
struct MakeRequestIdV7;

impl MakeRequestId for MakeRequestIdV7 {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        uuid::Uuid::now_v7().to_string().parse().ok().map(RequestId::new)
    }
}

/// One span per request (carrying the request id), an access log line and the request metrics.
async fn observe(State(service): State<&'static str>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let request_id = request_id(req.headers()).unwrap_or("").to_owned();
    let span = tracing::info_span!("request", service, %method, route, request_id);
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    let labels = [
        ("service", service.to_owned()),
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..3])
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::debug!(status, elapsed_ms = elapsed.as_secs_f64() * 1000.0, "Request served");
    });
    response
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        crate::observability::render_metrics(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /api/v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}
