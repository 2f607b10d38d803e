//! The devices service's errors and their answers in the contract's error body.

use edgewatch_common::{ApiError, auth::AuthError, bus::BusError};
use edgewatch_protocol::BatchError;

use crate::repository::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum DevicesError {
    #[error("{0} {1}")]
    InvalidField(&'static str, String),
    #[error("no such device")]
    NotFound,
    #[error("this device belongs to someone else")]
    NotYours,
    #[error("the device credential is missing or wrong")]
    BadDeviceCredential,
    #[error("the batch is for device {batch}, not {path}: a device posts only its own telemetry")]
    WrongDevice { path: String, batch: String },
    #[error("the enrollment token is unknown, used or expired: create a new one")]
    BadEnrollmentToken,
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{dependency} is unavailable: {cause}")]
    Unavailable { dependency: &'static str, cause: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<RepoError> for DevicesError {
    fn from(err: RepoError) -> Self {
        match err {
            RepoError::Unavailable(cause) => {
                Self::Unavailable { dependency: "the device database", cause }
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<BusError> for DevicesError {
    fn from(err: BusError) -> Self {
        Self::Unavailable { dependency: "the message bus", cause: err.to_string() }
    }
}

impl From<DevicesError> for ApiError {
    fn from(err: DevicesError) -> Self {
        let message = err.to_string();
        match err {
            DevicesError::InvalidField(field, why) => ApiError::invalid_field(field, why),
            DevicesError::NotFound => ApiError::not_found(message),
            DevicesError::NotYours | DevicesError::WrongDevice { .. } => {
                ApiError::forbidden(message)
            }
            DevicesError::BadDeviceCredential => {
                ApiError::unauthorized("invalid_device_credential", message)
            }
            DevicesError::BadEnrollmentToken => {
                ApiError::unauthorized("invalid_enrollment_token", message)
            }
            DevicesError::Batch(batch) => batch.into(),
            DevicesError::Auth(auth) => auth.into(),
            DevicesError::Unavailable { dependency, cause } => {
                ApiError::unavailable(dependency, cause)
            }
            DevicesError::Internal(cause) => ApiError::internal(cause),
        }
    }
}
