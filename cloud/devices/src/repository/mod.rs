//! The registry store port: PostgreSQL ([`postgres`]) and SQLite ([`sqlite`]), one conformance
//! suite (`tests/api/repository.rs`). Listing pages by id — ids are UUID v7, so id order is
//! creation order and a cursor stays correct while rows are inserted.
//!
//! Every registry change that other services hear about (`device.created|updated|deleted`,
//! `device.status`) writes its event into the `device_outbox` table in the same transaction as
//! the change itself, so the registry and its events cannot diverge: the relay
//! ([`crate::outbox`]) publishes the rows later, and a bus outage only delays them.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use edgewatch_protocol::{
    DeviceId, DeviceRecord, DeviceStatus, Location, RoutingKey, StatusEvent, Timestamp, UserId,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("the device database is unavailable: {0}")]
    Unavailable(String),
    #[error("the device database holds a row it cannot read: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}`: use postgres:// or sqlite://")]
    UnsupportedUrl(String),
}

/// A device with its credential hash.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDevice {
    pub record: DeviceRecord,
    pub secret_hash: Option<String>,
}

/// A device's configuration as last set.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConfig {
    pub version: u64,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub updated_at: Option<Timestamp>,
    /// The version the device last reported as applied (its status message), if it did.
    pub applied_version: Option<u64>,
}

/// A status change the store made; its `device.status` event is in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusChange {
    pub device_id: DeviceId,
    pub status: DeviceStatus,
    pub at: Timestamp,
}

/// An event waiting in the outbox, as it will go on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEvent {
    /// Relay order.
    pub id: i64,
    pub routing_key: String,
    /// Stable across republishes, so a consumer can recognise a duplicate.
    pub message_id: String,
    pub body: String,
}

/// An outbox row about to be written.
pub(crate) struct NewEvent {
    routing_key: String,
    message_id: String,
    body: String,
}

impl NewEvent {
    /// `device.created|updated|deleted` with the device as its body.
    pub(crate) fn device(key: RoutingKey, record: &DeviceRecord) -> Self {
        let message_id = match key {
            RoutingKey::DeviceUpdated => {
                format!("{key}:{}:{}", record.id, record.updated_at.as_millis())
            }
            _ => format!("{key}:{}", record.id),
        };
        Self { routing_key: key.to_string(), message_id, body: json(record) }
    }

    /// `device.status`.
    pub(crate) fn status(change: &StatusChange) -> Self {
        let event =
            StatusEvent { device_id: change.device_id, status: change.status, ts: change.at };
        Self {
            routing_key: RoutingKey::DeviceStatus.to_string(),
            message_id: format!(
                "{}:{}:{}:{}",
                RoutingKey::DeviceStatus,
                change.device_id,
                status_str(change.status),
                change.at.as_millis()
            ),
            body: json(&event),
        }
    }
}

/// What to list. `owner: None` lists every owner's devices (admins).
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub owner: Option<UserId>,
    /// Case-insensitive text in the name or a tag.
    pub q: Option<String>,
    pub tag: Option<String>,
    pub status: Option<DeviceStatus>,
    pub kind: Option<String>,
    pub limit: usize,
    /// Only devices with a greater id (the cursor).
    pub after: Option<DeviceId>,
}

#[async_trait]
pub trait DeviceRepository: Send + Sync + 'static {
    /// Stores a new device with its one-time enrollment token hash.
    async fn create(
        &self,
        record: &DeviceRecord,
        enrollment_hash: &str,
        enrollment_expires: Timestamp,
    ) -> Result<(), RepoError>;
    async fn get(&self, id: DeviceId) -> Result<Option<StoredDevice>, RepoError>;
    /// At most `limit` devices matching `query`, by id.
    async fn list(&self, query: &ListQuery) -> Result<Vec<DeviceRecord>, RepoError>;
    /// Writes name, kind, tags, location, metadata and updated_at (and a `device.updated`
    /// event); the device as stored, or `None` if it is gone.
    async fn update(&self, record: &DeviceRecord) -> Result<Option<DeviceRecord>, RepoError>;
    /// Deletes the device (and writes a `device.deleted` event); false if it was gone.
    async fn delete(&self, id: DeviceId) -> Result<bool, RepoError>;
    /// Trades a live enrollment token (by hash) for a secret, once: the token is consumed.
    async fn enroll(
        &self,
        enrollment_hash: &str,
        now: Timestamp,
        secret_hash: &str,
    ) -> Result<Option<DeviceId>, RepoError>;
    /// Replaces the device's secret hash; false if the device is gone.
    async fn set_secret(&self, id: DeviceId, secret_hash: &str) -> Result<bool, RepoError>;
    /// Replaces the configuration and bumps its version; `None` if the device is gone.
    async fn set_config(
        &self,
        id: DeviceId,
        config: &serde_json::Map<String, serde_json::Value>,
        at: Timestamp,
    ) -> Result<Option<u64>, RepoError>;
    async fn config(&self, id: DeviceId) -> Result<Option<StoredConfig>, RepoError>;
    /// Records traffic from the device: online, last seen at `at`. The change, if it was not
    /// online before (its `device.status` event is written with it).
    async fn mark_seen(
        &self,
        id: DeviceId,
        at: Timestamp,
    ) -> Result<Option<StatusChange>, RepoError>;
    /// Records that the device's readings up to `seq` are on the bus; returns the highest seq
    /// recorded before this call (0 for none), or `None` if the device is gone.
    async fn handed_on(&self, id: DeviceId, seq: u64) -> Result<Option<u64>, RepoError>;
    /// Sets the status the device reported (online also counts as seen at `at`) and the config
    /// version it applied. The change, if the status changed.
    async fn set_status(
        &self,
        id: DeviceId,
        status: DeviceStatus,
        at: Timestamp,
        applied_config_version: Option<u64>,
    ) -> Result<Option<StatusChange>, RepoError>;
    /// Marks offline (at `at`) up to `limit` online devices last seen before `seen_before`.
    async fn sweep_offline(
        &self,
        seen_before: Timestamp,
        at: Timestamp,
        limit: usize,
    ) -> Result<Vec<StatusChange>, RepoError>;
    /// The oldest `limit` events not yet relayed, in order.
    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEvent>, RepoError>;
    /// Forgets relayed events.
    async fn outbox_delete(&self, ids: &[i64]) -> Result<(), RepoError>;
    /// The lock that makes one replica at a time the outbox relay ([`crate::outbox`]).
    fn relay_lock(&self) -> Box<dyn RelayLock>;
    async fn ping(&self) -> Result<(), RepoError>;
}

/// The right to relay the outbox, held by at most one replica of a deployment.
#[async_trait]
pub trait RelayLock: Send {
    /// Whether this replica is the relay now: takes the lock if it is free, or checks that it
    /// still holds it. `Ok(false)`: another replica relays. An error loses the lock.
    async fn hold(&mut self) -> Result<bool, RepoError>;
}

/// The lock of a store that only one process opens (SQLite: the embedded shape): always held.
pub struct SoleProcess;

#[async_trait]
impl RelayLock for SoleProcess {
    async fn hold(&mut self) -> Result<bool, RepoError> {
        Ok(true)
    }
}

pub async fn connect(url: &str) -> Result<Arc<dyn DeviceRepository>, RepoError> {
    match edgewatch_common::config::url_scheme(url) {
        Some("postgres" | "postgresql") => {
            Ok(Arc::new(postgres::PostgresDevices::connect(url).await?))
        }
        Some("sqlite") => Ok(Arc::new(sqlite::SqliteDevices::connect(url).await?)),
        _ => Err(RepoError::UnsupportedUrl(url.chars().take(64).collect())),
    }
}

fn unavailable(err: sqlx::Error) -> RepoError {
    RepoError::Unavailable(err.to_string())
}

/// `%text%` for LIKE, with the wildcards in `text` escaped by `\`.
fn like_pattern(text: &str) -> String {
    let escaped: String = text
        .to_lowercase()
        .chars()
        .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
        .collect();
    format!("%{escaped}%")
}

pub(crate) fn status_str(status: DeviceStatus) -> &'static str {
    match status {
        DeviceStatus::NeverSeen => "never_seen",
        DeviceStatus::Online => "online",
        DeviceStatus::Offline => "offline",
    }
}

const COLUMNS: &str = "name, kind, tags, location, metadata, status, last_seen_at_ms, config_version, \
                       created_at_ms, updated_at_ms, secret_hash";

/// A row as both adapters read it (JSON columns as text).
struct Row {
    id: String,
    owner_id: String,
    name: String,
    kind: Option<String>,
    tags: String,
    location: Option<String>,
    metadata: String,
    status: String,
    last_seen_at_ms: Option<i64>,
    config_version: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
    secret_hash: Option<String>,
}

impl Row {
    /// Reads `id, owner_id` then [`COLUMNS`], in that order.
    fn read<'r, R>(row: &'r R) -> Result<Self, RepoError>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let get = |e: sqlx::Error| RepoError::Corrupt(e.to_string());
        Ok(Self {
            id: row.try_get(0).map_err(get)?,
            owner_id: row.try_get(1).map_err(get)?,
            name: row.try_get(2).map_err(get)?,
            kind: row.try_get(3).map_err(get)?,
            tags: row.try_get(4).map_err(get)?,
            location: row.try_get(5).map_err(get)?,
            metadata: row.try_get(6).map_err(get)?,
            status: row.try_get(7).map_err(get)?,
            last_seen_at_ms: row.try_get(8).map_err(get)?,
            config_version: row.try_get(9).map_err(get)?,
            created_at_ms: row.try_get(10).map_err(get)?,
            updated_at_ms: row.try_get(11).map_err(get)?,
            secret_hash: row.try_get(12).map_err(get)?,
        })
    }

    fn into_stored(self) -> Result<StoredDevice, RepoError> {
        let corrupt = |what: &str| RepoError::Corrupt(format!("{what} of device {}", self.id));
        let ts = |ms: i64| Timestamp::from_millis(ms).map_err(|_| corrupt("a time"));
        let record = DeviceRecord {
            id: DeviceId::parse(&self.id).map_err(|_| corrupt("id"))?,
            owner_id: UserId::parse(&self.owner_id).map_err(|_| corrupt("owner_id"))?,
            tags: serde_json::from_str(&self.tags).map_err(|_| corrupt("tags"))?,
            location: match &self.location {
                Some(text) => serde_json::from_str::<Option<Location>>(text)
                    .map_err(|_| corrupt("location"))?,
                None => None,
            },
            metadata: serde_json::from_str(&self.metadata).map_err(|_| corrupt("metadata"))?,
            status: serde_json::from_value(serde_json::Value::String(self.status.clone()))
                .map_err(|_| corrupt("status"))?,
            last_seen_at: self.last_seen_at_ms.map(ts).transpose()?,
            config_version: u64::try_from(self.config_version)
                .map_err(|_| corrupt("config_version"))?,
            created_at: ts(self.created_at_ms)?,
            updated_at: ts(self.updated_at_ms)?,
            name: self.name,
            kind: self.kind,
        };
        Ok(StoredDevice { record, secret_hash: self.secret_hash })
    }
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// Reads `(config_version, config, config_updated_at_ms, applied_config_version)` into a
/// [`StoredConfig`].
fn stored_config(
    version: i64,
    config: &str,
    updated_at_ms: Option<i64>,
    applied: Option<i64>,
) -> Result<StoredConfig, RepoError> {
    let corrupt = |what: &str| RepoError::Corrupt(format!("device {what}"));
    Ok(StoredConfig {
        version: u64::try_from(version).map_err(|_| corrupt("config_version"))?,
        config: serde_json::from_str(config).map_err(|_| corrupt("config"))?,
        updated_at: updated_at_ms
            .map(|ms| Timestamp::from_millis(ms).map_err(|_| corrupt("config time")))
            .transpose()?,
        applied_version: applied.and_then(|v| u64::try_from(v).ok()),
    })
}

fn parse_id(id: &str) -> Result<DeviceId, RepoError> {
    DeviceId::parse(id).map_err(|e| RepoError::Corrupt(e.to_string()))
}

fn i64_of(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
