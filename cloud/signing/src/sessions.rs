//! Sessions and refresh tokens, kept in the cache port (Redis in the distributed shape, memory in
//! the embedded one) so that every replica and every service sees a logout at once.
//!
//! A session (`session:<sid>`) is one sign-in: a family of refresh tokens. Refresh tokens are
//! opaque random strings; only their SHA-256 is stored. `refresh:<hash>` maps the current token
//! of a family to its sid and is taken (read and deleted atomically) when used, so a token works
//! once even under concurrent use. A used token's hash stays in `used:<hash>`: presenting it again
//! is reuse — a sign of theft — and ends the whole session.

use std::{sync::Arc, time::Duration};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use edgewatch_common::{
    auth::Role,
    cache::{Cache, CacheError},
};
use edgewatch_protocol::UserId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the store keeps of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: UserId,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the refresh token is unknown or expired")]
    Invalid,
    #[error("the refresh token was already used; the session has been ended")]
    Reused,
    #[error(transparent)]
    Unavailable(#[from] CacheError),
}

/// A rotated session: the new refresh token and who it belongs to.
#[derive(Debug)]
pub struct Rotated {
    pub sid: String,
    pub session: Session,
    pub refresh_token: String,
}

#[derive(Clone)]
pub struct Sessions {
    cache: Arc<dyn Cache>,
    ttl: Duration,
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Sessions {
    /// Sessions live `ttl` after their last refresh.
    pub fn new(cache: Arc<dyn Cache>, ttl: Duration) -> Self {
        Self { cache, ttl }
    }

    /// Starts a session; returns its id and first refresh token.
    pub async fn start(&self, session: Session) -> Result<(String, String), SessionError> {
        let sid = uuid::Uuid::now_v7().to_string();
        self.save(&sid, &session).await?;
        let token = self.issue(&sid).await?;
        Ok((sid, token))
    }

    /// Trades a refresh token for the next one of its family.
    pub async fn rotate(&self, refresh_token: &str) -> Result<Rotated, SessionError> {
        let hash = digest(refresh_token);
        let Some(sid) = self.cache.take(&format!("refresh:{hash}")).await? else {
            if let Some(sid) = self.cache.get(&format!("used:{hash}")).await? {
                let sid = String::from_utf8_lossy(&sid).into_owned();
                self.end(&sid).await?;
                metrics::counter!("edgewatch_signing_refresh_reuse_total").increment(1);
                tracing::warn!(sid, "Refresh token reused; session ended");
                return Err(SessionError::Reused);
            }
            return Err(SessionError::Invalid);
        };
        self.cache.set(&format!("used:{hash}"), sid.clone(), self.ttl).await?;
        let sid = String::from_utf8_lossy(&sid).into_owned();
        let session = self.get(&sid).await?.ok_or(SessionError::Invalid)?;
        self.save(&sid, &session).await?;
        let refresh_token = self.issue(&sid).await?;
        Ok(Rotated { sid, session, refresh_token })
    }

    /// The live session `sid`, if it has not ended or expired.
    pub async fn get(&self, sid: &str) -> Result<Option<Session>, SessionError> {
        let Some(bytes) = self.cache.get(&format!("session:{sid}")).await? else { return Ok(None) };
        Ok(serde_json::from_slice(&bytes).ok())
    }

    /// Ends a session: its access tokens are refused and its refresh tokens stop working.
    pub async fn end(&self, sid: &str) -> Result<(), SessionError> {
        self.cache.delete(&format!("session:{sid}")).await?;
        Ok(())
    }

    async fn save(&self, sid: &str, session: &Session) -> Result<(), SessionError> {
        let json =
            serde_json::to_vec(session).map_err(|e| CacheError::Unavailable(e.to_string()))?;
        self.cache.set(&format!("session:{sid}"), Bytes::from(json), self.ttl).await?;
        Ok(())
    }

    async fn issue(&self, sid: &str) -> Result<String, SessionError> {
        let token = random_token();
        self.cache
            .set(
                &format!("refresh:{}", digest(&token)),
                Bytes::copy_from_slice(sid.as_bytes()),
                self.ttl,
            )
            .await?;
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use edgewatch_common::cache::memory::MemoryCache;

    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(Arc::new(MemoryCache::new(1_000)), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn rotation_works_once_and_reuse_ends_the_family() {
        let sessions = sessions();
        let who = Session { user_id: UserId::new(), role: Role::User };
        let (sid, first) = sessions.start(who.clone()).await.unwrap();
        let second = sessions.rotate(&first).await.unwrap();
        assert_eq!((second.sid.as_str(), &second.session), (sid.as_str(), &who));
        let third = sessions.rotate(&second.refresh_token).await.unwrap();
        assert!(matches!(sessions.rotate(&first).await, Err(SessionError::Reused)));
        assert!(sessions.get(&sid).await.unwrap().is_none(), "reuse ends the session");
        assert!(matches!(sessions.rotate(&third.refresh_token).await, Err(SessionError::Invalid)));
        assert!(matches!(sessions.rotate("made-up").await, Err(SessionError::Invalid)));
    }
}
