//! Serves the dashboard: the single-page app built by Vite into `dashboard/dist`, compiled into
//! release binaries (read from that directory at run time in debug builds), or from a directory
//! given in config. Paths that are not files get `index.html`, so the app's own routes survive a
//! reload; hashed assets are cached for good, `index.html` never. A binary built before the
//! dashboard answers with a page that says how to build it, rather than a bare 404.

use std::path::PathBuf;

use axum::{
    Router,
    body::Body,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use edgewatch_common::http::ApiError;
use rust_embed::Embed;
use tower_http::services::{ServeDir, ServeFile};

#[derive(Embed)]
#[folder = "../../dashboard/dist/"]
#[allow_missing = true]
struct Built;

const NOT_BUILT: &str = "<!doctype html><meta charset=utf-8><title>edgewatch</title>\
<h1>edgewatch</h1><p>The API is up, but this binary was built without the dashboard. \
Run <code>scripts/build-dashboard.sh</code> (needs Node.js 20) and rebuild, or start with \
<code>--dashboard-dir dashboard/dist</code>.</p>";

/// The routes for `/` and every path the API does not claim.
pub fn routes(dir: Option<PathBuf>) -> Router {
    match dir {
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html"));
            let files = ServeDir::new(dir).fallback(index);
            Router::new().route_service("/", files.clone()).route_service("/{*path}", files)
        }
        None => Router::new().route("/", get(embedded)).route("/{*path}", get(embedded)),
    }
}

/// Whether the binary carries a built dashboard.
pub fn is_embedded() -> bool {
    Built::get("index.html").is_some()
}

async fn embedded(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if let Some(file) = Built::get(path).filter(|_| !path.is_empty()) {
        let mime = file.metadata.mimetype();
        let cache = if path.starts_with("assets/") {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        return file_response(file.data.into_owned(), mime, cache);
    }
    // An asset or API route that is not there is a 404; anything else is a page of the app.
    if path.starts_with("api/") {
        return ApiError::not_found("no such route; see /api/v1/openapi.json").into_response();
    }
    if path.starts_with("assets/") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match Built::get("index.html") {
        Some(index) => {
            file_response(index.data.into_owned(), "text/html; charset=utf-8", "no-cache")
        }
        None => (StatusCode::OK, Html(NOT_BUILT)).into_response(),
    }
}

fn file_response(body: Vec<u8>, mime: &str, cache: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
