//! Device authentication over HTTP against the devices service: the broker asks
//! `GET {devices}/api/v1/devices/{id}/config/current` with `Authorization: Bearer <secret>`,
//! the one route that accepts exactly a device credential (API.md). 200 means the pair is valid;
//! 401/403/404 mean it is not; anything else means the service cannot tell right now.
//!
//! "Yes" answers are cached for `cache_ttl` (keyed by a hash of id and secret, never the secret
//! itself) so reconnect storms and the periodic re-checks do not hammer the service. "No" is
//! never cached. Revocation therefore reaches a connected device within `cache_ttl` plus the
//! front's re-check interval (2 s + 2.5 s by default, under the 5 s the contract allows).

use std::time::Duration;

use async_trait::async_trait;
use edgewatch_protocol::DeviceId;
use moka::future::Cache;
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{AuthError, Authenticator, Login};
use crate::acl::Identity;

/// The HTTP adapter (see the module docs).
pub struct DevicesHttp {
    client: reqwest::Client,
    base_url: String,
    valid: Cache<[u8; 32], ()>,
}

impl DevicesHttp {
    /// `base_url` is the devices service (`http://host:port`, no trailing path).
    pub fn new(base_url: &str, cache_ttl: Duration, timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            valid: Cache::builder().max_capacity(100_000).time_to_live(cache_ttl).build(),
        }
    }
}

fn cache_key(id: DeviceId, secret: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(id.to_string().as_bytes());
    hash.update([0]);
    hash.update(secret.as_bytes());
    hash.finalize().into()
}

#[async_trait]
impl Authenticator for DevicesHttp {
    #[tracing::instrument(skip_all, fields(username = %login.username))]
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        // Only the canonical spelling of a device id: a topic prefix is built from it.
        let id = DeviceId::parse(&login.username).map_err(|_| AuthError::UnknownUser)?;
        if id.to_string() != login.username {
            return Err(AuthError::UnknownUser);
        }
        let key = cache_key(id, &login.password);
        if self.valid.get(&key).await.is_some() {
            return Ok(Identity::Device(id));
        }
        let answer = self
            .client
            .get(format!("{}/api/v1/devices/{id}/config/current", self.base_url))
            .bearer_auth(&login.password)
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(format!("devices service: {e}")))?;
        match answer.status() {
            StatusCode::OK => {
                self.valid.insert(key, ()).await;
                Ok(Identity::Device(id))
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND => {
                Err(AuthError::Denied)
            }
            other => Err(AuthError::Unavailable(format!("devices service answered {other}"))),
        }
    }
}
