//! The signing service's errors and their answers in the contract's error body.

use edgewatch_common::{ApiError, auth::AuthError, cache::CacheError};

use crate::{passwords::HashError, repository::RepoError, sessions::SessionError};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{field} {why}")]
    InvalidField { field: &'static str, why: &'static str },
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("too many sign-in attempts; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("the refresh token is unknown, expired or revoked")]
    InvalidRefresh,
    #[error("the refresh token was already used; the session has been ended for safety")]
    RefreshReused,
    #[error("this endpoint is for services: send the service token")]
    NotAService,
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{dependency} is unavailable: {cause}")]
    Unavailable { dependency: &'static str, cause: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl SigningError {
    pub fn invalid(field: &'static str, why: &'static str) -> Self {
        Self::InvalidField { field, why }
    }
}

impl From<RepoError> for SigningError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::EmailTaken => Self::EmailTaken,
            RepoError::Unavailable(cause) => {
                Self::Unavailable { dependency: "the account database", cause }
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<CacheError> for SigningError {
    fn from(err: CacheError) -> Self {
        Self::Unavailable { dependency: "the session store", cause: err.to_string() }
    }
}

impl From<SessionError> for SigningError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Invalid => Self::InvalidRefresh,
            SessionError::Reused => Self::RefreshReused,
            SessionError::Unavailable(cause) => cause.into(),
        }
    }
}

impl From<HashError> for SigningError {
    fn from(err: HashError) -> Self {
        Self::Internal(err.to_string())
    }
}

impl From<SigningError> for ApiError {
    fn from(err: SigningError) -> Self {
        let message = err.to_string();
        match err {
            SigningError::InvalidField { field, why } => ApiError::invalid_field(field, why),
            SigningError::EmailTaken => ApiError::conflict("email_taken", message),
            SigningError::InvalidCredentials => {
                ApiError::unauthorized("invalid_credentials", message)
            }
            SigningError::RateLimited { retry_after_s } => ApiError::rate_limited(retry_after_s),
            SigningError::InvalidRefresh => {
                ApiError::unauthorized("invalid_refresh_token", message)
            }
            SigningError::RefreshReused => ApiError::unauthorized("refresh_token_reused", message),
            SigningError::NotAService => {
                ApiError::unauthorized("invalid_service_credential", message)
            }
            SigningError::Auth(auth) => auth.into(),
            SigningError::Unavailable { dependency, cause } => {
                ApiError::unavailable(dependency, cause)
            }
            SigningError::Internal(cause) => ApiError::internal(cause),
        }
    }
}
