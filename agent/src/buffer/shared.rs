//! The buffer shared by the collector, the uplink and the config task. SQLite calls block (an
//! fsync per commit), so each runs on tokio's blocking pool, one at a time behind a mutex.

use std::sync::{Arc, Mutex};

use super::Buffer;
use crate::error::{AgentError, Result};

#[derive(Clone, Debug)]
pub struct SharedBuffer(Arc<Mutex<Buffer>>);

impl SharedBuffer {
    pub fn new(buffer: Buffer) -> Self {
        Self(Arc::new(Mutex::new(buffer)))
    }

    /// Runs `f` on the buffer on the blocking pool.
    pub async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Buffer) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written (transactions roll
            // back), so a poisoned lock is safe to take over.
            let mut buffer = inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut buffer)
        })
        .await
        .map_err(|e| AgentError::Task(e.to_string()))?
    }
}
