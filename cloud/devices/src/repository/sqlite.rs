//! The registry in SQLite for the embedded shape. Tags are a JSON array queried with `json_each`.

use async_trait::async_trait;
use edgewatch_protocol::{DeviceId, DeviceRecord, Timestamp};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::{
    COLUMNS, DeviceRepository, ListQuery, RepoError, Row, StoredConfig, StoredDevice, json,
    like_pattern, status_str, stored_config, unavailable,
};

pub struct SqliteDevices {
    pool: SqlitePool,
}

fn select() -> String {
    format!("SELECT id, owner_id, {COLUMNS} FROM devices")
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
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(unavailable)
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

    async fn update(&self, r: &DeviceRecord) -> Result<bool, RepoError> {
        let done = sqlx::query(
            "UPDATE devices SET name = ?, kind = ?, tags = ?, location = ?, metadata = ?, updated_at_ms = ? WHERE id = ?",
        )
        .bind(&r.name)
        .bind(&r.kind)
        .bind(json(&r.tags))
        .bind(r.location.as_ref().map(json))
        .bind(json(&r.metadata))
        .bind(r.updated_at.as_millis())
        .bind(r.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, id: DeviceId) -> Result<bool, RepoError> {
        let done = sqlx::query("DELETE FROM devices WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
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
        id.map(|id| DeviceId::parse(&id).map_err(|e| RepoError::Corrupt(e.to_string()))).transpose()
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
        let row: Option<(i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT config_version, config, config_updated_at_ms FROM devices WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.map(|(v, c, at)| stored_config(v, &c, at)).transpose()
    }

    async fn mark_seen(&self, id: DeviceId, at: Timestamp) -> Result<(), RepoError> {
        sqlx::query(
            "UPDATE devices SET status = 'online', last_seen_at_ms = max(coalesce(last_seen_at_ms, 0), ?) WHERE id = ?",
        )
        .bind(at.as_millis())
        .bind(id.to_string())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(unavailable)
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(unavailable)
    }
}
