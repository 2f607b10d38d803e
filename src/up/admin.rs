//! The administrator of an `edgewatch up` installation: created on first start with a random
//! password that is printed once and stored only as a hash (like any account's).

use std::net::{IpAddr, Ipv4Addr};

use edgewatch_common::auth::{Principal, Role};
use edgewatch_protocol::UserId;
use edgewatch_signing::Signing;

use super::UpError;

pub struct Admin {
    pub id: UserId,
    pub email: String,
    /// Set only on the start that created the account.
    pub new_password: Option<String>,
}

impl Admin {
    /// Acting as the administrator inside this process (creating the local devices).
    pub fn principal(&self) -> Principal {
        Principal { user_id: self.id, role: Role::Admin, session_id: "edgewatch-up".into() }
    }
}

/// Finds the administrator, creating it when this is the first start.
pub async fn ensure(signing: &Signing, email: &str) -> Result<Admin, UpError> {
    let failed = |err: edgewatch_signing::error::SigningError| {
        UpError::Admin(format!("{email}: {err} (choose another with --admin-email)"))
    };
    if let Some(user) = signing.account(email).await.map_err(failed)? {
        return Ok(Admin { id: user.id, email: user.email, new_password: None });
    }
    let password = super::random_token();
    let user = signing
        .register(
            email,
            password.clone(),
            Some("Administrator".into()),
            IpAddr::V4(Ipv4Addr::LOCALHOST),
        )
        .await
        .map_err(failed)?;
    if user.role != Role::Admin {
        // Someone registered before the administrator existed (an older data directory).
        tracing::warn!(email, "The account created for the administrator is not an admin");
    }
    Ok(Admin { id: user.id, email: user.email, new_password: Some(password) })
}
