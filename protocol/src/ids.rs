//! Identifiers. Every id on the wire is a UUID written in its hyphenated lower-case form; new ids
//! are v7 so that they sort by creation time in indexes.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a UUID (expected the form 0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b)")]
pub struct IdError {
    input: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh, time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the hyphenated, simple or braced forms; errors name the input.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                Uuid::parse_str(input)
                    .map(Self)
                    .map_err(|_| IdError { input: truncate(input) })
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A device: the key of the registry and of every reading.
    DeviceId
);
uuid_id!(
    /// A user account: the owner of devices.
    UserId
);

/// Error messages echo the input; cap it so a hostile megabyte does not come back in a response.
pub(crate) fn truncate(input: &str) -> String {
    const MAX: usize = 64;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &input[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_json() {
        let id = DeviceId::new();
        assert_eq!(DeviceId::parse(&id.to_string()), Ok(id));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<DeviceId>(&json).unwrap(), id);
    }

    #[test]
    fn new_ids_are_v7_and_ordered() {
        let a = DeviceId::new();
        let b = DeviceId::new();
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert!(a < b);
    }

    #[test]
    fn rejects_non_uuids_and_caps_the_echo() {
        assert!(DeviceId::parse("device-1").is_err());
        assert!(DeviceId::parse("").is_err());
        let long = "é".repeat(1000);
        let err = DeviceId::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }
}
