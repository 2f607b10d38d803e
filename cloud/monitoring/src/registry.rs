//! Who may see a device: the device registry is the one authority, so monitoring asks it
//! (`GET /api/v1/devices/{id}` with the caller's own token, which applies the registry's own
//! ownership rule) instead of keeping a copy that could drift. Answers are cached per session
//! and device for [`ACCESS_TTL`], so a chart's dozen queries cost one registry call; the
//! registry's `device.updated|deleted` events drop a device's entries at once, and the TTL bounds
//! the staleness should an event be late.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use edgewatch_protocol::DeviceId;
use moka::future::Cache;
use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::MonitoringError;

pub const ACCESS_TTL: Duration = Duration::from_secs(15);
const TIMEOUT: Duration = Duration::from_secs(5);

/// Whether a caller may see a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Allowed,
    NotYours,
    Unknown,
}

/// The port to the device registry.
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// What the registry says of `device` for the holder of `token`.
    async fn access(&self, token: &str, device: DeviceId) -> Result<Access, MonitoringError>;

    /// Every device the holder of `token` may see.
    async fn visible(&self, token: &str) -> Result<Vec<DeviceId>, MonitoringError>;

    /// Drops what is remembered of `device` (it changed owner or was deleted).
    fn forget(&self, device: DeviceId);
}

/// The devices service over HTTP.
pub struct HttpRegistry {
    base_url: String,
    client: reqwest::Client,
    cache: Cache<(String, DeviceId), Access>,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Item>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    id: DeviceId,
}

fn unreachable(err: reqwest::Error) -> MonitoringError {
    MonitoringError::Registry(err.to_string())
}

impl HttpRegistry {
    pub fn new(base_url: &str) -> Arc<Self> {
        Arc::new(Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            client: reqwest::Client::builder().timeout(TIMEOUT).build().unwrap_or_default(),
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ACCESS_TTL)
                .support_invalidation_closures()
                .build(),
        })
    }

    async fn ask(&self, token: &str, device: DeviceId) -> Result<Access, MonitoringError> {
        let answer = self
            .client
            .get(format!("{}/api/v1/devices/{device}", self.base_url))
            .bearer_auth(token)
            .send()
            .await
            .map_err(unreachable)?;
        match answer.status() {
            StatusCode::OK => Ok(Access::Allowed),
            StatusCode::FORBIDDEN => Ok(Access::NotYours),
            StatusCode::NOT_FOUND => Ok(Access::Unknown),
            StatusCode::UNAUTHORIZED => Err(MonitoringError::Unauthorized),
            other => Err(MonitoringError::Registry(format!("the registry answered {other}"))),
        }
    }
}

#[async_trait]
impl Registry for HttpRegistry {
    async fn access(&self, token: &str, device: DeviceId) -> Result<Access, MonitoringError> {
        let key = (token.to_owned(), device);
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let access = self.ask(token, device).await?;
        self.cache.insert(key, access).await;
        Ok(access)
    }

    fn forget(&self, device: DeviceId) {
        // Only fails when the cache was built without closures, which `new` does not do.
        let _ = self.cache.invalidate_entries_if(move |(_, cached), _| *cached == device);
    }

    async fn visible(&self, token: &str) -> Result<Vec<DeviceId>, MonitoringError> {
        let mut devices = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("{}/api/v1/devices?limit=500", self.base_url);
            if let Some(cursor) = &cursor {
                // Cursors are opaque URL-safe tokens minted by the registry.
                url.push_str("&cursor=");
                url.push_str(cursor);
            }
            let answer =
                self.client.get(url).bearer_auth(token).send().await.map_err(unreachable)?;
            match answer.status() {
                StatusCode::OK => {}
                StatusCode::UNAUTHORIZED => return Err(MonitoringError::Unauthorized),
                other => {
                    return Err(MonitoringError::Registry(format!(
                        "the registry answered {other}"
                    )));
                }
            }
            let page: Page = answer.json().await.map_err(unreachable)?;
            devices.extend(page.items.into_iter().map(|item| item.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(devices),
            }
        }
    }
}

/// Checks access and turns a refusal into the error the API answers with.
pub async fn require(
    registry: &dyn Registry,
    token: &str,
    device: DeviceId,
) -> Result<(), MonitoringError> {
    match registry.access(token, device).await? {
        Access::Allowed => Ok(()),
        Access::NotYours => Err(MonitoringError::NotYours),
        Access::Unknown => Err(MonitoringError::NotFound),
    }
}
