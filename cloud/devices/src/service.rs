//! What the devices service does, independent of HTTP. Every registry call takes the caller and
//! enforces ownership: users see and change their own devices, admins all of them.

use std::{sync::Arc, time::Duration};

use edgewatch_common::{
    auth::Principal,
    bus::{Bus, Message},
    cache::Cache,
};
use edgewatch_protocol::{Batch, ConfigMessage, DeviceId, DeviceRecord, DeviceStatus, Timestamp};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::{
    domain::{self, DeviceInput, DevicePatch, hash_secret, new_secret},
    error::DevicesError,
    mqtt::ConfigPublisher,
    repository::{DeviceRepository, ListQuery},
};

/// Where an enrolled device connects, as told to it on enrollment.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Endpoints {
    pub mqtt: MqttEndpoint,
    pub http: HttpEndpoint,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MqttEndpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HttpEndpoint {
    pub base_url: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Enrolled {
    #[schema(value_type = String)]
    pub device_id: DeviceId,
    pub device_secret: String,
    pub mqtt: MqttEndpoint,
    pub http: HttpEndpoint,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    pub accepted: usize,
    /// Always 0 here: readings are deduplicated by the telemetry store, which counts them.
    pub duplicates: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<DeviceRecord>,
    pub next_cursor: Option<String>,
}

/// The filters of `GET /devices`, as parsed from the query string.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub q: Option<String>,
    pub tag: Option<String>,
    pub status: Option<DeviceStatus>,
    pub kind: Option<String>,
    pub limit: usize,
    pub cursor: Option<DeviceId>,
}

/// A device's configuration: `GET/PUT /devices/{id}/config`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfigView {
    pub version: u64,
    #[schema(value_type = Object)]
    pub config: serde_json::Map<String, serde_json::Value>,
    #[schema(value_type = Option<String>)]
    pub updated_at: Option<Timestamp>,
}

#[derive(Clone)]
pub struct Devices {
    pub(crate) repo: Arc<dyn DeviceRepository>,
    pub(crate) bus: Arc<dyn Bus>,
    enrollment_ttl: Duration,
    endpoints: Endpoints,
    mqtt: Option<ConfigPublisher>,
    /// Device secret hashes by id, for the credential check on every ingest request.
    credentials: Arc<dyn Cache>,
}

/// How long a cached secret hash is trusted; rotation and deletion evict it at once.
const CREDENTIAL_TTL: Duration = Duration::from_secs(60);

fn credential_key(id: DeviceId) -> String {
    format!("device:secret:{id}")
}

fn owned(principal: &Principal, record: &DeviceRecord) -> Result<(), DevicesError> {
    if principal.is_admin() || record.owner_id == principal.user_id {
        Ok(())
    } else {
        Err(DevicesError::NotYours)
    }
}

fn invalid((field, why): domain::Invalid) -> DevicesError {
    DevicesError::InvalidField(field, why)
}

impl Devices {
    pub fn new(
        repo: Arc<dyn DeviceRepository>,
        bus: Arc<dyn Bus>,
        enrollment_ttl: Duration,
        endpoints: Endpoints,
        mqtt: Option<ConfigPublisher>,
        credentials: Arc<dyn Cache>,
    ) -> Self {
        Self { repo, bus, enrollment_ttl, endpoints, mqtt, credentials }
    }

    /// Evicts a device's cached credential. Failing to is an error: a stale entry would let an
    /// old secret work until it expires.
    async fn forget_credential(&self, id: DeviceId) -> Result<(), DevicesError> {
        self.credentials.delete(&credential_key(id)).await.map_err(|e| DevicesError::Unavailable {
            dependency: "the credential cache",
            cause: e.to_string(),
        })
    }

    /// The bus telemetry goes to (tests and `edgewatch up` consume from it).
    pub fn bus(&self) -> Arc<dyn Bus> {
        Arc::clone(&self.bus)
    }

    /// Registers a device; returns it and its one-time enrollment token.
    pub async fn create(
        &self,
        principal: &Principal,
        input: DeviceInput,
    ) -> Result<(DeviceRecord, String), DevicesError> {
        let now = Timestamp::now();
        let record = DeviceRecord {
            id: DeviceId::new(),
            name: domain::check_name(&input.name).map_err(invalid)?,
            kind: domain::check_kind(input.kind).map_err(invalid)?,
            tags: domain::check_tags(input.tags).map_err(invalid)?,
            location: domain::check_location(input.location).map_err(invalid)?,
            metadata: domain::check_metadata(input.metadata).map_err(invalid)?,
            owner_id: principal.user_id,
            status: DeviceStatus::NeverSeen,
            last_seen_at: None,
            config_version: 0,
            created_at: now,
            updated_at: now,
        };
        let (token, token_hash) = new_secret();
        let expires_ms = now
            .as_millis()
            .saturating_add(i64::try_from(self.enrollment_ttl.as_millis()).unwrap_or(i64::MAX / 2));
        let expires = Timestamp::from_millis(expires_ms).unwrap_or(now);
        self.repo.create(&record, &token_hash, expires).await?;
        tracing::info!(device_id = %record.id, owner = %principal.user_id, "Device registered");
        Ok((record, token))
    }

    pub async fn list(&self, principal: &Principal, search: Search) -> Result<Page, DevicesError> {
        let limit = search.limit;
        let query = ListQuery {
            owner: (!principal.is_admin()).then_some(principal.user_id),
            q: search.q.filter(|q| !q.trim().is_empty()),
            tag: search.tag,
            status: search.status,
            kind: search.kind,
            limit: limit + 1,
            after: search.cursor,
        };
        let mut items = self.repo.list(&query).await?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|d| d.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }

    pub async fn get(
        &self,
        principal: &Principal,
        id: DeviceId,
    ) -> Result<DeviceRecord, DevicesError> {
        let record = self.repo.get(id).await?.ok_or(DevicesError::NotFound)?.record;
        owned(principal, &record)?;
        Ok(record)
    }

    pub async fn patch(
        &self,
        principal: &Principal,
        id: DeviceId,
        patch: DevicePatch,
    ) -> Result<DeviceRecord, DevicesError> {
        let mut record = self.get(principal, id).await?;
        if let Some(name) = patch.name {
            record.name = domain::check_name(&name).map_err(invalid)?;
        }
        if let Some(kind) = patch.kind {
            record.kind = domain::check_kind(kind).map_err(invalid)?;
        }
        if let Some(tags) = patch.tags {
            record.tags = domain::check_tags(tags).map_err(invalid)?;
        }
        if let Some(location) = patch.location {
            record.location = domain::check_location(location).map_err(invalid)?;
        }
        if let Some(metadata) = patch.metadata {
            record.metadata = domain::check_metadata(metadata).map_err(invalid)?;
        }
        record.updated_at = Timestamp::now();
        if !self.repo.update(&record).await? {
            return Err(DevicesError::NotFound);
        }
        Ok(record)
    }

    /// Deletes a device; its credentials stop working with it.
    pub async fn delete(&self, principal: &Principal, id: DeviceId) -> Result<(), DevicesError> {
        self.get(principal, id).await?;
        // Evict before and after: an ingest in between could re-cache the old secret.
        self.forget_credential(id).await?;
        self.repo.delete(id).await?;
        self.forget_credential(id).await?;
        tracing::info!(device_id = %id, "Device deleted");
        Ok(())
    }

    /// A new device secret; the old one stops working at once.
    pub async fn rotate_secret(
        &self,
        principal: &Principal,
        id: DeviceId,
    ) -> Result<String, DevicesError> {
        self.get(principal, id).await?;
        let (secret, hash) = new_secret();
        self.forget_credential(id).await?;
        if !self.repo.set_secret(id, &hash).await? {
            return Err(DevicesError::NotFound);
        }
        self.forget_credential(id).await?;
        Ok(secret)
    }

    pub async fn config(
        &self,
        principal: &Principal,
        id: DeviceId,
    ) -> Result<ConfigView, DevicesError> {
        self.get(principal, id).await?;
        let stored = self.repo.config(id).await?.ok_or(DevicesError::NotFound)?;
        Ok(ConfigView {
            version: stored.version,
            config: stored.config,
            updated_at: stored.updated_at,
        })
    }

    /// Stores a new config version and pushes it to the device (retained on its config topic).
    pub async fn set_config(
        &self,
        principal: &Principal,
        id: DeviceId,
        config: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ConfigView, DevicesError> {
        self.get(principal, id).await?;
        let config = domain::check_config(config).map_err(invalid)?;
        let now = Timestamp::now();
        let version =
            self.repo.set_config(id, &config, now).await?.ok_or(DevicesError::NotFound)?;
        if let Some(mqtt) = &self.mqtt {
            let message = ConfigMessage { version, config: config.clone() };
            // The registry holds it either way: devices also fetch it on connect or by HTTP.
            if let Err(err) = mqtt.publish(id, &message).await {
                tracing::warn!(%err, device_id = %id, version, "Could not push the config over MQTT");
            }
        }
        Ok(ConfigView { version, config, updated_at: Some(now) })
    }

    /// The device's own view of its config (device credential).
    pub async fn current_config(
        &self,
        id: DeviceId,
        secret: &str,
    ) -> Result<ConfigMessage, DevicesError> {
        self.authenticate(id, secret).await?;
        let stored = self.repo.config(id).await?.ok_or(DevicesError::BadDeviceCredential)?;
        Ok(ConfigMessage { version: stored.version, config: stored.config })
    }

    /// Trades an enrollment token for the device's id and secret.
    pub async fn enroll(&self, token: &str) -> Result<Enrolled, DevicesError> {
        let (secret, hash) = new_secret();
        let device_id = self
            .repo
            .enroll(&hash_secret(token), Timestamp::now(), &hash)
            .await?
            .ok_or(DevicesError::BadEnrollmentToken)?;
        tracing::info!(%device_id, "Device enrolled");
        Ok(Enrolled {
            device_id,
            device_secret: secret,
            mqtt: self.endpoints.mqtt.clone(),
            http: self.endpoints.http.clone(),
        })
    }

    /// Checks a device credential; unknown devices and wrong secrets look the same. The hash
    /// comes from the cache when it can (a cache outage falls back to the database).
    pub async fn authenticate(&self, id: DeviceId, secret: &str) -> Result<(), DevicesError> {
        let key = credential_key(id);
        let cached = match self.credentials.get(&key).await {
            Ok(hit) => hit.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
            Err(err) => {
                tracing::warn!(%err, "Credential cache unavailable; asking the database");
                None
            }
        };
        let stored = match cached {
            Some(hash) => Some(hash),
            None => {
                let hash = self.repo.get(id).await?.and_then(|d| d.secret_hash);
                if let Some(hash) = &hash {
                    let _ = self.credentials.set(&key, hash.clone().into(), CREDENTIAL_TTL).await;
                }
                hash
            }
        };
        let presented = hash_secret(secret);
        match stored {
            Some(hash) if bool::from(hash.as_bytes().ct_eq(presented.as_bytes())) => Ok(()),
            _ => Err(DevicesError::BadDeviceCredential),
        }
    }

    /// Validates a batch and hands it to the bus; `Ok` only after the bus confirmed it.
    pub async fn ingest(
        &self,
        id: DeviceId,
        secret: &str,
        body: &[u8],
        request_id: Option<String>,
    ) -> Result<Ingested, DevicesError> {
        self.authenticate(id, secret).await?;
        let batch = Batch::from_json(body)?;
        if batch.device_id() != id {
            return Err(DevicesError::WrongDevice {
                path: id.to_string(),
                batch: batch.device_id().to_string(),
            });
        }
        self.bus.publish(Message::telemetry(&batch, request_id)).await?;
        metrics::counter!("edgewatch_devices_readings_accepted_total", "via" => "http")
            .increment(batch.readings().len() as u64);
        // The readings are safe on the bus; a failed status update must not fail the request.
        if let Err(err) = self.repo.mark_seen(id, Timestamp::now()).await {
            tracing::warn!(%err, device_id = %id, "Could not record the device as seen");
        }
        Ok(Ingested { accepted: batch.readings().len(), duplicates: 0 })
    }
}
