//! Signing keys. Ed25519 keys live as PKCS#8 PEM files (`<kid>.pem`) in a directory, or come as
//! PEM text in the `signing_keys` setting (an environment variable filled from a secret); the embedded shape generates one on first start and keeps it. Every
//! key in the directory is published in the JWKS and verifies tokens; the newest (by file
//! modification time) signs. Rotation: add a new key file, restart, remove the old one once the
//! tokens it signed have expired.
//!
//! A key's `kid` is the first 16 hex digits of the SHA-256 of its public key, so it cannot
//! disagree with the key it names.

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{
    SigningKey,
    pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding},
};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
        OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    },
};
use serde::Serialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing keys in {dir}: {cause}")]
    Io { dir: PathBuf, cause: std::io::Error },
    #[error("{file} is not an Ed25519 private key in PKCS#8 PEM form: {cause}")]
    BadKey { file: PathBuf, cause: String },
    #[error("no signing key in {0}: add an Ed25519 PKCS#8 PEM file, or allow generating one")]
    None(PathBuf),
}

struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

/// The keys of the signing service.
pub struct KeySet {
    /// Newest first: `keys[0]` signs.
    keys: Vec<Key>,
    jwks: JwkSet,
}

fn kid_of(key: &SigningKey) -> String {
    let digest = Sha256::digest(key.verifying_key().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn load(key: &SigningKey) -> Result<Key, String> {
    let der = key.to_pkcs8_der().map_err(|e| e.to_string())?;
    let encoding = EncodingKey::from_ed_der(der.as_bytes());
    let kid = kid_of(key);
    let jwk = Jwk {
        common: CommonParameters {
            key_id: Some(kid.clone()),
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::EdDSA),
            ..CommonParameters::default()
        },
        algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()),
        }),
    };
    Ok(Key { kid, encoding, jwk })
}

impl KeySet {
    /// Loads every `*.pem` in `dir`; with `generate`, creates the directory and a first key when
    /// there is none.
    pub fn load_dir(dir: &Path, generate: bool) -> Result<Self, KeyError> {
        let io = |cause| KeyError::Io { dir: dir.to_owned(), cause };
        if generate && !dir.exists() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        let mut found: Vec<(SystemTime, Key)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_none_or(|ext| ext != "pem") {
                continue;
            }
            let bad = |cause: String| KeyError::BadKey { file: path.clone(), cause };
            let pem = fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
            let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|e| bad(e.to_string()))?;
            let modified =
                fs::metadata(&path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, load(&signing).map_err(bad)?));
        }
        if found.is_empty() {
            if !generate {
                return Err(KeyError::None(dir.to_owned()));
            }
            let (path, key) = Self::generate_into(dir)?;
            tracing::info!(kid = %key.kid, path = %path.display(), "Generated a signing key");
            found.push((SystemTime::now(), key));
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.kid.cmp(&b.1.kid)));
        Ok(Self::from_keys(found.into_iter().map(|(_, key)| key).collect()))
    }

    /// Keys given as PEM text (one or more `PRIVATE KEY` blocks, e.g. from a secret in an
    /// environment variable); the first block signs.
    pub fn from_pem_text(text: &str) -> Result<Self, KeyError> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        let from_env = PathBuf::from("(signing_keys)");
        let keys = text
            .split(BEGIN)
            .filter(|block| !block.trim().is_empty())
            .map(|block| {
                let pem = format!("{BEGIN}{block}");
                let bad = |cause: String| KeyError::BadKey { file: from_env.clone(), cause };
                let signing =
                    SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| bad(e.to_string()))?;
                load(&signing).map_err(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::None(from_env));
        }
        Ok(Self::from_keys(keys))
    }

    /// A fresh key written to `<dir>/<kid>.pem` with mode 0600.
    fn generate_into(dir: &Path) -> Result<(PathBuf, Key), KeyError> {
        let signing = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
        let key =
            load(&signing).map_err(|cause| KeyError::BadKey { file: dir.to_owned(), cause })?;
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::BadKey { file: dir.to_owned(), cause: e.to_string() })?;
        let path = dir.join(format!("{}.pem", key.kid));
        write_private(&path, pem.as_bytes())
            .map_err(|cause| KeyError::Io { dir: dir.to_owned(), cause })?;
        Ok((path, key))
    }

    fn from_keys(keys: Vec<Key>) -> Self {
        let jwks = JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() };
        Self { keys, jwks }
    }

    /// The public keys, for `/jwks` and for local verification.
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// The `kid` of the key that signs.
    pub fn active_kid(&self) -> &str {
        &self.keys[0].kid
    }

    /// Signs `claims` with the active key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, jsonwebtoken::errors::Error> {
        let key = &self.keys[0];
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        std::env::temp_dir().join(format!("edgewatch-keys-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn generates_once_and_reloads_the_same_key() {
        let dir = temp_dir();
        let first = KeySet::load_dir(&dir, true).unwrap();
        let again = KeySet::load_dir(&dir, true).unwrap();
        assert_eq!(first.active_kid(), again.active_kid());
        assert_eq!(first.jwks().keys.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let file = dir.join(format!("{}.pem", first.active_kid()));
            assert_eq!(fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn refuses_to_start_without_keys_or_with_a_bad_one() {
        let dir = temp_dir();
        fs::create_dir_all(&dir).unwrap();
        assert!(matches!(KeySet::load_dir(&dir, false), Err(KeyError::None(_))));
        fs::write(dir.join("broken.pem"), "not a key").unwrap();
        assert!(matches!(KeySet::load_dir(&dir, true), Err(KeyError::BadKey { .. })));
    }

    #[test]
    fn keys_load_from_pem_text_in_the_given_order() {
        let (dir_a, dir_b) = (temp_dir(), temp_dir());
        let a = KeySet::load_dir(&dir_a, true).unwrap();
        let b = KeySet::load_dir(&dir_b, true).unwrap();
        let pem =
            |dir: &Path, kid: &str| fs::read_to_string(dir.join(format!("{kid}.pem"))).unwrap();
        let text = format!("{}\n{}", pem(&dir_b, b.active_kid()), pem(&dir_a, a.active_kid()));
        let both = KeySet::from_pem_text(&text).unwrap();
        assert_eq!(both.active_kid(), b.active_kid());
        assert_eq!(both.jwks().keys.len(), 2);
        assert!(matches!(KeySet::from_pem_text("  "), Err(KeyError::None(_))));
        assert!(matches!(
            KeySet::from_pem_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"),
            Err(KeyError::BadKey { .. })
        ));
    }

    #[test]
    fn two_keys_are_both_published_and_the_newest_signs() {
        let dir = temp_dir();
        let old = KeySet::load_dir(&dir, true).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        KeySet::generate_into(&dir).unwrap();
        let both = KeySet::load_dir(&dir, false).unwrap();
        assert_eq!(both.jwks().keys.len(), 2);
        assert_ne!(both.active_kid(), old.active_kid());
        assert!(both.jwks().find(old.active_kid()).is_some());
    }
}
