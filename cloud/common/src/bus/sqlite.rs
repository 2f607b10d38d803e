//! The durable embedded bus of `edgewatch up`: the [`memory`](super::memory) bus's dispatching
//! over a journal in one SQLite file, so that a `kill -9` or a power cut loses nothing a publisher
//! was told is taken (DESIGN.md "Delivery guarantees", rule 5).
//!
//! On disk: table `messages (id INTEGER PRIMARY KEY AUTOINCREMENT, queue, routing_key, body,
//! message_id, request_id)`, one row per queue a message was routed to. Invariants: a row exists
//! from before `publish` returns `Ok` until its delivery is acked (dead-lettering moves it to
//! `<queue>.dead`); ids are never reused and increase in order of arrival. Deliveries are served
//! from memory; on open every row is queued again, marked redelivered (whether it had been handed
//! to a consumer before is not recorded: that would cost a write per delivery, and consumers are
//! idempotent anyway).
//!
//! One writer thread owns the connection and commits whatever is waiting in one transaction
//! (group commit), so concurrent publishers share each sync to disk. WAL with
//! `synchronous=FULL`: a commit is on disk before `publish` returns. `NORMAL` only survives a
//! process crash (a power cut can roll back the last commits, i.e. messages already answered
//! 202). Group commit amortises the sync: docs/benchmarks.md "Embedded bus" measured FULL at
//! two thirds of NORMAL's throughput, four times the ingest target. Acks and moves are queued to
//! the writer without waiting: one lost to a crash only means a redelivery, which the store's
//! unique key makes harmless.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, mpsc},
    time::Duration,
};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use rusqlite::{Connection, params};
use tokio::sync::oneshot;

use super::{
    Bus, BusError, Message, Subscription, Topology,
    memory::{Journal, MemoryBus, Recovered},
};

/// Most operations one transaction of the writer takes.
const MAX_GROUP: usize = 1_024;

/// What a committed publish survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is synced on every commit, so a power cut loses nothing.
    #[default]
    PowerCut,
    /// `synchronous=NORMAL`: survives the process crashing, not the machine (for comparison).
    ProcessCrash,
}

/// The bus whose messages live in a SQLite file until acked.
#[derive(Clone)]
pub struct SqliteBus {
    inner: MemoryBus,
    journal: Arc<SqliteJournal>,
}

impl SqliteBus {
    /// Opens (creating if needed) the bus file at `path`, queueing again what it holds.
    pub async fn open(
        path: impl AsRef<Path>,
        topology: Topology,
        capacity: usize,
    ) -> Result<Self, BusError> {
        Self::open_with(path, topology, capacity, Durability::default()).await
    }

    pub async fn open_with(
        path: impl AsRef<Path>,
        topology: Topology,
        capacity: usize,
        durability: Durability,
    ) -> Result<Self, BusError> {
        let path = path.as_ref().to_owned();
        let (journal, recovered) =
            tokio::task::spawn_blocking(move || SqliteJournal::open(&path, durability))
                .await
                .map_err(|e| BusError::Unavailable(format!("opening the bus journal: {e}")))??;
        if !recovered.is_empty() {
            tracing::info!(messages = recovered.len(), "Queued again the bus messages not acked");
        }
        let journal = Arc::new(journal);
        let inner = MemoryBus::journaled(
            topology,
            capacity,
            Arc::clone(&journal) as Arc<dyn Journal>,
            recovered,
        );
        Ok(Self { inner, journal })
    }

    /// Opens the bus of a `sqlite://path` URL.
    pub async fn connect(url: &str, topology: Topology, capacity: usize) -> Result<Self, BusError> {
        let path = url
            .strip_prefix("sqlite://")
            .filter(|path| !path.is_empty() && !path.contains('?'))
            .ok_or_else(|| BusError::UnsupportedUrl(url.chars().take(64).collect()))?;
        Self::open(path, topology, capacity).await
    }

    /// Messages waiting or in flight in `queue`.
    pub fn depth(&self, queue: &str) -> usize {
        self.inner.depth(queue)
    }

    /// Resolves once every ack and move so far is on disk (a clean stop calls it, so that a
    /// restart does not redeliver what was already stored).
    pub async fn flush(&self) -> Result<(), BusError> {
        let (reply, done) = oneshot::channel();
        self.journal.send(Op::Flush(reply))?;
        done.await.map_err(|_| writer_gone())?
    }
}

#[async_trait]
impl Bus for SqliteBus {
    async fn publish(&self, message: Message) -> Result<(), BusError> {
        self.inner.publish(message).await
    }

    async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, BusError> {
        self.inner.subscribe(queue, prefetch).await
    }

    async fn ping(&self) -> Result<(), BusError> {
        self.flush().await
    }
}

enum Op {
    Append {
        queues: Vec<String>,
        message: Message,
        reply: oneshot::Sender<Result<Vec<u64>, BusError>>,
    },
    Remove(u64),
    Relocate {
        id: u64,
        queue: String,
    },
    Flush(oneshot::Sender<Result<(), BusError>>),
}

/// The sending side of the writer thread; the thread ends when the last one is dropped.
struct SqliteJournal {
    ops: mpsc::Sender<Op>,
    path: PathBuf,
}

fn writer_gone() -> BusError {
    BusError::Unavailable("the bus journal's writer stopped".into())
}

fn storage(cause: &rusqlite::Error) -> BusError {
    BusError::Unavailable(format!("the bus journal: {cause}"))
}

impl SqliteJournal {
    fn open(path: &Path, durability: Durability) -> Result<(Self, Vec<Recovered>), BusError> {
        let conn = Connection::open(path).map_err(|e| storage(&e))?;
        let synchronous = match durability {
            Durability::PowerCut => "FULL",
            Durability::ProcessCrash => "NORMAL",
        };
        conn.busy_timeout(Duration::from_secs(10)).map_err(|e| storage(&e))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| storage(&e))?;
        conn.pragma_update(None, "synchronous", synchronous).map_err(|e| storage(&e))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 queue TEXT NOT NULL,
                 routing_key TEXT NOT NULL,
                 body BLOB NOT NULL,
                 message_id TEXT,
                 request_id TEXT
             );",
        )
        .map_err(|e| storage(&e))?;
        let recovered = load(&conn).map_err(|e| storage(&e))?;
        let (ops, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("bus-journal".into())
            .spawn(move || write_loop(conn, queue))
            .map_err(|e| BusError::Unavailable(format!("starting the bus journal: {e}")))?;
        Ok((Self { ops, path: path.to_owned() }, recovered))
    }

    fn send(&self, op: Op) -> Result<(), BusError> {
        self.ops.send(op).map_err(|_| writer_gone())
    }
}

impl Journal for SqliteJournal {
    fn append(
        &self,
        queues: Vec<String>,
        message: Message,
    ) -> BoxFuture<'static, Result<Vec<u64>, BusError>> {
        let (reply, done) = oneshot::channel();
        let sent = self.send(Op::Append { queues, message, reply });
        Box::pin(async move {
            sent?;
            done.await.map_err(|_| writer_gone())?
        })
    }

    fn remove(&self, id: u64) {
        if self.send(Op::Remove(id)).is_err() {
            tracing::warn!(id, path = %self.path.display(), "Could not forget an acked bus message; it will be delivered again");
        }
    }

    fn relocate(&self, id: u64, queue: &str) {
        if self.send(Op::Relocate { id, queue: queue.to_owned() }).is_err() {
            tracing::warn!(id, queue, "Could not move a bus message; it will be delivered again");
        }
    }
}

fn load(conn: &Connection) -> rusqlite::Result<Vec<Recovered>> {
    let mut rows = conn.prepare(
        "SELECT id, queue, routing_key, body, message_id, request_id FROM messages ORDER BY id",
    )?;
    let recovered = rows.query_map([], |row| {
        Ok(Recovered {
            id: row.get::<_, i64>(0)?.unsigned_abs(),
            queue: row.get(1)?,
            message: Message {
                routing_key: row.get(2)?,
                body: row.get::<_, Vec<u8>>(3)?.into(),
                message_id: row.get(4)?,
                request_id: row.get(5)?,
            },
        })
    })?;
    recovered.collect()
}

/// Takes what is waiting (up to [`MAX_GROUP`]), writes it in one transaction, then answers.
fn write_loop(mut conn: Connection, queue: mpsc::Receiver<Op>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(op) => group.push(op),
                Err(_) => break,
            }
        }
        match write(&mut conn, &group) {
            Ok(mut ids) => {
                for op in group {
                    match op {
                        Op::Append { queues, reply, .. } => {
                            let rest = ids.split_off(queues.len().min(ids.len()));
                            let _ = reply.send(Ok(std::mem::replace(&mut ids, rest)));
                        }
                        Op::Flush(reply) => {
                            let _ = reply.send(Ok(()));
                        }
                        Op::Remove(_) | Op::Relocate { .. } => {}
                    }
                }
            }
            Err(cause) => {
                metrics::counter!("edgewatch_bus_journal_errors_total").increment(1);
                tracing::error!(error = %cause, "Could not write the bus journal; publishes are refused");
                for op in group {
                    match op {
                        Op::Append { reply, .. } => {
                            let _ = reply.send(Err(storage(&cause)));
                        }
                        Op::Flush(reply) => {
                            let _ = reply.send(Err(storage(&cause)));
                        }
                        Op::Remove(_) | Op::Relocate { .. } => {}
                    }
                }
            }
        }
    }
}

/// One transaction for the group; the new rows' ids in the order of the appends.
fn write(conn: &mut Connection, group: &[Op]) -> rusqlite::Result<Vec<u64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::new();
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO messages (queue, routing_key, body, message_id, request_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
        let mut relocate = tx.prepare_cached("UPDATE messages SET queue = ?2 WHERE id = ?1")?;
        for op in group {
            match op {
                Op::Append { queues, message, .. } => {
                    for queue in queues {
                        insert.execute(params![
                            queue,
                            message.routing_key,
                            &message.body[..],
                            message.message_id,
                            message.request_id
                        ])?;
                        ids.push(tx.last_insert_rowid().unsigned_abs());
                    }
                }
                Op::Remove(id) => {
                    delete.execute([id_param(*id)])?;
                }
                Op::Relocate { id, queue } => {
                    relocate.execute(params![id_param(*id), queue])?;
                }
                Op::Flush(_) => {}
            }
        }
    }
    tx.commit()?;
    Ok(ids)
}

fn id_param(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}
