//! What the devices service does, independent of HTTP and MQTT. Every registry call takes the
//! caller and enforces ownership: users see and change their own devices, admins all of them.
//! Telemetry from HTTP and from the MQTT bridge takes the same path ([`Devices::accept`]): the
//! device is marked seen, then the batch goes to the bus with a confirm.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use edgewatch_common::{
    auth::Principal,
    bus::{Bus, Message},
    cache::Cache,
};
use edgewatch_protocol::{
    Batch, ConfigMessage, DeviceId, DeviceRecord, DeviceStatus, StatusMessage, Timestamp,
};
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::{
    domain::{self, DeviceInput, DevicePatch, hash_secret, new_secret},
    error::DevicesError,
    mqtt::ConfigPublisher,
    outbox,
    repository::{DeviceRepository, ListQuery, StatusChange},
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
    /// Readings of this batch at or below the highest seq of the device already on the bus: a
    /// batch sent again (its answer was lost) reports them. They are handed on all the same; the
    /// telemetry store keeps each `(device, seq)` once.
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
    /// The version the device last reported as applied in its status message.
    pub applied_version: Option<u64>,
}

/// What became of a message the MQTT bridge handed over. Both are final: the bridge acks them
/// (a refused message would only come back the same); an `Err` instead is retried, not acked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    Accepted,
    /// Dropped, with the reason (a metric label).
    Refused(&'static str),
}

/// Where telemetry came in, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub enum Via {
    Http,
    Mqtt,
}

impl Via {
    fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Mqtt => "mqtt",
        }
    }
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
    /// Wakes the outbox relay after a write that queued an event.
    pub(crate) events: outbox::Wake,
    /// An online device not heard from for this long is marked offline by the sweep.
    offline_after: Duration,
    /// Set by the MQTT bridge while its subscriptions are in place.
    pub(crate) bridge_subscribed: Arc<AtomicBool>,
}

/// Devices marked offline per sweep statement.
const SWEEP_BATCH: usize = 1_000;
/// The default of [`Devices::with_offline_after`].
pub const DEFAULT_OFFLINE_AFTER: Duration = Duration::from_secs(300);

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
        Self {
            repo,
            bus,
            enrollment_ttl,
            endpoints,
            mqtt,
            credentials,
            events: outbox::Wake::default(),
            offline_after: DEFAULT_OFFLINE_AFTER,
            bridge_subscribed: Arc::default(),
        }
    }

    /// The handle that wakes the outbox relay (for [`crate::outbox::spawn`]).
    pub fn event_wake(&self) -> outbox::Wake {
        self.events.clone()
    }

    /// Whether this replica relays the event outbox now (one replica of a deployment does).
    pub fn relays_outbox(&self) -> bool {
        self.events.relaying()
    }

    /// Whether the MQTT bridge is connected with its subscriptions in place (messages published
    /// before that, with no session on the broker yet, are not delivered to it).
    pub fn mqtt_subscribed(&self) -> bool {
        self.bridge_subscribed.load(Ordering::Acquire)
    }

    /// Sets how long an online device may stay silent before the sweep marks it offline.
    #[must_use]
    pub fn with_offline_after(mut self, offline_after: Duration) -> Self {
        self.offline_after = offline_after;
        self
    }

    fn status_changed(&self, change: Option<StatusChange>) {
        if let Some(change) = change {
            tracing::info!(device_id = %change.device_id, status = ?change.status, "Device status changed");
            metrics::counter!("edgewatch_devices_status_changes_total").increment(1);
            self.events.wake();
        }
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
        self.events.wake();
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
        let stored = self.repo.update(&record).await?.ok_or(DevicesError::NotFound)?;
        self.events.wake();
        Ok(stored)
    }

    /// Deletes a device; its credentials stop working with it.
    pub async fn delete(&self, principal: &Principal, id: DeviceId) -> Result<(), DevicesError> {
        self.get(principal, id).await?;
        // Evict before and after: an ingest in between could re-cache the old secret.
        self.forget_credential(id).await?;
        self.repo.delete(id).await?;
        self.events.wake();
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
            applied_version: stored.applied_version,
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
        let applied_version = self.repo.config(id).await?.and_then(|c| c.applied_version);
        Ok(ConfigView { version, config, updated_at: Some(now), applied_version })
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
        self.accept(&batch, Via::Http, request_id).await
    }

    /// The path every valid batch takes, from HTTP or MQTT: the device is marked seen (online,
    /// with a `device.status` event if it was not online before), then the batch goes to the bus
    /// (returning after its confirm).
    ///
    /// The registry comes first so that an unreachable database refuses the batch before it is
    /// on the bus: the device keeps it and retries (HTTP 503, MQTT unacked), and the registry
    /// never misses the traffic that made a device online — a device shown offline while its
    /// readings flow would be wrong. A batch the bus then refuses leaves the device marked seen,
    /// which it was: it spoke to us.
    pub async fn accept(
        &self,
        batch: &Batch,
        via: Via,
        request_id: Option<String>,
    ) -> Result<Ingested, DevicesError> {
        let id = batch.device_id();
        let change = self.repo.mark_seen(id, Timestamp::now()).await?;
        self.status_changed(change);
        self.bus.publish(Message::telemetry(batch, request_id)).await?;
        metrics::counter!("edgewatch_devices_readings_accepted_total", "via" => via.label())
            .increment(batch.readings().len() as u64);
        let duplicates = self.count_duplicates(batch).await;
        if duplicates > 0 {
            metrics::counter!("edgewatch_devices_readings_duplicate_total", "via" => via.label())
                .increment(duplicates as u64);
        }
        Ok(Ingested { accepted: batch.readings().len(), duplicates })
    }

    /// Advances the device's handed-on watermark past `batch` (it is on the bus now) and counts
    /// the readings the watermark already covered. The batch is accepted whatever happens here:
    /// a registry that fails now only costs the count, reported as 0.
    async fn count_duplicates(&self, batch: &Batch) -> usize {
        let last = batch.readings().iter().map(|r| r.seq.get()).max().unwrap_or(0);
        match self.repo.handed_on(batch.device_id(), last).await {
            Ok(Some(before)) => batch.readings().iter().filter(|r| r.seq.get() <= before).count(),
            Ok(None) => 0,
            Err(err) => {
                tracing::warn!(%err, device_id = %batch.device_id(), "Cannot record the handed-on seq; reporting no duplicates");
                0
            }
        }
    }

    /// Whether `id` is an enrolled device (it has a secret, so the broker may have let it in).
    async fn is_enrolled(&self, id: DeviceId) -> Result<bool, DevicesError> {
        match self.credentials.get(&credential_key(id)).await {
            Ok(Some(_)) => return Ok(true),
            Ok(None) => {}
            Err(err) => tracing::warn!(%err, "Credential cache unavailable; asking the database"),
        }
        let hash = self.repo.get(id).await?.and_then(|d| d.secret_hash);
        if let Some(hash) = &hash {
            let _ = self
                .credentials
                .set(&credential_key(id), hash.clone().into(), CREDENTIAL_TTL)
                .await;
        }
        Ok(hash.is_some())
    }

    /// A batch the MQTT bridge received on `edgewatch/v1/devices/{topic_device}/telemetry`. The
    /// broker authenticated the device and kept it to its own topics; this checks that the
    /// device is enrolled and that the batch is its own. `Err` means "not now" (the bus or the
    /// database is down): the bridge does not ack, and the message is kept.
    pub async fn ingest_mqtt(
        &self,
        topic_device: DeviceId,
        payload: &[u8],
    ) -> Result<Handled, DevicesError> {
        let refused = |reason: &'static str, detail: String| {
            metrics::counter!("edgewatch_devices_mqtt_refused_total", "reason" => reason)
                .increment(1);
            tracing::warn!(device_id = %topic_device, reason, %detail, "Dropped an MQTT telemetry message");
            Ok(Handled::Refused(reason))
        };
        let batch = match Batch::from_json(payload) {
            Ok(batch) => batch,
            Err(err) => return refused("invalid_batch", err.to_string()),
        };
        if batch.device_id() != topic_device {
            return refused("wrong_device", format!("the batch is for {}", batch.device_id()));
        }
        if !self.is_enrolled(topic_device).await? {
            return refused("unknown_device", "no enrolled device has this id".into());
        }
        self.accept(&batch, Via::Mqtt, None).await?;
        Ok(Handled::Accepted)
    }

    /// A status message from `edgewatch/v1/devices/{id}/status` (the device's own, or its will).
    /// The time of the change is the service's clock: a will carries the time it was made.
    pub async fn report_status(
        &self,
        id: DeviceId,
        payload: &[u8],
    ) -> Result<Handled, DevicesError> {
        let message: StatusMessage = match serde_json::from_slice(payload) {
            Ok(message) => message,
            Err(err) => {
                metrics::counter!("edgewatch_devices_mqtt_refused_total", "reason" => "invalid_status")
                    .increment(1);
                tracing::warn!(device_id = %id, %err, "Dropped an invalid status message");
                return Ok(Handled::Refused("invalid_status"));
            }
        };
        let status = if message.online { DeviceStatus::Online } else { DeviceStatus::Offline };
        let change =
            self.repo.set_status(id, status, Timestamp::now(), message.config_version).await?;
        self.status_changed(change);
        if message.online {
            self.resend_config_if_behind(id, message.config_version.unwrap_or(0)).await?;
        }
        Ok(Handled::Accepted)
    }

    /// A device that comes online with an older config than the registry's gets it pushed again:
    /// a broker that lost its retained messages (rumqttd keeps none across a restart) would
    /// otherwise leave it on the old one until the next change.
    async fn resend_config_if_behind(
        &self,
        id: DeviceId,
        applied: u64,
    ) -> Result<(), DevicesError> {
        let Some(mqtt) = &self.mqtt else { return Ok(()) };
        let Some(stored) = self.repo.config(id).await? else { return Ok(()) };
        if stored.version <= applied {
            return Ok(());
        }
        let message = ConfigMessage { version: stored.version, config: stored.config };
        if let Err(err) = mqtt.publish(id, &message).await {
            tracing::warn!(%err, device_id = %id, "Could not push the config again over MQTT");
        } else {
            metrics::counter!("edgewatch_devices_config_resent_total").increment(1);
        }
        Ok(())
    }

    /// Marks offline every online device not heard from within the offline timeout; returns how
    /// many it marked.
    pub async fn sweep_offline(&self) -> Result<usize, DevicesError> {
        let now = Timestamp::now();
        let timeout = i64::try_from(self.offline_after.as_millis()).unwrap_or(i64::MAX / 2);
        let before = Timestamp::from_millis(now.as_millis().saturating_sub(timeout))
            .map_err(|e| DevicesError::Internal(e.to_string()))?;
        let mut total = 0;
        loop {
            let changes = self.repo.sweep_offline(before, now, SWEEP_BATCH).await?;
            let n = changes.len();
            total += n;
            for change in changes {
                self.status_changed(Some(change));
            }
            if n < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// Runs [`Self::sweep_offline`] every quarter of the offline timeout (at least every 30 s)
    /// until `shutdown`.
    pub fn spawn_offline_sweep(
        &self,
        shutdown: edgewatch_common::shutdown::Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        let devices = self.clone();
        let every =
            (self.offline_after / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(every) => {}
                }
                if let Err(err) = devices.sweep_offline().await {
                    tracing::warn!(%err, "Offline sweep failed; trying again next round");
                }
            }
        })
    }
}
