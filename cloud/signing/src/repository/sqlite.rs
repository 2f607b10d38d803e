//! Accounts in SQLite for the embedded shape. SQLite runs one writer at a time, so the
//! first-account-is-admin rule is atomic inside the single insert statement.

use async_trait::async_trait;
use edgewatch_protocol::UserId;
use sqlx::SqlitePool;

use super::{RepoError, Row, UserRepository, unavailable};
use crate::domain::{Email, NewUser, User};

pub struct SqliteUsers {
    pool: SqlitePool,
}

const COLUMNS: &str = "id, email, name, role, password_hash, created_at_ms";

impl SqliteUsers {
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let pool = edgewatch_common::db::sqlite(url, 4).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(|e| {
            RepoError::Unavailable(format!("cannot migrate the account database: {e}"))
        })?;
        Ok(Self { pool })
    }

    async fn one(&self, sql: &str, bind: String) -> Result<Option<User>, RepoError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(bind)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|r| Row::read(&r)?.into_user()).transpose()
    }
}

#[async_trait]
impl UserRepository for SqliteUsers {
    async fn create(&self, user: NewUser) -> Result<User, RepoError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (id, email, name, role, password_hash, created_at_ms) \
             SELECT ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'user' ELSE 'admin' END, ?, ? \
             RETURNING {COLUMNS}"
        )))
        .bind(user.id.to_string())
        .bind(user.email.as_str())
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(user.created_at.as_millis())
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        Row::read(&row)?.into_user()
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>, RepoError> {
        self.one(&format!("SELECT {COLUMNS} FROM users WHERE email = ?"), email.to_string()).await
    }

    async fn by_id(&self, id: UserId) -> Result<Option<User>, RepoError> {
        self.one(&format!("SELECT {COLUMNS} FROM users WHERE id = ?"), id.to_string()).await
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(unavailable)
    }
}
