//! The verification layer of services other than signing: JWKS over HTTP, local signature
//! checks, introspection of the session over HTTP with a short cache.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use moka::future::Cache as Moka;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::{AuthError, Principal, TokenVerifier, verify_access};

/// How long an introspection answer is trusted: the bound on how late a logout takes effect.
pub const SESSION_CACHE_TTL: Duration = Duration::from_secs(3);
/// Unknown `kid`s refetch the JWKS at most this often (a flood of forged kids costs one fetch).
const JWKS_MIN_REFRESH: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(3);

/// Verifies access tokens for a service that is not signing.
pub struct HttpVerifier {
    http: reqwest::Client,
    signing_url: String,
    service_token: String,
    jwks: RwLock<Arc<JwkSet>>,
    last_fetch: Mutex<Option<Instant>>,
    sessions: Moka<String, bool>,
    /// Tokens verified lately, with their expiry: a client's repeated calls skip the signature
    /// check. Held no longer than the session answer, so a logout is as prompt as without it.
    verified: Moka<String, (Principal, i64)>,
}

#[derive(Deserialize)]
struct Introspection {
    active: bool,
}

impl HttpVerifier {
    /// `signing_url` is the base URL of the signing service (`http://signing:8080`);
    /// `service_token` authenticates this service to its introspection endpoint.
    pub fn new(signing_url: &str, service_token: &str) -> Self {
        Self {
            http: reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default(),
            signing_url: signing_url.trim_end_matches('/').to_owned(),
            service_token: service_token.to_owned(),
            jwks: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            last_fetch: Mutex::new(None),
            sessions: Moka::builder().max_capacity(100_000).time_to_live(SESSION_CACHE_TTL).build(),
            verified: Moka::builder().max_capacity(100_000).time_to_live(SESSION_CACHE_TTL).build(),
        }
    }

    fn current_jwks(&self) -> Arc<JwkSet> {
        Arc::clone(&self.jwks.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Refetches the JWKS unless it was fetched moments ago.
    async fn refresh_jwks(&self) -> Result<(), AuthError> {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_MIN_REFRESH) {
            return Ok(());
        }
        let url = format!("{}/api/v1/auth/jwks", self.signing_url);
        let jwks: JwkSet = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Unavailable(format!("fetching {url}: {e}")))?
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(format!("reading {url}: {e}")))?;
        *self.jwks.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(jwks);
        *last = Some(Instant::now());
        Ok(())
    }

    async fn session_active(&self, session_id: &str, token: &str) -> Result<bool, AuthError> {
        if let Some(active) = self.sessions.get(session_id).await {
            return Ok(active);
        }
        let url = format!("{}/api/v1/auth/introspect", self.signing_url);
        let answer: Introspection = self
            .http
            .post(&url)
            .bearer_auth(&self.service_token)
            .json(&serde_json::json!({"token": token}))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::Unavailable(format!("introspecting at {url}: {e}")))?
            .json()
            .await
            .map_err(|e| AuthError::Unavailable(format!("reading {url}: {e}")))?;
        self.sessions.insert(session_id.to_owned(), answer.active).await;
        Ok(answer.active)
    }
}

#[async_trait]
impl TokenVerifier for HttpVerifier {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if let Some((principal, exp)) = self.verified.get(token).await {
            let now = edgewatch_protocol::Timestamp::now().as_millis() / 1_000;
            return if now < exp { Ok(principal) } else { Err(AuthError::Expired) };
        }
        let claims = match verify_access(token, &self.current_jwks()) {
            Err(AuthError::UnknownKey(_)) => {
                self.refresh_jwks().await?;
                verify_access(token, &self.current_jwks())?
            }
            other => other?,
        };
        if !self.session_active(&claims.sid, token).await? {
            return Err(AuthError::Revoked);
        }
        let principal = Principal::from(&claims);
        self.verified.insert(token.to_owned(), (principal.clone(), claims.exp)).await;
        Ok(principal)
    }
}
