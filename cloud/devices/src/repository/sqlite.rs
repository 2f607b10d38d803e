//! The registry in SQLite for the embedded shape. Tags are a JSON array queried with `json_each`.

use async_trait::async_trait;
use edgewatch_protocol::{DeviceId, DeviceRecord, DeviceStatus, RoutingKey, Timestamp};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::{
    COLUMNS, DeviceRepository, ListQuery, NewEvent, OutboxEvent, RepoError, Row, StatusChange,
    StoredConfig, StoredDevice, i64_of, json, like_pattern, parse_id, status_str, stored_config,
    unavailable,
};

pub struct SqliteDevices {
    pool: SqlitePool,
}

fn select() -> String {
    format!("SELECT id, owner_id, {COLUMNS} FROM devices")
}

/// Writes outbox rows on the caller's transaction.
async fn insert_events(conn: &mut SqliteConnection, events: &[NewEvent]) -> Result<(), RepoError> {
    if events.is_empty() {
        return Ok(());
    }
    let now = Timestamp::now().as_millis();
    let mut sql = QueryBuilder::<Sqlite>::new(
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

impl SqliteDevices {
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let pool = edgewatch_common::db::sqlite(url, 4).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| {
            RepoError::Unavailable(format!("cannot migrate the device database: {e}"))
        })?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl DeviceRepository for SqliteDevices {
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{} WHERE id = ?", select())))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| Row::read(&r)?.into_stored()).transpose()
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<DeviceRecord>, RepoError> {
        let mut sql = QueryBuilder::<Sqlite>::new(select());
        sql.push(" WHERE 1");
        if let Some(owner) = query.owner {
            sql.push(" AND owner_id = ").push_bind(owner.to_string());
        }
        if let Some(after) = query.after {
            sql.push(" AND id > ").push_bind(after.to_string());
        }
        if let Some(tag) = &query.tag {
            sql.push(" AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value = ")
                .push_bind(tag.to_lowercase())
                .push(")");
        }
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status_str(status));
        }
        if let Some(kind) = &query.kind {
            sql.push(" AND kind = ").push_bind(kind.clone());
        }
        if let Some(q) = &query.q {
            let pattern = like_pattern(q);
            sql.push(" AND (lower(name) LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR EXISTS (SELECT 1 FROM json_each(tags) WHERE value LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\'))");
        }
        sql.push(" ORDER BY id LIMIT ").push_bind(i64::try_from(query.limit).unwrap_or(i64::MAX));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(unavailable)?;
        rows.iter().map(|r| Ok(Row::read(r)?.into_stored()?.record)).collect()
    }

    async fn update(&self, r: &DeviceRecord) -> Result<Option<DeviceRecord>, RepoError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE devices SET name = ?, kind = ?, tags = ?, location = ?, metadata = ?, updated_at_ms = ? \
             WHERE id = ? RETURNING id, owner_id, {COLUMNS}"
        )))
        .bind(&r.name)
        .bind(&r.kind)
        .bind(json(&r.tags))
        .bind(r.location.as_ref().map(json))
        .bind(json(&r.metadata))
        .bind(r.updated_at.as_millis())
        .bind(r.id.to_string())
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
            "DELETE FROM devices WHERE id = ? RETURNING id, owner_id, {COLUMNS}"
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
            "UPDATE devices SET secret_hash = ?, enrollment_hash = NULL, enrollment_expires_at_ms = NULL \
             WHERE enrollment_hash = ? AND enrollment_expires_at_ms > ? RETURNING id",
        )
        .bind(secret_hash)
        .bind(enrollment_hash)
        .bind(now.as_millis())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        id.as_deref().map(parse_id).transpose()
    }

    async fn set_secret(&self, id: DeviceId, secret_hash: &str) -> Result<bool, RepoError> {
        let done = sqlx::query("UPDATE devices SET secret_hash = ? WHERE id = ?")
            .bind(secret_hash)
            .bind(id.to_string())
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
            "UPDATE devices SET config = ?, config_version = config_version + 1, config_updated_at_ms = ? \
             WHERE id = ? RETURNING config_version",
        )
        .bind(json(config))
        .bind(at.as_millis())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(version.and_then(|v| u64::try_from(v).ok()))
    }

    async fn config(&self, id: DeviceId) -> Result<Option<StoredConfig>, RepoError> {
        let row: Option<(i64, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT config_version, config, config_updated_at_ms, applied_config_version \
             FROM devices WHERE id = ?",
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
        let done = sqlx::query(
            "UPDATE devices SET last_seen_at_ms = max(coalesce(last_seen_at_ms, 0), ?) \
             WHERE id = ? AND status = 'online'",
        )
        .bind(at.as_millis())
        .bind(id.to_string())
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
             handed_seq = max(handed_seq, ?2) WHERE id = ?1 RETURNING handed_seq_before",
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
        // The first statement writes, so the transaction holds SQLite's write lock from the
        // start and the check-and-set cannot interleave with another writer.
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let changed = sqlx::query(
            "UPDATE devices SET status = ?1, \
             last_seen_at_ms = CASE WHEN ?2 THEN max(coalesce(last_seen_at_ms, 0), ?3) ELSE last_seen_at_ms END, \
             applied_config_version = coalesce(?4, applied_config_version) \
             WHERE id = ?5 AND status <> ?1",
        )
        .bind(status_str(status))
        .bind(online)
        .bind(at.as_millis())
        .bind(applied)
        .bind(id.to_string())
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
                 last_seen_at_ms = CASE WHEN ?1 THEN max(coalesce(last_seen_at_ms, 0), ?2) ELSE last_seen_at_ms END, \
                 applied_config_version = coalesce(?3, applied_config_version) WHERE id = ?4",
            )
            .bind(online)
            .bind(at.as_millis())
            .bind(applied)
            .bind(id.to_string())
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
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE devices SET status = 'offline' WHERE id IN (\
               SELECT id FROM devices WHERE status = 'online' AND last_seen_at_ms < ?1 \
               ORDER BY last_seen_at_ms LIMIT ?2) RETURNING id",
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
            "SELECT id, routing_key, message_id, body FROM device_outbox ORDER BY id LIMIT ?",
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
        if ids.is_empty() {
            return Ok(());
        }
        let mut sql = QueryBuilder::<Sqlite>::new("DELETE FROM device_outbox WHERE id IN (");
        let mut list = sql.separated(", ");
        for id in ids {
            list.push_bind(*id);
        }
        sql.push(")");
        sql.build().execute(&self.pool).await.map(drop).map_err(unavailable)
    }

    fn relay_lock(&self) -> Box<dyn super::RelayLock> {
        Box::new(super::SoleProcess)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(unavailable)
    }
}
