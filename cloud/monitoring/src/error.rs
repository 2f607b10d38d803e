//! The monitoring service's one error type, and how each maps to the contract's error body.

use edgewatch_common::{ApiError, telemetry_store::StoreError};

#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    #[error("no such device")]
    NotFound,
    #[error("this device is not yours")]
    NotYours,
    #[error("the device has sent no readings yet")]
    NoReadings,
    #[error("{1}")]
    InvalidField(&'static str, String),
    #[error("the device registry is unavailable: {0}")]
    Registry(String),
    #[error("your session is not valid any more; sign in again")]
    Unauthorized,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MonitoringError> for ApiError {
    fn from(err: MonitoringError) -> Self {
        let message = err.to_string();
        match err {
            MonitoringError::NotFound | MonitoringError::NoReadings => ApiError::not_found(message),
            MonitoringError::NotYours => ApiError::forbidden(message),
            MonitoringError::InvalidField(field, why) => ApiError::invalid_field(field, why),
            MonitoringError::Unauthorized => ApiError::unauthorized("invalid_token", message),
            MonitoringError::Registry(cause) => {
                ApiError::unavailable("device registry", cause).with_retry_after(2)
            }
            MonitoringError::Store(StoreError::InvalidRange(why)) => {
                ApiError::invalid_field("from", why)
            }
            MonitoringError::Store(cause) => {
                ApiError::unavailable("telemetry store", cause).with_retry_after(2)
            }
        }
    }
}
