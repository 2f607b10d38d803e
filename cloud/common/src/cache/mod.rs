//! The cache port: short-lived shared state — cached lookups (device credentials, introspection
//! answers), single-use tokens, and fixed-window counters for rate limits. Values are bytes with a
//! time to live; everything here may vanish early (eviction, restart) and callers must treat a
//! miss as "ask the source of truth". Adapters: [`memory`] (moka, for `edgewatch up`) and [`redis`]. Checked by `testkit::conformance::cache`.

pub mod memory;
pub mod redis;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CacheError {
    #[error("the cache is unavailable: {0}")]
    Unavailable(String),
    #[error("unsupported cache URL `{0}`: use memory:// or redis://")]
    UnsupportedUrl(String),
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError>;

    /// Stores `value` for `ttl`, replacing any value and its expiry.
    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError>;

    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// Gets and removes `key` in one step: of two concurrent takers at most one gets the value
    /// (single-use tokens).
    async fn take(&self, key: &str) -> Result<Option<Bytes>, CacheError>;

    /// Adds one to the counter `key` and returns the new count. The first increment starts a
    /// window of `window`; the counter disappears when it ends (fixed-window rate limiting).
    async fn incr(&self, key: &str, window: Duration) -> Result<u64, CacheError>;

    /// Whether the cache is reachable now (for `/readyz`).
    async fn ping(&self) -> Result<(), CacheError>;
}

/// Picks the adapter by URL scheme; Redis keys are prefixed with `namespace` (e.g. `edgewatch:`).
pub async fn connect(url: &str, namespace: &str) -> Result<Arc<dyn Cache>, CacheError> {
    match crate::config::url_scheme(url) {
        Some("memory") => Ok(Arc::new(memory::MemoryCache::new(memory::DEFAULT_MAX_ENTRIES))),
        Some("redis" | "rediss") => {
            Ok(Arc::new(self::redis::RedisCache::connect(url, namespace).await?))
        }
        _ => Err(CacheError::UnsupportedUrl(url.chars().take(64).collect())),
    }
}
