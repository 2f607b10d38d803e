//! The registry in PostgreSQL. Tags are a JSONB array with a GIN index (`tags ? tag`); text
//! search (`q`) uses a trigram index over a stored name-and-tags column (migration 0004,
//! `pg_trgm`).

use async_trait::async_trait;
use edgewatch_protocol::{DeviceId, DeviceRecord, DeviceStatus, RoutingKey, Timestamp};
use std::sync::Arc;

use sqlx::{Connection, PgConnection, PgPool, Postgres, QueryBuilder, postgres::PgConnectOptions};

use super::{
    COLUMNS, DeviceRepository, ListQuery, NewEvent, OutboxEvent, RelayLock, RepoError, Row,
    StatusChange, StoredConfig, StoredDevice, i64_of, json, like_pattern, parse_id, status_str,
    stored_config, unavailable,
};

pub struct PostgresDevices {
    pool: PgPool,
}

/// The advisory-lock key of the outbox relay ("edgewatc" in ASCII). Advisory locks belong to
/// a database, so deployments on different databases never contend.
const RELAY_LOCK_KEY: i64 = 0x6564_6765_7761_7463;

/// A session-level advisory lock on a connection of its own, outside the pool: PostgreSQL
/// releases it when that session ends, so a replica that dies (or loses its connection) hands
/// the relay over without anyone cleaning up. A pooled connection would not do: it goes back to
/// the pool still holding the lock.
struct PgRelayLock {
    options: Arc<PgConnectOptions>,
    connection: Option<PgConnection>,
    held: bool,
}

#[async_trait]
impl RelayLock for PgRelayLock {
    async fn hold(&mut self) -> Result<bool, RepoError> {
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => {
                self.held = false;
                let connection =
                    PgConnection::connect_with(&self.options).await.map_err(unavailable)?;
                self.connection.insert(connection)
            }
        };
        let checked = if self.held {
            // Held as long as the session lives.
            connection.ping().await.map(|()| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(RELAY_LOCK_KEY)
                .fetch_one(&mut *connection)
                .await
        };
        match checked {
            Ok(held) => {
                self.held = held;
                Ok(held)
            }
            Err(err) => {
                // The session (and the lock with it) may be gone: start over with a new one.
                self.connection = None;
                self.held = false;
                Err(unavailable(err))
            }
        }
    }
}

/// `id, owner_id` and [`COLUMNS`] as text, for SELECT and RETURNING.
fn columns() -> String {
    let columns = COLUMNS
        .replace("tags,", "tags::text,")
        .replace("location,", "location::text,")
        .replace("metadata,", "metadata::text,");
    format!("id::text, owner_id::text, {columns}")
}

fn select() -> String {
    format!("SELECT {} FROM devices", columns())
}

/// Writes outbox rows on the caller's transaction.
async fn insert_events(conn: &mut PgConnection, events: &[NewEvent]) -> Result<(), RepoError> {
    if events.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().as_millis();
    let mut sql = QueryBuilder::<Postgres>::new(
        "INSERT INTO device_outbox (routing_key, message_id, body, created_at_ms) ",
    );
    sql.push_values(events, |mut row, event| {
        row.push_bind(event.routing_key.clone())
            .push_bind(event.message_id.clone())
            .push_bind(event.body.clone())
            .push_bind(now);
    });
    sql.build().execute(conn).await.map(drop).map_err(unavailable)
}

impl PostgresDevices {
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let pool = edgewatch_common::db::postgres(url, 16).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| {
            RepoError::Unavailable(format!("cannot migrate the device database: {e}"))
        })?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl DeviceRepository for PostgresDevices {
    async fn create(
        &self,
        r: &DeviceRecord,
        enrollment_hash: &str,
        expires: Timestamp,
    ) -> Result<(), RepoError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query(
            "INSERT INTO devices (id, owner_id, name, kind, tags, location, metadata, status, config_version, \
             created_at_ms, updated_at_ms, enrollment_hash, enrollment_expires_at_ms) \
             VALUES ($1::uuid, $2::uuid, $3, $4, $5::jsonb, $6::jsonb, $7::jsonb, $8, $9, $10, $11, $12, $13)",
        )
        .bind(r.id.to_string())
        .bind(r.owner_id.to_string())
        .bind(&r.name)
        .bind(&r.kind)
        .bind(json(&r.tags))
        .bind(r.location.as_ref().map(json))
        .bind(json(&r.metadata))
        .bind(status_str(r.status))
        .bind(i64::try_from(r.config_version).unwrap_or(i64::MAX))
        .bind(r.created_at.as_millis())
        .bind(r.updated_at.as_millis())
        .bind(enrollment_hash)
        .bind(expires.as_millis())
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        insert_events(&mut tx, &[NewEvent::device(RoutingKey::DeviceCreated, r)]).await?;
        tx.commit().await.map_err(unavailable)
    }

    async fn get(&self, id: DeviceId) -> Result<Option<StoredDevice>, RepoError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{} WHERE id = $1::uuid", select())))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| Row::read(&r)?.into_stored()).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<DeviceRecord>, RepoError> {
        let mut sql = QueryBuilder::<Postgres>::new(select());
        sql.push(" WHERE TRUE");
        if let Some(owner) = query.owner {
            sql.push(" AND owner_id = ").push_bind(owner.to_string()).push("::uuid");
        }
        if let Some(after) = query.after {
            sql.push(" AND id > ").push_bind(after.to_string()).push("::uuid");
        }
        if let Some(tag) = &query.tag {
            sql.push(" AND tags ? ").push_bind(tag.to_lowercase());
        }
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status_str(status));
        }
        if let Some(kind) = &query.kind {
            sql.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(q) = &query.q {
            let pattern = like_pattern(q);
            if q.chars().any(char::is_control) {
                // Cannot be in a name or a tag; the plain check keeps `\n` from matching across them.
                sql.push(" AND (name ILIKE ")
                    .push_bind(pattern.clone())
                    .push(" OR EXISTS (SELECT 1 FROM jsonb_array_elements_text(tags) t WHERE t ILIKE ")
                    .push_bind(pattern)
                    .push("))");
            } else {
                // Served by the trigram index (migration 0004).
                sql.push(" AND search_text ILIKE ").push_bind(pattern);
                // A device with the tag has it in `search_text` too, so with a tag filter this
                // condition removes no match, but it lets the same index scan intersect the
                // tag's trigrams: `q` + `tag` + `status` then reads the few dozen devices that
                // match all three (~9 ms at 100,000 devices) where the planner otherwise walked
                // the primary key, filtering ~50,000 rows for a common word (36-67 ms). Tags of
                // under 3 characters have no trigram to add.
                if let Some(tag) = query.tag.as_deref().filter(|t| t.chars().count() >= 3) {
                    sql.push(" AND search_text ILIKE ").push_bind(like_pattern(tag));
                }
            }
        }
        // `devices.id`, the uuid: a bare `id` would be the `id::text` output column, which no index orders.
        sql.push(" ORDER BY devices.id LIMIT ")
            .push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        // Planned for these values every time: a cached generic plan cannot tell a search term
        // that matches half the fleet (walk the id index) from one that matches a single device
        // (use the trigram index).
        let rows =
            sql.build().persistent(false).fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|r| Ok(Row::read(r)?.into_stored()?.record)).collect()
    }

    async fn update(&self, r: &DeviceRecord) -> Result<Option<DeviceRecord>, RepoError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE devices SET name = $2, kind = $3, tags = $4::jsonb, location = $5::jsonb, \
             metadata = $6::jsonb, updated_at_ms = $7 WHERE id = $1::uuid RETURNING {}",
            columns()
        )))
        .bind(r.id.to_string())
        .bind(&r.name)
        .bind(&r.kind)
        .bind(json(&r.tags))
        .bind(r.location.as_ref().map(json))
        .bind(json(&r.metadata))
        .bind(r.updated_at.as_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let stored = Row::read(&row)?.into_stored()?.record;
        insert_events(&mut tx, &[NewEvent::device(RoutingKey::DeviceUpdated, &stored)]).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Some(stored))
    }

    async fn delete(&self, id: DeviceId) -> Result<bool, RepoError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM devices WHERE id = $1::uuid RETURNING {}",
            columns()
        )))
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(false) };
        let gone = Row::read(&row)?.into_stored()?.record;
        insert_events(&mut tx, &[NewEvent::device(RoutingKey::DeviceDeleted, &gone)]).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn enroll(
        &self,
        enrollment_hash: &str,
        now: Timestamp,
        secret_hash: &str,
    ) -> Result<Option<DeviceId>, RepoError> {
        let id: Option<String> = sqlx::query_scalar(
            "UPDATE devices SET secret_hash = $3, enrollment_hash = NULL, enrollment_expires_at_ms = NULL \
             WHERE enrollment_hash = $1 AND enrollment_expires_at_ms > $2 RETURNING id::text",
        )
        .bind(enrollment_hash)
        .bind(now.as_millis())
        .bind(secret_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        id.as_deref().map(parse_id).transpose()
    }

    async fn set_secret(&self, id: DeviceId, secret_hash: &str) -> Result<bool, RepoError> {
        let done = sqlx::query("UPDATE devices SET secret_hash = $2 WHERE id = $1::uuid")
            .bind(id.to_string())
            .bind(secret_hash)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_config(
        &self,
        id: DeviceId,
        config: &serde_json::Map<String, serde_json::Value>,
        at: Timestamp,
    ) -> Result<Option<u64>, RepoError> {
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE devices SET config = $2::jsonb, config_version = config_version + 1, config_updated_at_ms = $3 \
             WHERE id = $1::uuid RETURNING config_version",
        )
        .bind(id.to_string())
        .bind(json(config))
        .bind(at.as_millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }

    async fn config(&self, id: DeviceId) -> Result<Option<StoredConfig>, RepoError> {
        let row: Option<(i64, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT config_version, config::text, config_updated_at_ms, applied_config_version \
             FROM devices WHERE id = $1::uuid",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|(v, c, at, applied)| stored_config(v, &c, at, applied)).transpose()
    }

    async fn mark_seen(
        &self,
        id: DeviceId,
        at: Timestamp,
    ) -> Result<Option<StatusChange>, RepoError> {
        // The common case, one statement: the device is online already, no event.
        let done = sqlx::query(
            "UPDATE devices SET last_seen_at_ms = GREATEST(COALESCE(last_seen_at_ms, 0), $2) \
             WHERE id = $1::uuid AND status = 'online'",
        )
        .bind(id.to_string())
        .bind(at.as_millis())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 1 {
            return Ok(None);
        }
        self.set_status(id, DeviceStatus::Online, at, None).await
    }

    async fn handed_on(&self, id: DeviceId, seq: u64) -> Result<Option<u64>, RepoError> {
        // Both columns are set from the row as it was, so this returns the old watermark.
        let before: Option<i64> = sqlx::query_scalar(
            "UPDATE devices SET handed_seq_before = handed_seq, \
             handed_seq = GREATEST(handed_seq, $2) WHERE id = $1::uuid RETURNING handed_seq_before",
        )
        .bind(id.to_string())
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(before.map(|seq| u64::try_from(seq).unwrap_or(0)))
    }

    async fn set_status(
        &self,
        id: DeviceId,
        status: DeviceStatus,
        at: Timestamp,
        applied: Option<u64>,
    ) -> Result<Option<StatusChange>, RepoError> {
        let online = status == DeviceStatus::Online;
        let applied = applied.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Under READ COMMITTED a concurrent writer of the same row waits and re-checks the
        // `status <>` condition, so exactly one of them sees the change and writes its event.
        let changed = sqlx::query(
            "UPDATE devices SET status = $2, \
             last_seen_at_ms = CASE WHEN $3 THEN GREATEST(COALESCE(last_seen_at_ms, 0), $4) ELSE last_seen_at_ms END, \
             applied_config_version = COALESCE($5, applied_config_version) \
             WHERE id = $1::uuid AND status <> $2",
        )
        .bind(id.to_string())
        .bind(status_str(status))
        .bind(online)
        .bind(at.as_millis())
        .bind(applied)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?
        .rows_affected()
            == 1;
        let change = if changed {
            let change = StatusChange { device_id: id, status, at };
            insert_events(&mut tx, &[NewEvent::status(&change)]).await?;
            Some(change)
        } else {
            sqlx::query(
                "UPDATE devices SET \
                 last_seen_at_ms = CASE WHEN $2 THEN GREATEST(COALESCE(last_seen_at_ms, 0), $3) ELSE last_seen_at_ms END, \
                 applied_config_version = COALESCE($4, applied_config_version) WHERE id = $1::uuid",
            )
            .bind(id.to_string())
            .bind(online)
            .bind(at.as_millis())
            .bind(applied)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            None
        };
        tx.commit().await.map_err(unavailable)?;
        Ok(change)
    }

    async fn sweep_offline(
        &self,
        seen_before: Timestamp,
        at: Timestamp,
        limit: usize,
    ) -> Result<Vec<StatusChange>, RepoError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // SKIP LOCKED: a device being marked seen right now is left for the next sweep.
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE devices SET status = 'offline' WHERE id IN (\
               SELECT id FROM devices WHERE status = 'online' AND last_seen_at_ms < $1 \
               ORDER BY last_seen_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED) \
             AND status = 'online' AND last_seen_at_ms < $1 RETURNING id::text",
        )
        .bind(seen_before.as_millis())
        .bind(i64_of(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let changes = ids
            .iter()
            .map(|id| {
                Ok(StatusChange { device_id: parse_id(id)?, status: DeviceStatus::Offline, at })
            })
            .collect::<Result<Vec<_>, RepoError>>()?;
        let events: Vec<NewEvent> = changes.iter().map(NewEvent::status).collect();
        insert_events(&mut tx, &events).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(changes)
    }

    async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxEvent>, RepoError> {
        let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
            "SELECT id, routing_key, message_id, body FROM device_outbox ORDER BY id LIMIT $1",
        )
        .bind(i64_of(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(|(id, routing_key, message_id, body)| OutboxEvent {
                id,
                routing_key,
                message_id,
                body,
            })
            .collect())
    }

    async fn outbox_delete(&self, ids: &[i64]) -> Result<(), RepoError> {
        sqlx::query("DELETE FROM device_outbox WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(unavailable)
    }

    fn relay_lock(&self) -> Box<dyn RelayLock> {
        Box::new(PgRelayLock {
            options: self.pool.connect_options(),
            connection: None,
            held: false,
        })
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(unavailable)
    }
}
