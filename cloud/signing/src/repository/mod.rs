//! The account store port: PostgreSQL ([`postgres`]) in the distributed shape, SQLite
//! ([`sqlite`]) in the embedded one, both checked by one conformance suite
//! (`tests/api/repository.rs`). The store, not the caller, decides a new account's role: the
//! first account ever is `admin`, decided inside the insert so two first registrations cannot both
//! win.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use edgewatch_common::auth::Role;
use edgewatch_protocol::{Timestamp, UserId};

use crate::domain::{Email, NewUser, User};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("the account database is unavailable: {0}")]
    Unavailable(String),
    #[error("the account database holds a row it cannot read: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}`: use postgres:// or sqlite://")]
    UnsupportedUrl(String),
}

#[async_trait]
pub trait UserRepository: Send + Sync + 'static {
    /// Stores a new account; `EmailTaken` if the email is in use.
    async fn create(&self, user: NewUser) -> Result<User, RepoError>;
    async fn by_email(&self, email: &Email) -> Result<Option<User>, RepoError>;
    async fn by_id(&self, id: UserId) -> Result<Option<User>, RepoError>;
    async fn ping(&self) -> Result<(), RepoError>;
}

/// Opens the store named by `url` and runs its migrations.
pub async fn connect(url: &str) -> Result<Arc<dyn UserRepository>, RepoError> {
    match edgewatch_common::config::url_scheme(url) {
        Some("postgres" | "postgresql") => {
            Ok(Arc::new(postgres::PostgresUsers::connect(url).await?))
        }
        Some("sqlite") => Ok(Arc::new(sqlite::SqliteUsers::connect(url).await?)),
        _ => Err(RepoError::UnsupportedUrl(url.chars().take(64).collect())),
    }
}

fn unavailable(err: sqlx::Error) -> RepoError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => RepoError::EmailTaken,
        _ => RepoError::Unavailable(err.to_string()),
    }
}

/// A row as both adapters read it.
struct Row {
    id: String,
    email: String,
    name: Option<String>,
    role: String,
    password_hash: String,
    created_at_ms: i64,
}

impl Row {
    /// Reads the columns `id, email, name, role, password_hash, created_at_ms`, in that order,
    /// from a row of either database.
    fn read<'r, R>(row: &'r R) -> Result<Self, RepoError>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        let get = |e: sqlx::Error| RepoError::Corrupt(e.to_string());
        Ok(Self {
            id: row.try_get(0).map_err(get)?,
            email: row.try_get(1).map_err(get)?,
            name: row.try_get(2).map_err(get)?,
            role: row.try_get(3).map_err(get)?,
            password_hash: row.try_get(4).map_err(get)?,
            created_at_ms: row.try_get(5).map_err(get)?,
        })
    }

    fn into_user(self) -> Result<User, RepoError> {
        let corrupt = |what: &str| RepoError::Corrupt(format!("{what} of user {}", self.id));
        Ok(User {
            id: UserId::parse(&self.id).map_err(|_| corrupt("id"))?,
            email: Email::parse(&self.email).map_err(|_| corrupt("email"))?,
            name: self.name.clone(),
            role: match self.role.as_str() {
                "admin" => Role::Admin,
                "user" => Role::User,
                _ => return Err(corrupt("role")),
            },
            created_at: Timestamp::from_millis(self.created_at_ms)
                .map_err(|_| corrupt("created_at"))?,
            password_hash: self.password_hash,
        })
    }
}
