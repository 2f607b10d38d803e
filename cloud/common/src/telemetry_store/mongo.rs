//! The distributed telemetry store on MongoDB (the `mongodb` driver), tested against FerretDB
//! v1.24 — whose limits shape the schema: no multi-document transactions, and the only filter it
//! answers from an index is `{_id: <value>}` alone (every other filter, `$in` included, scans the
//! whole collection). So every hot read and write here is a point operation on `_id`, and time
//! is bucketed into documents (MongoDB's own "bucket pattern" for time series) so that a range is
//! a handful of point reads:
//!
//! - `readings`: `{_id: "<device>:<seq>", d, q, t, m: [{k, v}], j}`, one per reading: the
//!   exactly-once key (the server refuses a second insert of an `_id`), and what `latest` and
//!   crash recovery read back. Metric names hold dots, which MongoDB reads as paths: as values
//!   they sit in `{k, v}` pairs, as keys (`<metric>` above) they are written with `-` for `.`.
//! - `minutes`: `{_id: "<device>|<start_ms>", b, s: {"<metric>": {"<minute>": {c, s, lo, hi}}},
//!   src: [signature]}`: one device's 1-minute rollups for 10 minutes, every metric in one
//!   document so that a write costs one upsert per device and window (FerretDB's price is per
//!   statement). Ten minutes, not an hour: FerretDB decodes and re-encodes the whole document on
//!   every update, so an hour document made each write dearer as the hour filled (in a benchmark
//!   a write's rollup step grew from 0.45 s to 2 s within the hour). Stores written before hold
//!   hour documents in `hours`, which are still read (checked for once, at open).
//! - `days`: the same for a day of 1-hour rollups; a 30-day chart is 30 point reads.
//! - `chunks`: `{_id: "<device>|<start_ms>|<signature>", b, v: {"<metric>": <binary>}}`: the raw
//!   points one write added to a window, packed (`DocDelta::chunk` gives the format; chunks of
//!   the first layout hold `[ts, value, seq, ...]` arrays and are still read), inserted
//!   (FerretDB's cheap path) and found through the window's `src` list.
//! - `catalogue`: `{_id: device, m: {"<metric>": {f, l}}, q}`: each metric's span, and the
//!   highest seq stored (`q`, raised with `$max`; the reading itself is read from `readings`),
//!   in one document so that a write costs one statement per device for both. Stores written
//!   before `q` moved here hold it in `latest: {_id: device, q}`, still read.
//!
//! Exactly once without transactions: a write first records its reading ids in `journal` (with
//! a fresh id `j`, also stamped on each reading it inserts), inserts the readings (duplicates are
//! refused by `_id` and skipped), inserts their raw-point chunks, applies their rollup deltas with
//! `$inc`, `$min`, `$max` upserts, and deletes its journal entry. Each bucket update also records
//! a *signature* of the seqs it carried in the bucket's `src`. A writer that dies half-way leaves
//! its journal entry; [`MongoStore::repair`] (run periodically) takes entries older than
//! [`PENDING_LEASE_MS`], reads back the readings stamped with that entry's id and re-applies
//! their deltas, skipping every bucket whose `src` already holds the signature. Nothing is lost
//! and nothing is counted twice; a redelivered message only meets duplicates.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Timestamp};
use futures_util::{StreamExt, TryStreamExt, stream};
use mongodb::{
    Client, Collection, Database,
    bson::{Binary, Bson, Document, doc, spec::BinarySubtype},
    error::ErrorKind,
    options::ClientOptions,
};

use super::{
    Bucket, HOUR_MS, LatestReading, MINUTE_MS, MetricSpan, Point, Purge, StoreError,
    TelemetryStore, Tier, TimeRange, WriteOutcome,
};

/// How long a journal entry is presumed to belong to a writer still at work.
pub const PENDING_LEASE_MS: i64 = 30_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// The span of one minute-rollup document (and of the raw-point chunks found through it).
const WINDOW_MS: i64 = 10 * MINUTE_MS;
const DUPLICATE_KEY: i32 = 11_000;
/// One raw point in a chunk's binary: `ts: i64, value: f64, seq: i64`, little-endian.
const POINT_BYTES: usize = 24;
/// Point reads in flight at once for one query.
const READ_CONCURRENCY: usize = 16;
/// Hours of minute-rollup documents a raw range reads at a time.
const RAW_HOURS_PER_READ: usize = 2;
/// Statements per `update` command. FerretDB v1.24 keeps one connection of its per-database
/// pool of 100 busy for every statement until the whole command ends (its handler defers each
/// statement's cursor close to the end of the command), so a command of 100 statements, or
/// several commands in flight that add up to it, wait for each other forever (seen: the
/// consumer hung with 50 devices x 2 documents in one call). A write has at most two commands
/// in flight (see `settle`), so one writer holds at most 2 x (10 + 1) connections and four
/// replicas writing to one database stay below 100.
const UPDATE_STATEMENTS: usize = 10;

pub struct MongoStore {
    db: Database,
    readings: Collection<Document>,
    minutes: Collection<Document>,
    days: Collection<Document>,
    /// The `hours` collection of stores written before minute rollups moved to 10-minute
    /// documents, when it holds any: read beside `minutes`, never written.
    legacy_hours: Option<Collection<Document>>,
}

fn unavailable(err: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// FNV-1a over the seqs a bucket update carries: the identity of that update.
fn signature(seqs: &[u64]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seqs.iter().flat_map(|s| s.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

fn reading_id(device: &str, seq: Seq) -> String {
    format!("{device}:{}", seq.get())
}

fn bucket_id(device: &str, start: i64) -> String {
    format!("{device}|{start}")
}

fn chunk_id(device: &str, start: i64, signature: i64) -> String {
    format!("{device}|{start}|{signature}")
}

/// Metric names as document keys: without dots, which would read as paths (names never hold
/// `-`).
fn metric_key(name: &MetricName) -> String {
    name.as_str().replace('.', "-")
}

/// Starts of the documents of `width_ms` that cover `range`.
fn doc_starts(range: TimeRange, width_ms: i64) -> Vec<i64> {
    let first = range.from.truncate(width_ms).as_millis();
    let to = range.to.as_millis();
    (0..).map(|i| first + i * width_ms).take_while(|start| *start < to).collect()
}

/// What one write adds to one bucket document (10 minutes or a day of one device): rollup
/// deltas per metric and slot, and for 10-minute windows the raw points, with the seqs they
/// came from.
#[derive(Default)]
struct DocDelta {
    start: i64,
    seqs: Vec<u64>,
    points: BTreeMap<String, Vec<u8>>,
    slots: BTreeMap<(String, i64), Bucket>,
}

impl DocDelta {
    fn add(&mut self, slot_width: i64, reading: &Reading, keep_points: bool) {
        let ts = reading.ts.as_millis();
        self.seqs.push(reading.seq.get());
        let slot = (ts - self.start).div_euclid(slot_width);
        for (name, value) in &reading.metrics {
            let key = metric_key(name);
            if keep_points {
                let packed = self.points.entry(key.clone()).or_default();
                packed.extend_from_slice(&ts.to_le_bytes());
                packed.extend_from_slice(&value.to_le_bytes());
                packed.extend_from_slice(&(reading.seq.get() as i64).to_le_bytes());
            }
            let one = Bucket::of(reading.ts, *value);
            self.slots.entry((key, slot)).and_modify(|b| b.merge(&one)).or_insert(one);
        }
    }

    fn signature(&self) -> i64 {
        let mut seqs = self.seqs.clone();
        seqs.sort_unstable();
        seqs.dedup();
        signature(&seqs)
    }

    /// The upsert of the bucket document.
    fn update(&self, device: &str) -> Document {
        let mut inc = Document::new();
        let mut min = Document::new();
        let mut max = Document::new();
        for ((key, slot), bucket) in &self.slots {
            inc.insert(format!("s.{key}.{slot}.c"), bucket.count as i64);
            inc.insert(format!("s.{key}.{slot}.s"), bucket.sum);
            min.insert(format!("s.{key}.{slot}.lo"), bucket.min);
            max.insert(format!("s.{key}.{slot}.hi"), bucket.max);
        }
        doc! {
            "q": {"_id": bucket_id(device, self.start)},
            "u": {
                "$inc": inc, "$min": min, "$max": max,
                "$push": {"src": self.signature()},
                "$set": {"b": self.start},
            },
            "upsert": true,
        }
    }

    /// The raw points of this update, as one document `{_id: "<bucket>|<signature>", v: {metric:
    /// <binary>}}` that the bucket finds through its `src` list. Inserting is FerretDB's cheap
    /// path (updates pay per field and per array element), and a repeated insert is refused by
    /// `_id`, so points are never stored twice. The binary is [`POINT_BYTES`]-byte records
    /// `ts: i64, value: f64, seq: i64`, little-endian: FerretDB stores a BSON array element by
    /// element with its type, so the array `[ts, value, seq, ...]` of the first layout cost
    /// about as much to insert as the readings themselves; a binary is one field.
    fn chunk(&self, device: &str) -> Option<Document> {
        if self.points.is_empty() {
            return None;
        }
        let values: Document = self
            .points
            .iter()
            .map(|(key, packed)| {
                (
                    key.clone(),
                    Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: packed.clone() }),
                )
            })
            .collect();
        Some(
            doc! {"_id": chunk_id(device, self.start, self.signature()), "b": self.start, "v": values},
        )
    }
}

impl MongoStore {
    /// Connects to `url` (`mongodb://host:port/database`; the database defaults to `edgewatch`).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url).await.map_err(unavailable)?;
        options.server_selection_timeout.get_or_insert(Duration::from_secs(5));
        options.connect_timeout.get_or_insert(Duration::from_secs(5));
        options.app_name.get_or_insert_with(|| "edgewatch".into());
        let db_name = options.default_database.clone().unwrap_or_else(|| "edgewatch".into());
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(&db_name);
        // Fail now, not at the first write, when the server is not there.
        db.run_command(doc! {"ping": 1}).await.map_err(unavailable)?;
        let hours = db.collection::<Document>("hours");
        let legacy_hours = hours.find_one(doc! {}).await.map_err(unavailable)?.map(|_| hours);
        Ok(Self {
            readings: db.collection("readings"),
            minutes: db.collection("minutes"),
            days: db.collection("days"),
            legacy_hours,
            db,
        })
    }

    /// Inserts the readings; returns the positions the server refused as duplicates.
    async fn insert(&self, docs: Vec<Document>) -> Result<HashSet<usize>, StoreError> {
        if docs.is_empty() {
            return Ok(HashSet::new());
        }
        match self.readings.insert_many(docs).ordered(false).await {
            Ok(_) => Ok(HashSet::new()),
            Err(err) => match *err.kind {
                ErrorKind::InsertMany(ref failure)
                    if failure.write_concern_error.is_none()
                        && failure
                            .write_errors
                            .iter()
                            .flatten()
                            .all(|e| e.code == DUPLICATE_KEY) =>
                {
                    Ok(failure.write_errors.iter().flatten().map(|e| e.index).collect())
                }
                _ => Err(unavailable(err)),
            },
        }
    }

    /// Runs update statements as `update` commands of at most [`UPDATE_STATEMENTS`] each.
    async fn update(&self, collection: &str, updates: Vec<Document>) -> Result<(), StoreError> {
        for chunk in updates.chunks(UPDATE_STATEMENTS) {
            self.update_command(collection, chunk).await?;
        }
        Ok(())
    }

    async fn update_command(&self, collection: &str, chunk: &[Document]) -> Result<(), StoreError> {
        let reply = self
            .db
            .run_command(doc! {"update": collection, "updates": chunk, "ordered": false})
            .await
            .map_err(unavailable)?;
        match reply.get_array("writeErrors").ok().and_then(|e| e.first()) {
            Some(error) => {
                Err(StoreError::Unavailable(format!("update of {collection} failed: {error}")))
            }
            None => Ok(()),
        }
    }

    /// Keeps only the updates whose signature the bucket does not hold yet (recovery only: a
    /// point read per bucket).
    async fn not_yet_applied(
        &self,
        collection: &Collection<Document>,
        updates: Vec<Document>,
    ) -> Result<Vec<Document>, StoreError> {
        let checks = updates.into_iter().map(|update| async move {
            let id = update.get_document("q").map_err(corrupt)?.get("_id").cloned();
            let sig = update
                .get_document("u")
                .and_then(|u| u.get_document("$push"))
                .and_then(|p| p.get_i64("src"))
                .map_err(corrupt)?;
            let found = collection
                .find_one(doc! {"_id": id})
                .projection(doc! {"src": 1})
                .await
                .map_err(unavailable)?;
            let applied = found
                .and_then(|d| d.get_array("src").ok().cloned())
                .is_some_and(|src| src.contains(&Bson::Int64(sig)));
            Ok::<_, StoreError>((!applied).then_some(update))
        });
        let kept: Vec<Option<Document>> =
            stream::iter(checks).buffered(READ_CONCURRENCY).try_collect().await?;
        Ok(kept.into_iter().flatten().collect())
    }

    /// Applies points, rollups, catalogue and latest for stored readings. With `recovering`,
    /// buckets that already hold an update's signature are skipped.
    async fn settle(
        &self,
        readings: &BTreeMap<String, Vec<&Reading>>,
        recovering: bool,
    ) -> Result<(), StoreError> {
        let mut chunks = Vec::new();
        let mut windows = Vec::new();
        let mut days = Vec::new();
        let mut catalogue = Vec::new();
        for (device, readings) in readings {
            let mut per_window: BTreeMap<i64, DocDelta> = BTreeMap::new();
            let mut per_day: BTreeMap<i64, DocDelta> = BTreeMap::new();
            let mut spans: BTreeMap<&MetricName, (i64, i64)> = BTreeMap::new();
            for reading in readings {
                let ts = reading.ts.as_millis();
                let window = reading.ts.truncate(WINDOW_MS).as_millis();
                per_window
                    .entry(window)
                    .or_insert_with(|| DocDelta { start: window, ..DocDelta::default() })
                    .add(MINUTE_MS, reading, true);
                let day = reading.ts.truncate(DAY_MS).as_millis();
                per_day
                    .entry(day)
                    .or_insert_with(|| DocDelta { start: day, ..DocDelta::default() })
                    .add(HOUR_MS, reading, false);
                for name in reading.metrics.keys() {
                    spans
                        .entry(name)
                        .and_modify(|(lo, hi)| (*lo, *hi) = ((*lo).min(ts), (*hi).max(ts)))
                        .or_insert((ts, ts));
                }
            }
            chunks.extend(per_window.values().filter_map(|d| d.chunk(device)));
            windows.extend(per_window.values().map(|d| d.update(device)));
            days.extend(per_day.values().map(|d| d.update(device)));
            let mut min = Document::new();
            let mut max = Document::new();
            for (name, (first, last)) in spans {
                let key = metric_key(name);
                min.insert(format!("m.{key}.f"), first);
                max.insert(format!("m.{key}.l"), last);
            }
            if let Some(newest) = readings.iter().map(|r| r.seq).max() {
                max.insert("q", newest.get() as i64);
            }
            catalogue.push(doc! {"q": {"_id": device.as_str()}, "u": {"$min": min, "$max": max}, "upsert": true});
        }
        if recovering {
            windows = self.not_yet_applied(&self.minutes, windows).await?;
            days = self.not_yet_applied(&self.days, days).await?;
        }
        let started = std::time::Instant::now();
        let (window_updates, day_updates) = (windows.len(), days.len());
        // The points and minute rollups, and the hour rollups, in flight at once: FerretDB
        // decodes and encodes documents on its own threads and only the SQLite write itself is
        // serialized, so they overlap.
        let points_then_windows = async {
            // Chunks first: a bucket never lists a chunk that is not there.
            if !chunks.is_empty() {
                match self
                    .db
                    .collection::<Document>("chunks")
                    .insert_many(chunks)
                    .ordered(false)
                    .await
                {
                    Ok(_) => {}
                    Err(err) if only_duplicates(&err) => {}
                    Err(err) => return Err(unavailable(err)),
                }
            }
            self.update("minutes", windows).await
        };
        tokio::try_join!(points_then_windows, self.update("days", days))?;
        // The catalogue last: its `q` is what `latest` answers, so a reader that sees a seq
        // there finds that reading's points and rollups too.
        self.update("catalogue", catalogue).await?;
        tracing::debug!(
            settle_ms = started.elapsed().as_millis(),
            window_updates,
            day_updates,
            "Settled a write"
        );
        Ok(())
    }

    /// Finishes the writes of writers that stopped half-way (journal entries older than the
    /// lease); returns how many readings it settled. Run periodically.
    pub async fn repair(&self) -> Result<usize, StoreError> {
        let journal = self.db.collection::<Document>("journal");
        let stale: Vec<Document> = journal
            .find(doc! {"w": {"$lt": now_ms() - PENDING_LEASE_MS}})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let mut settled = 0;
        for entry in stale {
            let entry_id = entry.get_str("_id").map_err(corrupt)?.to_owned();
            let ids: Vec<String> = entry
                .get_array("ids")
                .map_err(corrupt)?
                .iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect();
            let reads = ids.into_iter().map(|id| {
                let readings = self.readings.clone();
                async move { readings.find_one(doc! {"_id": id}).await.map_err(unavailable) }
            });
            let found: Vec<Option<Document>> =
                stream::iter(reads).buffered(READ_CONCURRENCY).try_collect().await?;
            // Only the readings this write inserted: others belong to the write that did.
            let mine: Vec<(String, Reading)> = found
                .iter()
                .flatten()
                .filter(|doc| doc.get_str("j").is_ok_and(|j| j == entry_id))
                .map(reading_from_doc)
                .collect::<Result<_, _>>()?;
            let mut by_device: BTreeMap<String, Vec<&Reading>> = BTreeMap::new();
            for (device, reading) in &mine {
                by_device.entry(device.clone()).or_default().push(reading);
            }
            self.settle(&by_device, true).await?;
            journal.delete_one(doc! {"_id": &entry_id}).await.map_err(unavailable)?;
            settled += mine.len();
        }
        Ok(settled)
    }

    /// The first and last timestamps of a metric (from the catalogue), so that a wide range
    /// costs no reads of documents that cannot exist.
    async fn span(
        &self,
        device: DeviceId,
        metric: &MetricName,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let found = self
            .db
            .collection::<Document>("catalogue")
            .find_one(doc! {"_id": device.to_string()})
            .await
            .map_err(unavailable)?;
        let Some(span) = found
            .as_ref()
            .and_then(|d| d.get_document("m").ok())
            .and_then(|m| m.get_document(metric_key(metric)).ok())
        else {
            return Ok(None);
        };
        Ok(Some((integer(span, "f")?, integer(span, "l")?)))
    }

    /// `[max(from, lo), min(to, hi))`, or `None` when empty.
    fn clamp(range: TimeRange, lo: i64, hi: i64) -> Result<Option<TimeRange>, StoreError> {
        let from = range.from.as_millis().max(lo);
        let to = range.to.as_millis().min(hi);
        if from >= to {
            return Ok(None);
        }
        Ok(Some(TimeRange::new(timestamp(from)?, timestamp(to)?)?))
    }

    /// Where a rollup tier is kept: each collection with the span of one of its documents.
    fn tier_docs(&self, tier: Tier) -> Vec<(&Collection<Document>, i64)> {
        match tier {
            Tier::Minute => std::iter::once((&self.minutes, WINDOW_MS))
                .chain(self.legacy_hours.iter().map(|hours| (hours, HOUR_MS)))
                .collect(),
            Tier::Hour => vec![(&self.days, DAY_MS)],
        }
    }

    /// The ids of the raw-point chunks a minute-rollup document lists.
    fn chunk_ids(device: &str, doc: &Document) -> Result<Vec<String>, StoreError> {
        let start = integer(doc, "b")?;
        Ok(doc
            .get_array("src")
            .map(|src| src.iter().filter_map(Bson::as_i64).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|sig| chunk_id(device, start, sig))
            .collect())
    }

    /// Point reads of `ids` in `collection`, in order, with `projection`.
    async fn point_reads(
        &self,
        collection: &Collection<Document>,
        ids: Vec<String>,
        projection: Document,
    ) -> Result<Vec<Document>, StoreError> {
        let reads = ids.into_iter().map(|id| {
            let projection = projection.clone();
            async move {
                collection
                    .find_one(doc! {"_id": id})
                    .projection(projection)
                    .await
                    .map_err(unavailable)
            }
        });
        let found: Vec<Option<Document>> =
            stream::iter(reads).buffered(READ_CONCURRENCY).try_collect().await?;
        Ok(found.into_iter().flatten().collect())
    }
}

/// The points of one metric in a chunk: packed records, or the `[ts, value, seq, ...]` array
/// of chunks written before the packed layout.
fn chunk_points(stored: &Bson) -> Result<Vec<(i64, f64, u64)>, StoreError> {
    match stored {
        Bson::Binary(binary) if binary.bytes.len() % POINT_BYTES == 0 => binary
            .bytes
            .chunks_exact(POINT_BYTES)
            .map(|record| {
                let word = |i: usize| {
                    let mut bytes = [0; 8];
                    bytes.copy_from_slice(&record[i * 8..i * 8 + 8]);
                    bytes
                };
                let seq = i64::from_le_bytes(word(2));
                Ok((
                    i64::from_le_bytes(word(0)),
                    f64::from_le_bytes(word(1)),
                    u64::try_from(seq).map_err(|_| corrupt(format!("point seq {seq}")))?,
                ))
            })
            .collect(),
        Bson::Array(flat) if flat.len() % 3 == 0 => flat
            .chunks(3)
            .map(|point| match (point[0].as_i64(), point[1].as_f64(), point[2].as_i64()) {
                (Some(ts), Some(value), Some(seq)) => Ok((ts, value, seq as u64)),
                _ => Err(corrupt("point")),
            })
            .collect(),
        _ => Err(corrupt("chunk points")),
    }
}

/// Whether an `insert_many` failed only on `_id`s the collection already had.
fn only_duplicates(err: &mongodb::error::Error) -> bool {
    match &*err.kind {
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure.write_errors.iter().flatten().all(|e| e.code == DUPLICATE_KEY)
        }
        _ => false,
    }
}

fn metrics_doc(reading: &Reading) -> Vec<Document> {
    reading.metrics.iter().map(|(k, v)| doc! {"k": k.as_str(), "v": *v}).collect()
}

fn metrics_from(doc: &Document) -> Result<BTreeMap<MetricName, f64>, StoreError> {
    doc.get_array("m")
        .map_err(corrupt)?
        .iter()
        .map(|entry| {
            let entry = entry.as_document().ok_or_else(|| corrupt("metric entry"))?;
            let name = MetricName::parse(entry.get_str("k").map_err(corrupt)?.to_owned())
                .map_err(|e| corrupt(format!("metric name {e}")))?;
            Ok((name, number(entry, "v")?))
        })
        .collect()
}

fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).map_err(corrupt)
}

fn seq_from(value: i64) -> Result<Seq, StoreError> {
    u64::try_from(value).ok().and_then(|s| Seq::new(s).ok()).ok_or_else(|| corrupt("seq"))
}

fn reading_from_doc(doc: &Document) -> Result<(String, Reading), StoreError> {
    Ok((
        doc.get_str("d").map_err(corrupt)?.to_owned(),
        Reading {
            seq: seq_from(integer(doc, "q")?)?,
            ts: timestamp(integer(doc, "t")?)?,
            metrics: metrics_from(doc)?,
            tags: Default::default(),
        },
    ))
}

/// A number the server may hand back as a 32- or 64-bit integer or a double.
fn number(doc: &Document, key: &str) -> Result<f64, StoreError> {
    match doc.get(key) {
        Some(Bson::Double(v)) => Ok(*v),
        Some(Bson::Int64(v)) => Ok(*v as f64),
        Some(Bson::Int32(v)) => Ok(f64::from(*v)),
        other => Err(corrupt(format!("field {key}: {other:?}"))),
    }
}

fn integer(doc: &Document, key: &str) -> Result<i64, StoreError> {
    match doc.get(key) {
        Some(Bson::Int64(v)) => Ok(*v),
        Some(Bson::Int32(v)) => Ok(i64::from(*v)),
        Some(Bson::Double(v)) if v.fract() == 0.0 => Ok(*v as i64),
        other => Err(corrupt(format!("field {key}: {other:?}"))),
    }
}

/// The rollup slots of metric `key` in a bucket document, as buckets of `slot_ms` from the
/// document's start.
fn slots(doc: &Document, key: &str, slot_ms: i64) -> Result<Vec<Bucket>, StoreError> {
    let start = integer(doc, "b")?;
    let Some(slots) = doc.get_document("s").ok().and_then(|s| s.get_document(key).ok()) else {
        return Ok(Vec::new());
    };
    slots
        .iter()
        .map(|(slot, summary)| {
            let index: i64 = slot.parse().map_err(|_| corrupt(format!("slot {slot}")))?;
            let summary = summary.as_document().ok_or_else(|| corrupt("slot summary"))?;
            let count = integer(summary, "c")?;
            Ok(Bucket {
                start: timestamp(start + index * slot_ms)?,
                count: u64::try_from(count).map_err(|_| corrupt(format!("count {count}")))?,
                sum: number(summary, "s")?,
                min: number(summary, "lo")?,
                max: number(summary, "hi")?,
            })
        })
        .collect()
}

/// Every metric's rollup slots in a bucket document.
fn all_slots(doc: &Document, slot_ms: i64) -> Result<Vec<(String, Bucket)>, StoreError> {
    let Ok(metrics) = doc.get_document("s") else { return Ok(Vec::new()) };
    let mut all = Vec::new();
    for key in metrics.keys() {
        all.extend(slots(doc, key, slot_ms)?.into_iter().map(|b| (key.clone(), b)));
    }
    Ok(all)
}

/// Deletes the rollup slots before `cutoff` from `collection` (documents of `width` with slots
/// of `slot_ms`); returns how many. Whole documents before the cutoff go, counted by their
/// slots, then the slots before the cutoff in the document that holds it.
async fn purge_slots(
    collection: &Collection<Document>,
    width: i64,
    slot_ms: i64,
    cutoff: i64,
) -> Result<u64, StoreError> {
    let slots_of = |filter: Document| async move {
        collection
            .find(filter)
            .projection(doc! {"s": 1, "b": 1})
            .await
            .map_err(unavailable)?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(unavailable)
    };
    let old = slots_of(doc! {"b": {"$lte": cutoff - width}}).await?;
    let mut deleted = 0;
    for doc in &old {
        deleted += all_slots(doc, slot_ms)?.len() as u64;
    }
    collection.delete_many(doc! {"b": {"$lte": cutoff - width}}).await.map_err(unavailable)?;
    let boundary = cutoff - cutoff.rem_euclid(width);
    let straddling = slots_of(doc! {"b": boundary}).await?;
    for doc in &straddling {
        let mut unset = Document::new();
        for (key, bucket) in all_slots(doc, slot_ms)? {
            if bucket.start.as_millis() < cutoff {
                let slot = (bucket.start.as_millis() - boundary) / slot_ms;
                unset.insert(format!("s.{key}.{slot}"), "");
            }
        }
        if !unset.is_empty() {
            deleted += unset.len() as u64;
            let id = doc.get("_id").cloned().ok_or_else(|| corrupt("no _id"))?;
            collection
                .update_one(doc! {"_id": id}, doc! {"$unset": unset})
                .await
                .map_err(unavailable)?;
        }
    }
    Ok(deleted)
}

#[async_trait]
impl TelemetryStore for MongoStore {
    async fn write(&self, batches: &[Batch]) -> Result<WriteOutcome, StoreError> {
        let journal_id = uuid::Uuid::now_v7().to_string();
        let mut docs = Vec::new();
        let mut keys: Vec<(String, &Reading)> = Vec::new();
        for batch in batches {
            let device = batch.device_id().to_string();
            for reading in batch.readings() {
                docs.push(doc! {
                    "_id": reading_id(&device, reading.seq),
                    "d": device.as_str(),
                    "q": reading.seq.get() as i64,
                    "t": reading.ts.as_millis(),
                    "m": metrics_doc(reading),
                    "j": journal_id.as_str(),
                });
                keys.push((device.clone(), reading));
            }
        }
        if docs.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let journal = self.db.collection::<Document>("journal");
        let ids: Vec<&str> = docs.iter().filter_map(|d| d.get_str("_id").ok()).collect();
        let started = std::time::Instant::now();
        journal
            .insert_one(doc! {"_id": journal_id.as_str(), "ids": ids, "w": now_ms()})
            .await
            .map_err(unavailable)?;
        let journaled = started.elapsed();
        let refused = self.insert(docs).await?;
        tracing::debug!(
            journal_ms = journaled.as_millis(),
            insert_ms = (started.elapsed() - journaled).as_millis(),
            "Inserted readings"
        );

        let mut fresh: BTreeMap<String, Vec<&Reading>> = BTreeMap::new();
        let mut taken = HashSet::new();
        let mut outcome = WriteOutcome::default();
        for (index, (device, reading)) in keys.iter().enumerate() {
            if !refused.contains(&index) && taken.insert((device, reading.seq)) {
                fresh.entry(device.clone()).or_default().push(reading);
                outcome.accepted += 1;
            } else {
                outcome.duplicates += 1;
            }
        }
        self.settle(&fresh, false).await?;
        journal.delete_one(doc! {"_id": journal_id.as_str()}).await.map_err(unavailable)?;
        Ok(outcome)
    }

    async fn latest(&self, device: DeviceId) -> Result<Option<LatestReading>, StoreError> {
        // The pointer is the catalogue's `q`; stores written before it moved there keep theirs
        // in `latest`, so the higher of the two wins.
        let id = device.to_string();
        let (catalogue, legacy) = tokio::try_join!(
            async {
                self.db
                    .collection::<Document>("catalogue")
                    .find_one(doc! {"_id": id.as_str()})
                    .projection(doc! {"q": 1})
                    .await
            },
            async {
                self.db.collection::<Document>("latest").find_one(doc! {"_id": id.as_str()}).await
            },
        )
        .map_err(unavailable)?;
        let newest = [catalogue, legacy]
            .iter()
            .flatten()
            .filter(|pointer| pointer.contains_key("q"))
            .map(|pointer| integer(pointer, "q"))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .max();
        let Some(newest) = newest else { return Ok(None) };
        let seq = seq_from(newest)?;
        let id = reading_id(&device.to_string(), seq);
        // None when retention already removed the newest reading of a long-silent device.
        let Some(doc) = self.readings.find_one(doc! {"_id": id}).await.map_err(unavailable)? else {
            return Ok(None);
        };
        Ok(Some(LatestReading {
            device_id: device,
            ts: timestamp(integer(&doc, "t")?)?,
            seq,
            metrics: metrics_from(&doc)?,
        }))
    }

    async fn metrics(&self, device: DeviceId) -> Result<Vec<MetricSpan>, StoreError> {
        let found = self
            .db
            .collection::<Document>("catalogue")
            .find_one(doc! {"_id": device.to_string()})
            .await
            .map_err(unavailable)?;
        let Some(doc) = found else { return Ok(Vec::new()) };
        let Ok(metrics) = doc.get_document("m") else { return Ok(Vec::new()) };
        let mut spans = metrics
            .iter()
            .map(|(key, span)| {
                let span = span.as_document().ok_or_else(|| corrupt("catalogue entry"))?;
                Ok(MetricSpan {
                    name: MetricName::parse(key.replace('-', "."))
                        .map_err(|e| corrupt(format!("metric name {e}")))?,
                    first_ts: timestamp(integer(span, "f")?)?,
                    last_ts: timestamp(integer(span, "l")?)?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        spans.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(spans)
    }

    async fn raw(
        &self,
        device: DeviceId,
        metric: &MetricName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        let Some((first, last)) = self.span(device, metric).await? else { return Ok(Vec::new()) };
        let Some(range) = Self::clamp(range, first, last.saturating_add(1))? else {
            return Ok(Vec::new());
        };
        let (from, to) = (range.from.as_millis(), range.to.as_millis());
        let (device, key) = (device.to_string(), metric_key(metric));
        let chunks = self.db.collection::<Document>("chunks");
        let listing = doc! {"src": 1, "b": 1};
        let mut points = Vec::new();
        // A couple of hours at a time, in order, so a limited answer reads about what it returns.
        for hours in doc_starts(range, HOUR_MS).chunks(RAW_HOURS_PER_READ) {
            let windows = hours
                .iter()
                .flat_map(|hour| (0..HOUR_MS / WINDOW_MS).map(move |i| hour + i * WINDOW_MS))
                .filter(|start| *start + WINDOW_MS > from && *start < to)
                .map(|start| bucket_id(&device, start))
                .collect();
            let mut docs = self.point_reads(&self.minutes, windows, listing.clone()).await?;
            if let Some(legacy) = &self.legacy_hours {
                let ids = hours.iter().map(|hour| bucket_id(&device, *hour)).collect();
                docs.extend(self.point_reads(legacy, ids, listing.clone()).await?);
            }
            let mut ids = Vec::new();
            for doc in &docs {
                ids.extend(Self::chunk_ids(&device, doc)?);
            }
            let stored = self.point_reads(&chunks, ids, doc! {format!("v.{key}"): 1}).await?;
            let mut found: Vec<(i64, f64, u64)> = Vec::new();
            for chunk in &stored {
                let Some(packed) = chunk.get_document("v").ok().and_then(|v| v.get(&key)) else {
                    continue;
                };
                for (ts, value, seq) in chunk_points(packed)? {
                    if (from..to).contains(&ts) {
                        found.push((ts, value, seq));
                    }
                }
            }
            found.sort_by_key(|(ts, _, seq)| (*ts, *seq));
            for (ts, value, _) in found {
                if points.len() == limit {
                    return Ok(points);
                }
                points.push(Point { ts: timestamp(ts)?, value });
            }
        }
        Ok(points)
    }

    async fn rollups(
        &self,
        device: DeviceId,
        metric: &MetricName,
        tier: Tier,
        range: TimeRange,
    ) -> Result<Vec<Bucket>, StoreError> {
        let Some((first, last)) = self.span(device, metric).await? else { return Ok(Vec::new()) };
        let first_bucket = first - first.rem_euclid(tier.width_ms());
        let Some(range) = Self::clamp(range, first_bucket, last.saturating_add(1))? else {
            return Ok(Vec::new());
        };
        let (device, key) = (device.to_string(), metric_key(metric));
        let projection = doc! {"b": 1, format!("s.{key}"): 1};
        // Keyed by start: a minute may be in a legacy hour document and in a new one.
        let mut buckets: BTreeMap<Timestamp, Bucket> = BTreeMap::new();
        for (collection, width) in self.tier_docs(tier) {
            let ids = doc_starts(range, width).into_iter().map(|s| bucket_id(&device, s)).collect();
            for doc in self.point_reads(collection, ids, projection.clone()).await? {
                for bucket in slots(&doc, &key, tier.width_ms())? {
                    if bucket.start >= range.from && bucket.start < range.to {
                        buckets
                            .entry(bucket.start)
                            .and_modify(|b| b.merge(&bucket))
                            .or_insert(bucket);
                    }
                }
            }
        }
        Ok(buckets.into_values().collect())
    }

    async fn purge(&self, what: Purge, before: Timestamp) -> Result<u64, StoreError> {
        let cutoff = before.as_millis();
        match what {
            Purge::Raw => {
                // Points go a chunk at a time, once the chunk's span (an hour for chunks of
                // legacy hour documents) is wholly before the cutoff: up to an hour more stays.
                self.db
                    .collection::<Document>("chunks")
                    .delete_many(doc! {"b": {"$lte": cutoff - HOUR_MS}})
                    .await
                    .map_err(unavailable)?;
                let deleted = self
                    .readings
                    .delete_many(doc! {"t": {"$lt": cutoff}})
                    .await
                    .map_err(unavailable)?;
                Ok(deleted.deleted_count)
            }
            Purge::Rollup(tier) => {
                let mut deleted = 0;
                for (collection, width) in self.tier_docs(tier) {
                    deleted += purge_slots(collection, width, tier.width_ms(), cutoff).await?;
                }
                Ok(deleted)
            }
        }
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.db.run_command(doc! {"ping": 1}).await.map(drop).map_err(unavailable)
    }

    async fn repair(&self) -> Result<usize, StoreError> {
        MongoStore::repair(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_depend_on_every_seq() {
        let a = signature(&[1, 2, 3]);
        assert_eq!(a, signature(&[1, 2, 3]));
        assert_ne!(a, signature(&[1, 2, 4]));
        assert_ne!(a, signature(&[1, 2]));
    }

    #[test]
    fn documents_cover_a_range() {
        let ts = |ms| Timestamp::from_millis(ms).unwrap();
        let range = TimeRange::new(ts(HOUR_MS + 5), ts(3 * HOUR_MS)).unwrap();
        assert_eq!(doc_starts(range, HOUR_MS), vec![HOUR_MS, 2 * HOUR_MS]);
        let empty = TimeRange::new(ts(HOUR_MS), ts(HOUR_MS)).unwrap();
        assert!(doc_starts(empty, HOUR_MS).is_empty());
    }
}
