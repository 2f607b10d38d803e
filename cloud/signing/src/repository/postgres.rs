//! Accounts in PostgreSQL. The first-account-is-admin rule runs under a table lock in the insert's
//! transaction, so concurrent first registrations serialize.

use async_trait::async_trait;
use edgewatch_protocol::UserId;
use sqlx::PgPool;

use super::{RepoError, Row, UserRepository, unavailable};
use crate::domain::{Email, NewUser, User};

pub struct PostgresUsers {
    pool: PgPool,
}

const COLUMNS: &str = "id::text, email, name, role, password_hash, created_at_ms";

impl PostgresUsers {
    pub async fn connect(url: &str) -> Result<Self, RepoError> {
        let pool = edgewatch_common::db::postgres(url, 16).await.map_err(unavailable)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(|e| {
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
impl UserRepository for PostgresUsers {
    async fn create(&self, user: NewUser) -> Result<User, RepoError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users (id, email, name, role, password_hash, created_at_ms) \
             SELECT $1::uuid, $2, $3, CASE WHEN EXISTS (SELECT 1 FROM users) THEN 'user' ELSE 'admin' END, $4, $5 \
             RETURNING {COLUMNS}"
        )))
        .bind(user.id.to_string())
        .bind(user.email.as_str())
        .bind(&user.name)
        .bind(&user.password_hash)
        .bind(user.created_at.as_millis())
        .fetch_one(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Row::read(&row)?.into_user()
    }

    async fn by_email(&self, email: &Email) -> Result<Option<User>, RepoError> {
        self.one(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"), email.to_string()).await
    }

    async fn by_id(&self, id: UserId) -> Result<Option<User>, RepoError> {
        self.one(&format!("SELECT {COLUMNS} FROM users WHERE id = $1::uuid"), id.to_string()).await
    }

    async fn ping(&self) -> Result<(), RepoError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map(drop).map_err(unavailable)
    }
}
