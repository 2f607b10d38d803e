//! Static accounts from the configuration. Passwords are compared in constant time; an account
//! name shadows a device id of the same spelling (it is checked first).

use std::collections::HashMap;

use async_trait::async_trait;
use edgewatch_protocol::{SENSORS_FILTER, TELEMETRY_FILTER};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{AuthError, Authenticator, Login};
use crate::acl::{Identity, Permissions};

/// What an account is for; each role brings its permissions, `publish`/`subscribe` add to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountRole {
    /// The devices service's bridge (cloud): reads every device's telemetry and status,
    /// publishes configs.
    Service,
    /// A local sensor (edge): publishes `sensors/...`.
    Sensor,
    /// The agent on an edge broker: subscribes to `sensors/#`.
    Agent,
    /// Only the listed `publish`/`subscribe` filters.
    Custom,
}

/// One static account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub username: String,
    pub password: String,
    pub role: AccountRole,
    #[serde(default)]
    pub publish: Vec<String>,
    #[serde(default)]
    pub subscribe: Vec<String>,
}

impl Account {
    pub fn permissions(&self) -> Permissions {
        let mut p = match self.role {
            AccountRole::Service => Permissions {
                publish: vec!["edgewatch/v1/devices/+/config".into()],
                subscribe: vec![
                    TELEMETRY_FILTER.into(),
                    "edgewatch/v1/devices/+/status".into(),
                    "edgewatch/v1/devices/+/config".into(),
                ],
            },
            AccountRole::Sensor => {
                Permissions { publish: vec![SENSORS_FILTER.into()], subscribe: vec![] }
            }
            AccountRole::Agent => {
                Permissions { publish: vec![], subscribe: vec![SENSORS_FILTER.into()] }
            }
            AccountRole::Custom => Permissions::default(),
        };
        p.publish.extend(self.publish.iter().cloned());
        p.subscribe.extend(self.subscribe.iter().cloned());
        p
    }
}

/// The adapter over a list of accounts.
pub struct Accounts {
    by_name: HashMap<String, Account>,
}

impl Accounts {
    pub fn new(accounts: impl IntoIterator<Item = Account>) -> Self {
        Self { by_name: accounts.into_iter().map(|a| (a.username.clone(), a)).collect() }
    }
}

#[async_trait]
impl Authenticator for Accounts {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        let account = self.by_name.get(&login.username).ok_or(AuthError::UnknownUser)?;
        if bool::from(account.password.as_bytes().ct_eq(login.password.as_bytes())) {
            Ok(Identity::Account {
                username: account.username.clone(),
                permissions: account.permissions(),
            })
        } else {
            Err(AuthError::Denied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn login(username: &str, password: &str) -> Login {
        Login { client_id: "c".into(), username: username.into(), password: password.into() }
    }

    #[tokio::test]
    async fn accounts_check_passwords_and_carry_their_role() {
        let accounts = Accounts::new([Account {
            username: "greenhouse".into(),
            password: "pw".into(),
            role: AccountRole::Sensor,
            publish: vec![],
            subscribe: vec![],
        }]);
        let Ok(Identity::Account { permissions, .. }) =
            accounts.authenticate(&login("greenhouse", "pw")).await
        else {
            panic!("the right password is accepted");
        };
        assert!(permissions.may_publish("sensors/greenhouse/temp"));
        assert!(!permissions.may_subscribe("sensors/#"));
        assert_eq!(accounts.authenticate(&login("greenhouse", "pW")).await, Err(AuthError::Denied));
        assert_eq!(accounts.authenticate(&login("other", "pw")).await, Err(AuthError::UnknownUser));
    }
}
