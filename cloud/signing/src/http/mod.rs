//! The routes of API.md "Signing". Handlers are thin: parse, call [`Signing`], map the answer.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use axum::{
    Json, Router,
    extract::{ConnectInfo, FromRef, State},
    http::{HeaderMap, StatusCode, request::Parts},
    routing::{get, post},
};
use edgewatch_common::{
    ApiError,
    auth::{Authenticated, TokenVerifier, bearer},
    http::ApiJson,
};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use utoipa::OpenApi;

use crate::{
    domain::UserView,
    service::{Introspection, Signing, TokenPair},
};

#[derive(Clone)]
pub struct AppState {
    pub signing: Signing,
    /// The same core, as the verifier `Authenticated` uses.
    pub verifier: Arc<dyn TokenVerifier>,
    /// Take `X-Forwarded-For` as the client address (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

impl AppState {
    /// The caller's address: the socket peer, or the first `X-Forwarded-For` hop when the
    /// service runs behind a trusted proxy.
    fn client_ip(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        self.trust_forwarded_for
            .then(|| {
                headers
                    .get("x-forwarded-for")?
                    .to_str()
                    .ok()?
                    .split(',')
                    .next()?
                    .trim()
                    .parse()
                    .ok()
            })
            .flatten()
            .unwrap_or(peer.ip())
    }
}

impl FromRef<AppState> for Arc<dyn TokenVerifier> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.verifier)
    }
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/auth/register", post(register))
        .route("/api/v1/auth/login", post(login))
        .route("/api/v1/auth/refresh", post(refresh))
        .route("/api/v1/auth/logout", post(logout))
        .route("/api/v1/auth/me", get(me))
        .route("/api/v1/auth/jwks", get(jwks))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/auth/introspect", post(introspect))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RegisterBody {
    email: String,
    password: String,
    name: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub struct LogoutBody {
    #[allow(dead_code)] // accepted for clients that send it; the session ends either way
    refresh_token: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct IntrospectBody {
    token: String,
}

#[utoipa::path(post, path = "/api/v1/auth/register", request_body = RegisterBody,
    responses((status = 201, body = UserView), (status = 409, description = "email_taken"), (status = 422, description = "invalid field"), (status = 429, description = "too many registrations from this address")))]
async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let client = state.client_ip(peer, &headers);
    let user = state.signing.register(&body.email, body.password, body.name, client).await?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(post, path = "/api/v1/auth/login", request_body = LoginBody,
    responses((status = 200, body = TokenPair), (status = 401, description = "invalid_credentials"), (status = 429, description = "rate limited, see Retry-After")))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<TokenPair>, ApiError> {
    let client = state
        .trust_forwarded_for
        .then(|| {
            headers.get("x-forwarded-for")?.to_str().ok()?.split(',').next()?.trim().parse().ok()
        })
        .flatten()
        .unwrap_or(peer.ip());
    Ok(Json(state.signing.login(&body.email, body.password, client).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/refresh", request_body = RefreshBody,
    responses((status = 200, body = TokenPair), (status = 401, description = "invalid or reused refresh token")))]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshBody>,
) -> Result<Json<TokenPair>, ApiError> {
    Ok(Json(state.signing.refresh(&body.refresh_token).await?))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", request_body = LogoutBody, security(("bearer" = [])),
    responses((status = 204, description = "the session's tokens are refused from now on")))]
async fn logout(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<StatusCode, ApiError> {
    state.signing.logout(&principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/auth/me", security(("bearer" = [])), responses((status = 200, body = UserView)))]
async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(state.signing.me(&principal).await?))
}

#[utoipa::path(get, path = "/api/v1/auth/jwks", responses((status = 200, description = "JWKS of the public signing keys")))]
async fn jwks(State(state): State<AppState>) -> Json<JwkSet> {
    Json(state.signing.keys().jwks().clone())
}

#[utoipa::path(post, path = "/api/v1/auth/introspect", request_body = IntrospectBody, security(("service" = [])),
    responses((status = 200, body = Introspection), (status = 401, description = "not a service")))]
async fn introspect(
    State(state): State<AppState>,
    parts: ServiceCredential,
    ApiJson(body): ApiJson<IntrospectBody>,
) -> Result<Json<Introspection>, ApiError> {
    Ok(Json(state.signing.introspect(&parts.0, &body.token).await?))
}

/// The bearer credential of a calling service.
struct ServiceCredential(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ServiceCredential {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let token = bearer(parts).map_err(|_| {
            ApiError::unauthorized(
                "invalid_service_credential",
                "send the service token as a bearer token",
            )
        })?;
        Ok(Self(token.to_owned()))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "edgewatch signing",
        description = "Accounts, sign-in and tokens (API.md \"Signing\")"
    ),
    paths(register, login, refresh, logout, me, jwks, introspect),
    components(schemas(
        RegisterBody,
        LoginBody,
        RefreshBody,
        LogoutBody,
        IntrospectBody,
        UserView,
        TokenPair,
        Introspection
    ))
)]
pub struct ApiDoc;

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
