//! The Redis cache of the distributed shape. One multiplexed connection (redis'
//! `ConnectionManager`, which reconnects by itself after Redis restarts) with short timeouts, so
//! that an outage turns into `Unavailable` errors — answered as 503 — instead of hung requests.
//! Every key is prefixed with a namespace, so deployments (and tests) can share one server.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use redis::{AsyncCommands, aio::ConnectionManager, aio::ConnectionManagerConfig};

use super::{Cache, CacheError};

const TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct RedisCache {
    connection: ConnectionManager,
    prefix: String,
}

fn unavailable(err: redis::RedisError) -> CacheError {
    CacheError::Unavailable(err.to_string())
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl RedisCache {
    /// Connects to `url` (`redis://host:port[/db]`); keys are stored as `<prefix><key>`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let connection =
            ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
        Ok(Self { connection, prefix: prefix.to_owned() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let value: Option<Vec<u8>> =
            self.connection.clone().get(self.key(key)).await.map_err(unavailable)?;
        Ok(value.map(Bytes::from))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let options =
            redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(millis(ttl)));
        self.connection
            .clone()
            .set_options::<_, _, ()>(self.key(key), value.as_ref(), options)
            .await
            .map_err(unavailable)
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.connection.clone().del::<_, ()>(self.key(key)).await.map_err(unavailable)
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        let value: Option<Vec<u8>> =
            self.connection.clone().get_del(self.key(key)).await.map_err(unavailable)?;
        Ok(value.map(Bytes::from))
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        // Create the counter with its expiry if absent, then count, in one transaction: the
        // counter can never exist without an expiry.
        let key = self.key(key);
        let (count,): (u64,) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("PX")
            .arg(millis(window))
            .arg("NX")
            .ignore()
            .incr(&key, 1)
            .query_async(&mut self.connection.clone())
            .await
            .map_err(unavailable)?;
        Ok(count)
    }

    async fn ping(&self) -> Result<(), CacheError> {
        redis::cmd("PING")
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(unavailable)
    }
}
