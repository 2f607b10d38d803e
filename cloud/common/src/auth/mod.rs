//! Who is calling: access-token claims, their verification, and the verification layer every
//! service puts in front of its routes.
//!
//! Access tokens are EdDSA JWTs signed by the signing service with a `kid`. [`verify_access`]
//! checks one against a JWKS with the algorithm pinned and `iss`, `aud`, `exp`, `typ` enforced.
//! [`HttpVerifier`] is the layer other services use: it fetches the JWKS from signing over HTTP
//! (and again when it meets an unknown `kid`, so key rotation needs no restart), verifies locally,
//! then asks signing's introspection whether the session is still alive — cached for
//! [`SESSION_CACHE_TTL`], so a logout is refused everywhere within that time. Handlers take the
//! [`Authenticated`] extractor.

mod http_verifier;

use std::sync::Arc;

use async_trait::async_trait;
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use edgewatch_protocol::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::{Deserialize, Serialize};

pub use http_verifier::{HttpVerifier, SESSION_CACHE_TTL};

use crate::ApiError;

/// The `iss` of every access token.
pub const ISSUER: &str = "edgewatch-signing";
/// The `aud` of every access token.
pub const AUDIENCE: &str = "edgewatch";
/// The `typ` claim of access tokens (refresh tokens are opaque and never JWTs).
pub const ACCESS_TYPE: &str = "access";

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: UserId,
    /// The session (refresh-token family) the token belongs to.
    pub sid: String,
    pub role: Role,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub typ: String,
}

/// The caller of a request, once verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub role: Role,
    pub session_id: String,
}

impl Principal {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

impl From<&AccessClaims> for Principal {
    fn from(claims: &AccessClaims) -> Self {
        Self { user_id: claims.sub, role: claims.role, session_id: claims.sid.clone() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <access token>`")]
    Missing,
    #[error("the token is not a valid access token: {0}")]
    Invalid(String),
    #[error("the token was signed with an unknown key `{0}`")]
    UnknownKey(String),
    #[error("the token has expired; refresh it")]
    Expired,
    #[error("the session has ended (signed out or revoked); sign in again")]
    Revoked,
    #[error("cannot check the token now: {0}")]
    Unavailable(String),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Unavailable(cause) => ApiError::unavailable("the signing service", cause),
            AuthError::Expired => ApiError::unauthorized("token_expired", err.to_string()),
            AuthError::Revoked => ApiError::unauthorized("session_revoked", err.to_string()),
            _ => ApiError::unauthorized("invalid_token", err.to_string()),
        }
    }
}

/// Verifies an access token's signature and claims against `jwks`.
pub fn verify_access(token: &str, jwks: &JwkSet) -> Result<AccessClaims, AuthError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
    if header.alg != Algorithm::EdDSA {
        return Err(AuthError::Invalid(format!("algorithm {:?} is not accepted", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| AuthError::Invalid("no kid in the header".into()))?;
    let jwk = jwks.find(&kid).ok_or(AuthError::UnknownKey(kid))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Invalid(e.to_string()))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = 5;
    let data =
        jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            }
        })?;
    if data.claims.typ != ACCESS_TYPE {
        return Err(AuthError::Invalid("not an access token".into()));
    }
    Ok(data.claims)
}

/// Turns a bearer token into a [`Principal`].
#[async_trait]
pub trait TokenVerifier: Send + Sync + 'static {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError>;
}

/// The bearer token of a request.
pub fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts.headers.get(header::AUTHORIZATION).ok_or(AuthError::Missing)?;
    let value = value.to_str().map_err(|_| AuthError::Missing)?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(AuthError::Missing),
    }
}

/// The verified caller; a handler that takes it answers 401 to anyone else.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S> FromRequestParts<S> for Authenticated
where
    Arc<dyn TokenVerifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let verifier = <Arc<dyn TokenVerifier>>::from_ref(state);
        let token = bearer(parts)?;
        Ok(Self(verifier.verify(token).await?))
    }
}
