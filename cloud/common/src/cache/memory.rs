//! The in-memory cache (moka): bounded by entry count (least-recently-used entries go first) with
//! a per-entry deadline. Each entry stores its absolute expiry; reads check it, so an entry is
//! never served late even before moka's housekeeping evicts it.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use moka::{Expiry, future::Cache as Moka, ops::compute::Op};

use super::{Cache, CacheError};

pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

#[derive(Clone)]
struct Entry {
    value: Value,
    expires_at: Instant,
}

#[derive(Clone)]
enum Value {
    Bytes(Bytes),
    Counter(u64),
}

impl Value {
    /// Counters read back as their decimal text, as Redis does.
    fn into_bytes(self) -> Bytes {
        match self {
            Value::Bytes(bytes) => bytes,
            Value::Counter(n) => Bytes::from(n.to_string()),
        }
    }
}

struct UntilDeadline;

impl Expiry<String, Entry> for UntilDeadline {
    fn expire_after_create(&self, _: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.expires_at.saturating_duration_since(now))
    }
}

#[derive(Clone)]
pub struct MemoryCache {
    entries: Moka<String, Entry>,
}

impl MemoryCache {
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: Moka::builder().max_capacity(max_entries).expire_after(UntilDeadline).build(),
        }
    }

    async fn live(&self, key: &str) -> Option<Entry> {
        self.entries.get(key).await.filter(|e| e.expires_at > Instant::now())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        Ok(self.live(key).await.map(|entry| entry.value.into_bytes()))
    }

    async fn set(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), CacheError> {
        let entry = Entry { value: Value::Bytes(value), expires_at: Instant::now() + ttl };
        self.entries.insert(key.to_owned(), entry).await;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.entries.invalidate(key).await;
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>, CacheError> {
        // `remove` is atomic per key: concurrent takers see the entry at most once.
        let now = Instant::now();
        Ok(self
            .entries
            .remove(key)
            .await
            .filter(|e| e.expires_at > now)
            .map(|e| e.value.into_bytes()))
    }

    async fn incr(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        let result = self
            .entries
            .entry(key.to_owned())
            .and_compute_with(|current| async move {
                let now = Instant::now();
                let next = match current.map(|e| e.into_value()) {
                    Some(Entry { value: Value::Counter(n), expires_at }) if expires_at > now => {
                        Entry { value: Value::Counter(n + 1), expires_at }
                    }
                    _ => Entry { value: Value::Counter(1), expires_at: now + window },
                };
                Op::Put(next)
            })
            .await;
        match result.into_entry().map(|e| e.into_value().value) {
            Some(Value::Counter(n)) => Ok(n),
            _ => Err(CacheError::Unavailable("counter update lost".into())),
        }
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}
