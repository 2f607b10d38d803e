//! Who may connect: the [`Authenticator`] port and its adapters. The front asks it once per
//! CONNECT (and again every few seconds for devices, so a revoked or rotated secret ends the
//! session). Adapters:
//!
//! - [`accounts::Accounts`]: static accounts from the configuration (the devices service's
//!   bridge on the cloud broker; local sensors and the agent on an edge broker).
//! - [`devices_http::DevicesHttp`]: asks the devices service whether a device id and secret are
//!   valid, caching "yes" for a short time.
//! - [`Chain`]: tries adapters in order until one knows the user.
//!
//! `edgewatch up` implements the trait in process on top of `edgewatch_devices::Devices`.

pub mod accounts;
pub mod devices_http;

use std::sync::Arc;

use async_trait::async_trait;

use crate::acl::Identity;

/// What a client presented in its CONNECT.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub client_id: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("Login")
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a login did not yield an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// This adapter does not know the user; a [`Chain`] asks the next one.
    #[error("unknown user")]
    UnknownUser,
    /// The user is known and the password is wrong (or the device was deleted).
    #[error("bad credentials")]
    Denied,
    /// The backend could not answer; the client should retry later.
    #[error("authentication backend unavailable: {0}")]
    Unavailable(String),
}

/// The authentication port: is this login a device, an account, or nobody?
#[async_trait]
pub trait Authenticator: Send + Sync + 'static {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError>;
}

/// Asks each adapter in turn; the first that knows the user decides.
pub struct Chain(pub Vec<Arc<dyn Authenticator>>);

#[async_trait]
impl Authenticator for Chain {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        for adapter in &self.0 {
            match adapter.authenticate(login).await {
                Err(AuthError::UnknownUser) => continue,
                decided => return decided,
            }
        }
        Err(AuthError::UnknownUser)
    }
}
