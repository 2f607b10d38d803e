//! The built-in gateway: one port in front of the three services, routing by path prefix exactly
//! like the nginx table of API.md, so the dashboard, agents and scripts see the same URLs in both
//! shapes. The paths every service has (`/healthz`, `/readyz`, `/api/v1/openapi.json`) are
//! answered for the whole process; `/metrics` is one process-wide recorder already.

use axum::{
    Json, Router,
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

/// The service a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Signing,
    Devices,
    Monitoring,
}

/// API.md "Gateway routes"; everything else (the dashboard's files) is monitoring's.
pub fn route(path: &str) -> Target {
    let under = |prefix: &str| {
        path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if path.starts_with("/api/v1/auth/") || path == "/.well-known/jwks.json" {
        Target::Signing
    } else if under("/api/v1/devices") {
        Target::Devices
    } else {
        Target::Monitoring
    }
}

#[derive(Clone)]
pub struct Services {
    pub signing: Router,
    pub devices: Router,
    pub monitoring: Router,
}

impl Services {
    fn get(&self, target: Target) -> Router {
        match target {
            Target::Signing => self.signing.clone(),
            Target::Devices => self.devices.clone(),
            Target::Monitoring => self.monitoring.clone(),
        }
    }

    fn all(&self) -> [(&'static str, Router); 3] {
        [
            ("signing", self.signing.clone()),
            ("devices", self.devices.clone()),
            ("monitoring", self.monitoring.clone()),
        ]
    }
}

pub fn router(services: Services) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .route("/api/v1/openapi.json", get(openapi))
        // `/healthz` and `/metrics` are the same in every service: signing answers for all.
        .route("/healthz", get(forward_to_signing))
        .route("/metrics", get(forward_to_signing))
        .fallback(dispatch)
        .with_state(services)
}

async fn dispatch(State(services): State<Services>, request: Request) -> Response {
    let target = route(request.uri().path());
    forward(services.get(target), request).await
}

async fn forward_to_signing(State(services): State<Services>, request: Request) -> Response {
    forward(services.signing, request).await
}

async fn forward(router: Router, request: Request) -> Response {
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Asks one service a GET of its own and returns the status and JSON body.
async fn ask(router: Router, path: &str) -> (StatusCode, Value) {
    let request = Request::builder().method(Method::GET).uri(path).body(Body::empty());
    let Ok(request) = request else { return (StatusCode::INTERNAL_SERVER_ERROR, Value::Null) };
    let response = forward(router, request).await;
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 8 << 20).await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Ready when every service is: 200 or 503 with each service's own answer.
async fn readyz(State(services): State<Services>) -> Response {
    let mut ready = true;
    let mut checks = Map::new();
    for (name, router) in services.all() {
        let (status, body) = ask(router, "/readyz").await;
        ready &= status.is_success();
        checks.insert(name.into(), body);
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({"status": if ready { "ready" } else { "not_ready" }, "services": checks});
    let mut response = (status, Json(body)).into_response();
    if !ready {
        response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    response
}

/// One OpenAPI document for the whole API: the three services' paths and schemas merged.
async fn openapi(State(services): State<Services>) -> Response {
    let mut merged: Option<Value> = None;
    for (_, router) in services.all() {
        let (status, doc) = ask(router, "/api/v1/openapi.json").await;
        if !status.is_success() {
            continue;
        }
        match &mut merged {
            None => merged = Some(doc),
            Some(into) => merge_openapi(into, doc),
        }
    }
    let mut doc = merged.unwrap_or_else(|| json!({"openapi": "3.1.0", "paths": {}}));
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        info.insert("title".into(), json!("edgewatch API"));
    }
    Json(doc).into_response()
}

fn merge_openapi(into: &mut Value, from: Value) {
    for section in ["paths", "components"] {
        let Some(source) = from.get(section).and_then(Value::as_object) else { continue };
        let target = into
            .as_object_mut()
            .map(|o| o.entry(section).or_insert_with(|| json!({})))
            .and_then(Value::as_object_mut);
        let Some(target) = target else { continue };
        for (key, value) in source {
            match (target.get_mut(key), value) {
                // components.schemas, components.securitySchemes, ...: union of the maps.
                (Some(Value::Object(existing)), Value::Object(more)) if section == "components" => {
                    for (k, v) in more {
                        existing.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                (None, _) => {
                    target.insert(key.clone(), value.clone());
                }
                _ => {}
            }
        }
    }
    if let (Some(tags), Some(more)) = (
        into.get_mut("tags").and_then(Value::as_array_mut),
        from.get("tags").and_then(Value::as_array),
    ) {
        tags.extend(more.iter().cloned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_the_gateway_table() {
        assert_eq!(route("/api/v1/auth/login"), Target::Signing);
        assert_eq!(route("/.well-known/jwks.json"), Target::Signing);
        assert_eq!(route("/api/v1/devices"), Target::Devices);
        assert_eq!(route("/api/v1/devices/enroll"), Target::Devices);
        assert_eq!(route("/api/v1/devices/0193/telemetry"), Target::Devices);
        assert_eq!(route("/api/v1/devicesx"), Target::Monitoring);
        assert_eq!(route("/api/v1/telemetry/0193/latest"), Target::Monitoring);
        assert_eq!(route("/api/v1/forecast/0193"), Target::Monitoring);
        assert_eq!(route("/api/v1/weather"), Target::Monitoring);
        assert_eq!(route("/socket.io/"), Target::Monitoring);
        assert_eq!(route("/"), Target::Monitoring);
        assert_eq!(route("/assets/index.js"), Target::Monitoring);
    }

    #[test]
    fn openapi_documents_merge_paths_and_schemas() {
        let mut a = json!({"openapi": "3.1.0", "paths": {"/a": {}},
            "components": {"schemas": {"A": {}, "Error": {"x": 1}}}});
        let b =
            json!({"paths": {"/b": {}}, "components": {"schemas": {"B": {}, "Error": {"x": 2}}}});
        merge_openapi(&mut a, b);
        assert_eq!(a["paths"].as_object().unwrap().len(), 2);
        let schemas = a["components"]["schemas"].as_object().unwrap();
        assert_eq!(schemas.len(), 3);
        assert_eq!(schemas["Error"]["x"], 1);
    }
}
