//! What the signing service does, independent of HTTP: register, login, refresh, logout, me,
//! introspection, and local token verification. Handlers parse, call one of these, and map the
//! result.

use std::{net::IpAddr, sync::Arc, time::Duration};

use edgewatch_common::{
    auth::{
        ACCESS_TYPE, AUDIENCE, AccessClaims, AuthError, ISSUER, Principal, TokenVerifier,
        verify_access,
    },
    cache::Cache,
};
use edgewatch_protocol::{Timestamp, UserId};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::{
    domain::{Email, NewUser, Password, UserView, parse_name},
    error::SigningError,
    keys::KeySet,
    passwords::Hasher,
    repository::UserRepository,
    sessions::{Session, Sessions},
};

/// Login attempts allowed per window, per client address and per account.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimits {
    pub per_ip: u64,
    pub per_account: u64,
    pub window: Duration,
}

/// The token pair of a login or refresh.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// RFC 7662's answer, with the claims edgewatch services use.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sub: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

impl Introspection {
    fn inactive() -> Self {
        Self { active: false, sub: None, role: None, exp: None, sid: None }
    }
}

#[derive(Clone)]
pub struct Signing {
    pub(crate) users: Arc<dyn UserRepository>,
    pub(crate) cache: Arc<dyn Cache>,
    sessions: Sessions,
    keys: Arc<KeySet>,
    hasher: Hasher,
    limits: LoginLimits,
    access_ttl: Duration,
    service_token: Arc<str>,
}

impl Signing {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        users: Arc<dyn UserRepository>,
        cache: Arc<dyn Cache>,
        keys: Arc<KeySet>,
        hasher: Hasher,
        limits: LoginLimits,
        access_ttl: Duration,
        refresh_ttl: Duration,
        service_token: &str,
    ) -> Self {
        Self {
            sessions: Sessions::new(Arc::clone(&cache), refresh_ttl),
            users,
            cache,
            keys,
            hasher,
            limits,
            access_ttl,
            service_token: Arc::from(service_token),
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    #[tracing::instrument(skip_all, fields(%client), err(level = "debug"))]
    pub async fn register(
        &self,
        email: &str,
        password: String,
        name: Option<String>,
        client: IpAddr,
    ) -> Result<UserView, SigningError> {
        // Each registration costs a full password hash: bound them per address like logins.
        self.limit(&format!("register:ip:{client}"), self.limits.per_ip, "register_ip").await?;
        let email = Email::parse(email).map_err(|why| SigningError::invalid("email", why))?;
        let password =
            Password::parse(password).map_err(|why| SigningError::invalid("password", why))?;
        let name = parse_name(name).map_err(|why| SigningError::invalid("name", why))?;
        if self.users.by_email(&email).await?.is_some() {
            return Err(SigningError::EmailTaken);
        }
        let password_hash = self.hasher.hash(password).await?;
        let user = self
            .users
            .create(NewUser {
                id: UserId::new(),
                email,
                name,
                password_hash,
                created_at: Timestamp::now(),
            })
            .await?;
        metrics::counter!("edgewatch_signing_registrations_total").increment(1);
        tracing::info!(user_id = %user.id, role = user.role.as_str(), "Account registered");
        Ok(UserView::from(&user))
    }

    /// The account with this email, if any (`edgewatch up` checks for its administrator).
    pub async fn account(&self, email: &str) -> Result<Option<UserView>, SigningError> {
        let email = Email::parse(email).map_err(|why| SigningError::invalid("email", why))?;
        Ok(self.users.by_email(&email).await?.as_ref().map(UserView::from))
    }

    #[tracing::instrument(skip_all, fields(%client), err(level = "debug"))]
    pub async fn login(
        &self,
        email: &str,
        password: String,
        client: IpAddr,
    ) -> Result<TokenPair, SigningError> {
        let window = self.limits.window;
        let retry_after_s = window.as_secs().max(1);
        if self.cache.incr(&format!("login:ip:{client}"), window).await? > self.limits.per_ip {
            metrics::counter!("edgewatch_signing_login_limited_total", "by" => "ip").increment(1);
            return Err(SigningError::RateLimited { retry_after_s });
        }
        // Malformed emails are refused like unknown ones: nothing tells which accounts exist.
        let email = Email::parse(email).ok();
        let account_key = format!("login:account:{}", email.as_ref().map_or("", Email::as_str));
        if self.cache.incr(&account_key, window).await? > self.limits.per_account {
            metrics::counter!("edgewatch_signing_login_limited_total", "by" => "account")
                .increment(1);
            return Err(SigningError::RateLimited { retry_after_s });
        }
        let user = match &email {
            Some(email) => self.users.by_email(email).await?,
            None => None,
        };
        let hash = user.as_ref().map(|u| u.password_hash.clone());
        let matched = self.hasher.verify(password, hash).await;
        let Some(user) = user.filter(|_| matched) else {
            metrics::counter!("edgewatch_signing_logins_total", "outcome" => "refused")
                .increment(1);
            return Err(SigningError::InvalidCredentials);
        };
        let (sid, refresh_token) =
            self.sessions.start(Session { user_id: user.id, role: user.role }).await?;
        metrics::counter!("edgewatch_signing_logins_total", "outcome" => "ok").increment(1);
        self.pair(user.id, user.role, sid, refresh_token)
    }

    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, SigningError> {
        let rotated = self.sessions.rotate(refresh_token).await?;
        self.pair(rotated.session.user_id, rotated.session.role, rotated.sid, rotated.refresh_token)
    }

    /// Counts one attempt against `key`; refuses past `allowed` in the window.
    async fn limit(&self, key: &str, allowed: u64, by: &'static str) -> Result<(), SigningError> {
        let window = self.limits.window;
        if self.cache.incr(key, window).await? > allowed {
            metrics::counter!("edgewatch_signing_rate_limited_total", "by" => by).increment(1);
            return Err(SigningError::RateLimited { retry_after_s: window.as_secs().max(1) });
        }
        Ok(())
    }

    /// Ends the caller's session (and with it every token of the family).
    pub async fn logout(&self, principal: &Principal) -> Result<(), SigningError> {
        self.sessions.end(&principal.session_id).await?;
        tracing::info!(user_id = %principal.user_id, "Signed out");
        Ok(())
    }

    pub async fn me(&self, principal: &Principal) -> Result<UserView, SigningError> {
        let user = self.users.by_id(principal.user_id).await?.ok_or(AuthError::Revoked)?;
        Ok(UserView::from(&user))
    }

    /// For services: is `token` a live access token? `credential` is the caller's service token.
    pub async fn introspect(
        &self,
        credential: &str,
        token: &str,
    ) -> Result<Introspection, SigningError> {
        if !bool::from(credential.as_bytes().ct_eq(self.service_token.as_bytes())) {
            return Err(SigningError::NotAService);
        }
        match self.verify_claims(token).await {
            Ok(claims) => Ok(Introspection {
                active: true,
                sub: Some(claims.sub),
                role: Some(claims.role.as_str().to_owned()),
                exp: Some(claims.exp),
                sid: Some(claims.sid),
            }),
            Err(SigningError::Auth(_)) => Ok(Introspection::inactive()),
            Err(other) => Err(other),
        }
    }

    async fn verify_claims(&self, token: &str) -> Result<AccessClaims, SigningError> {
        let claims = verify_access(token, self.keys.jwks())?;
        if self.sessions.get(&claims.sid).await?.is_none() {
            return Err(AuthError::Revoked.into());
        }
        Ok(claims)
    }

    fn pair(
        &self,
        user_id: UserId,
        role: edgewatch_common::auth::Role,
        sid: String,
        refresh_token: String,
    ) -> Result<TokenPair, SigningError> {
        let now = Timestamp::now().as_millis() / 1_000;
        let ttl = self.access_ttl.as_secs();
        let claims = AccessClaims {
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
            sub: user_id,
            sid,
            role,
            exp: now + i64::try_from(ttl).unwrap_or(i64::MAX / 2),
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
            typ: ACCESS_TYPE.to_owned(),
        };
        let access_token =
            self.keys.sign(&claims).map_err(|e| SigningError::Internal(e.to_string()))?;
        Ok(TokenPair { access_token, refresh_token, token_type: "Bearer", expires_in: ttl })
    }
}

/// Signing verifies its own callers without a network hop: same checks as `HttpVerifier`.
#[async_trait::async_trait]
impl TokenVerifier for Signing {
    async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match self.verify_claims(token).await {
            Ok(claims) => Ok(Principal::from(&claims)),
            Err(SigningError::Auth(err)) => Err(err),
            Err(other) => Err(AuthError::Unavailable(other.to_string())),
        }
    }
}
