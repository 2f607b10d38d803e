//! The registry's domain: what a device may be created or patched with, validated into the
//! protocol's `DeviceRecord`; and device secrets, which are 256-bit random strings stored only as
//! SHA-256 (a hash that fast is safe for secrets with that much entropy, and keeps the check on
//! every ingest request cheap).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use edgewatch_protocol::Location;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub const MAX_TAGS: usize = 32;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A device as created: `POST /devices`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct DeviceInput {
    pub name: String,
    pub kind: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub location: Option<Location>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A change: `PATCH /devices/{id}`; absent fields stay, `kind`/`location` may be set to null.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct DevicePatch {
    pub name: Option<String>,
    #[serde(default, deserialize_with = "explicit")]
    pub kind: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "explicit")]
    #[schema(value_type = Option<Object>)]
    pub location: Option<Option<Location>>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Tells a field set to `null` (Some(None)) from one left out (None).
fn explicit<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// The first problem of a device's fields: (field, why).
pub type Invalid = (&'static str, String);

pub fn check_name(name: &str) -> Result<String, Invalid> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(("name", "must be 1 to 100 characters".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(("name", "must not contain control characters".into()));
    }
    Ok(name.to_owned())
}

pub fn check_kind(kind: Option<String>) -> Result<Option<String>, Invalid> {
    match kind.map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()) {
        Some(k) if k.chars().count() > 64 || k.chars().any(char::is_control) => {
            Err(("kind", "must be at most 64 printable characters".into()))
        }
        other => Ok(other),
    }
}

pub fn check_tags(tags: Vec<String>) -> Result<Vec<String>, Invalid> {
    if tags.len() > MAX_TAGS {
        return Err(("tags", format!("at most {MAX_TAGS} tags")));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        let tag = tag.trim().to_lowercase();
        if tag.is_empty() || tag.chars().count() > 64 || tag.chars().any(char::is_control) {
            return Err(("tags", "each tag must be 1 to 64 printable characters".into()));
        }
        if !out.contains(&tag) {
            out.push(tag);
        }
    }
    Ok(out)
}

pub fn check_location(location: Option<Location>) -> Result<Option<Location>, Invalid> {
    match location {
        Some(l) if !(-90.0..=90.0).contains(&l.lat) || !(-180.0..=180.0).contains(&l.lon) => {
            Err(("location", "lat must be within ±90 and lon within ±180".into()))
        }
        other => Ok(other),
    }
}

pub fn check_metadata(
    metadata: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, Invalid> {
    let size = serde_json::to_vec(&metadata).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_METADATA_BYTES {
        return Err(("metadata", format!("is {size} bytes as JSON; at most {MAX_METADATA_BYTES}")));
    }
    Ok(metadata)
}

/// A device config: a JSON object of at most 64 KiB.
pub fn check_config(
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>, Invalid> {
    let size = serde_json::to_vec(&config).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > 4 * MAX_METADATA_BYTES {
        return Err((
            "config",
            format!("is {size} bytes as JSON; at most {}", 4 * MAX_METADATA_BYTES),
        ));
    }
    Ok(config)
}

/// A new random secret (device secret or enrollment token) and its stored hash.
pub fn new_secret() -> (String, String) {
    let secret = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
    let hash = hash_secret(&secret);
    (secret, hash)
}

pub fn hash_secret(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_checked_and_normalised() {
        assert_eq!(check_name("  greenhouse ").unwrap(), "greenhouse");
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(101)).is_err());
        assert_eq!(check_kind(Some("  ".into())).unwrap(), None);
        assert!(check_kind(Some("k".repeat(65))).is_err());
        assert_eq!(
            check_tags(vec!["North".into(), "north".into(), "pi4".into()]).unwrap(),
            vec!["north", "pi4"]
        );
        assert!(check_tags(vec![String::new()]).is_err());
        assert!(check_tags((0..33).map(|i| i.to_string()).collect()).is_err());
        assert!(check_location(Some(Location { lat: 91.0, lon: 0.0 })).is_err());
        assert!(check_location(Some(Location { lat: 47.6, lon: -122.3 })).is_ok());
        let big: serde_json::Map<_, _> =
            [("x".to_owned(), serde_json::Value::String("y".repeat(20_000)))].into_iter().collect();
        assert!(check_metadata(big).is_err());
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, hash_a) = new_secret();
        let (b, _) = new_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash_secret(&a), hash_a);
        assert_ne!(hash_a, a);
    }
}
