//! Password hashing: Argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane), on a
//! blocking thread so that a burst of logins cannot stall the async runtime. Verifying against an
//! unknown account still runs one full hash (against a dummy), so unknown emails and wrong
//! passwords take the same time.

use std::sync::Arc;

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, Argon2id option 2: m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

#[derive(Clone)]
pub struct Hasher {
    argon: Arc<Argon2<'static>>,
    dummy: Arc<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl Hasher {
    pub fn new() -> Result<Self, HashError> {
        let params =
            Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|e| HashError(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = hash_with(&argon, "edgewatch timing equaliser")?;
        Ok(Self { argon: Arc::new(argon), dummy: Arc::new(dummy) })
    }

    /// A PHC-format hash (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        let argon = Arc::clone(&self.argon);
        tokio::task::spawn_blocking(move || hash_with(&argon, password.expose()))
            .await
            .map_err(|e| HashError(e.to_string()))?
    }

    /// Whether `password` matches `hash`; with no hash (no such account) it spends the same time
    /// and answers no.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let argon = Arc::clone(&self.argon);
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| (*self.dummy).clone());
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| argon.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| HashError(e.to_string()))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_carry_the_owasp_parameters() {
        let hasher = Hasher::new().unwrap();
        let hash =
            hasher.hash(Password::parse("correct horse battery".into()).unwrap()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!hasher.verify("wrong horse battery".into(), Some(hash)).await);
        assert!(!hasher.verify("anything at all".into(), None).await);
        assert!(!hasher.verify("x".into(), Some("not a phc string".into())).await);
    }
}
