//! Password hashing: Argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane), on
//! threads of its own so that a burst of logins cannot stall the async runtime. Verifying against
//! an unknown account still runs one full hash (against a dummy), so unknown emails and wrong
//! passwords take the same time.
//!
//! Memory is bounded by design, not left to the allocator: `threads` hashing threads each own one
//! 19 MiB working area, allocated at their first hash and reused for every later one (argon2's
//! `hash_password_into_with_memory`); more requests wait in line. Letting argon2 allocate per
//! hash on tokio's blocking pool kept a block resident per thread and per glibc heap it touched
//! (glibc raises its mmap threshold after the first large free): 400 MiB after 20 sign-ins, 5 at
//! once; fixed threads alone still kept six blocks, and mimalloc as much (docs/benchmarks.md,
//! "Sign-in memory").

use std::sync::{Arc, Mutex, mpsc};

use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{self, Output, Salt, SaltString},
};
use tokio::sync::oneshot;

use crate::domain::Password;

/// OWASP Password Storage Cheat Sheet, Argon2id option 2: m = 19 MiB, t = 2, p = 1.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// Work for a hashing thread, given that thread's working memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<Job>,
    dummy: Arc<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl From<password_hash::Error> for HashError {
    fn from(err: password_hash::Error) -> Self {
        Self(err.to_string())
    }
}

impl Hasher {
    /// A hasher with `threads` (at least 1) hashing threads; they end when the last clone of
    /// the hasher is dropped.
    pub fn new(threads: usize) -> Result<Self, HashError> {
        let dummy = hash_with(&mut Memory::default(), "edgewatch timing equaliser")?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads.max(1) {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("edgewatch-argon2-{n}"))
                .spawn(move || {
                    let mut memory = Memory::default();
                    loop {
                        // The lock is held only to take the next job, not while it runs.
                        let next = queue.lock().map(|q| q.recv());
                        match next {
                            Ok(Ok(job)) => job(&mut memory),
                            _ => return,
                        }
                    }
                })
                .map_err(|e| HashError(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(Self { jobs, dummy: Arc::new(dummy) })
    }

    /// Runs `work` on the next free hashing thread.
    async fn bounded<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Memory) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(work(memory));
        });
        self.jobs.send(job).map_err(|_| HashError("the hashing threads stopped".into()))?;
        answer.await.map_err(|_| HashError("a hashing thread stopped mid-hash".into()))
    }

    /// A PHC-format hash (`$argon2id$v=19$m=19456,t=2,p=1$...`).
    pub async fn hash(&self, password: Password) -> Result<String, HashError> {
        self.bounded(move |memory| hash_with(memory, password.expose())).await?
    }

    /// Whether `password` matches `hash`; with no hash (no such account) it spends the same time
    /// and answers no.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| (*self.dummy).clone());
        let matched = self
            .bounded(move |memory| verify_with(memory, &password, &hash))
            .await
            .unwrap_or(false);
        known && matched
    }
}

/// A hashing thread's working area, grown to the largest `m` it has hashed with and kept.
#[derive(Default)]
struct Memory(Vec<Block>);

impl Memory {
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.0.len() < count {
            self.0.resize(count, Block::default());
        }
        &mut self.0[..count]
    }
}

/// The PHC hash of `password` with `salt` under the given algorithm, version and parameters
/// (what argon2's `PasswordHasher` computes, in `memory` instead of a fresh allocation).
fn compute<'a>(
    memory: &mut Memory,
    (algorithm, version, params): (Algorithm, Version, Params),
    password: &[u8],
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let blocks = memory.blocks(params.block_count());
    let output = Output::init_with(len, |out| {
        Ok(argon.hash_password_into_with_memory(password, salt_bytes, out, &mut *blocks)?)
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: (&params).try_into()?,
        salt: Some(salt),
        hash: Some(output),
    })
}

fn hash_with(memory: &mut Memory, password: &str) -> Result<String, HashError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
    let params =
        Params::new(MEMORY_KIB, PASSES, LANES, None).map_err(|e| HashError(e.to_string()))?;
    let settings = (Algorithm::Argon2id, Version::V0x13, params);
    Ok(compute(memory, settings, password.as_bytes(), salt.as_salt())?.to_string())
}

/// Whether `password` hashes to `phc` under the parameters written in it (older hashes keep
/// theirs); any hash that cannot be read answers no.
fn verify_with(memory: &mut Memory, password: &str, phc: &str) -> bool {
    let Ok(stored) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else { return false };
    let settings = (
        Algorithm::try_from(stored.algorithm),
        stored.version.map(Version::try_from).transpose(),
        Params::try_from(&stored),
    );
    let (Ok(algorithm), Ok(version), Ok(params)) = settings else { return false };
    let settings = (algorithm, version.unwrap_or_default(), params);
    // Output's equality is constant-time.
    compute(memory, settings, password.as_bytes(), salt)
        .is_ok_and(|computed| computed.hash == Some(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_carry_the_owasp_parameters() {
        let hasher = Hasher::new(2).unwrap();
        let hash =
            hasher.hash(Password::parse("correct horse battery".into()).unwrap()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse battery".into(), Some(hash.clone())).await);
        assert!(!hasher.verify("wrong horse battery".into(), Some(hash)).await);
        assert!(!hasher.verify("anything at all".into(), None).await);
        assert!(!hasher.verify("x".into(), Some("not a phc string".into())).await);
    }

    /// Hashes stored before (argon2's own hasher, other parameters) still verify, and ours
    /// verify with argon2's own verifier.
    #[tokio::test]
    async fn agrees_with_argon2s_own_hasher() {
        use argon2::{PasswordHasher as _, PasswordVerifier as _};

        let hasher = Hasher::new(1).unwrap();
        let salt = SaltString::encode_b64(&[7; 16]).unwrap();
        for memory_kib in [MEMORY_KIB, 8 * 1024] {
            let params = Params::new(memory_kib, PASSES, LANES, None).unwrap();
            let stock = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"an older password", &salt)
                .unwrap()
                .to_string();
            assert!(hasher.verify("an older password".into(), Some(stock.clone())).await);
            assert!(!hasher.verify("an older passwore".into(), Some(stock)).await);
        }
        let ours =
            hasher.hash(Password::parse("correct horse battery".into()).unwrap()).await.unwrap();
        Argon2::default()
            .verify_password(b"correct horse battery", &PasswordHash::new(&ours).unwrap())
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_than_the_bound_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};

        let hasher = Hasher::new(2).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..8)
            .map(|_| {
                let (hasher, running, most) =
                    (hasher.clone(), Arc::clone(&running), Arc::clone(&most));
                tokio::spawn(async move {
                    hasher
                        .bounded(move |_| {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(30));
                            running.fetch_sub(1, Ordering::SeqCst);
                        })
                        .await
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }
}
