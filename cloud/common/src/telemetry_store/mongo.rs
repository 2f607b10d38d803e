//! The distributed telemetry store on MongoDB (the `mongodb` driver; tested against FerretDB
//! v1.24, which has no multi-document transactions, so nothing here relies on them).
//!
//! Collections:
//! - `readings`: a document per reading, `{_id: "<device>:<seq>", d, q: seq, t: ts_ms,
//!   m: [{k: metric, v: value}], p?: pending_since_ms}`. The `_id` is the unique (device, seq)
//!   key, so a redelivered reading is refused by the server. One document per reading rather
//!   than per point: a batch of 100 readings x 10 metrics is 100 inserts instead of 1,000, the
//!   insert rate is what bounds the consumer, and charts are served from rollups anyway. Metric
//!   names hold dots, which MongoDB reads as paths, hence the `{k, v}` list.
//! - `rollups_1m`, `rollups_1h`: `{_id: "<device>|<metric>|<bucket_ms>", d, m, b, c, s, lo, hi,
//!   src: [signature]}`, maintained with `$inc`/`$min`/`$max` upserts.
//! - `catalogue`: `{_id: "<device>|<metric>", d, m, first, last}` (`$min`/`$max` upserts).
//! - `latest`: `{_id: device, q, t, m}`, replaced only by a higher seq.
//!
//! Exactly once without transactions: `$inc` is not idempotent, so a crash between inserting
//! readings and adding them to the rollups must neither lose nor double their contribution.
//! Readings are inserted with a pending mark `p`; their rollup deltas are applied per bucket with
//! a *signature* (a hash of the contributing seqs) that the bucket records in `src`, and the
//! upsert's filter `{_id, src: {$ne: signature}}` turns a repeated delta into a duplicate-key
//! error the store ignores; then the mark is cleared. A redelivered batch whose readings are
//! still pending (older than [`PENDING_LEASE_MS`], so not in flight elsewhere) finishes their
//! rollups with the same signatures, and [`MongoStore::repair`] sweeps any pending readings
//! left behind. Catalogue and latest upserts are idempotent by construction.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use async_trait::async_trait;
use edgewatch_protocol::{Batch, DeviceId, MetricName, Reading, Seq, Timestamp};
use futures_util::TryStreamExt;
use mongodb::{
    Client, Collection, Database, IndexModel,
    bson::{Bson, Document, doc},
    error::ErrorKind,
    options::ClientOptions,
};

use super::{
    Bucket, LatestReading, MetricSpan, Point, Purge, StoreError, TelemetryStore, Tier, TimeRange,
    WriteOutcome,
};

/// How long a pending reading is presumed to be in the hands of the writer that inserted it.
pub const PENDING_LEASE_MS: i64 = 30_000;
const DUPLICATE_KEY: i32 = 11_000;

pub struct MongoStore {
    db: Database,
    readings: Collection<Document>,
}

fn unavailable(err: mongodb::error::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn rollup_collection(tier: Tier) -> &'static str {
    match tier {
        Tier::Minute => "rollups_1m",
        Tier::Hour => "rollups_1h",
    }
}

fn now_ms() -> i64 {
    Timestamp::now().as_millis()
}

/// FNV-1a over the device and its seqs: the identity of one rollup delta.
fn signature(device: &str, seqs: &[u64]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in device.bytes().chain(seqs.iter().flat_map(|s| s.to_le_bytes())) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

fn reading_id(device: &str, seq: Seq) -> String {
    format!("{device}:{}", seq.get())
}

impl MongoStore {
    /// Connects to `url` (`mongodb://host:port/database`; the database defaults to `edgewatch`)
    /// and creates the indexes queries need.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url).await.map_err(unavailable)?;
        options.server_selection_timeout.get_or_insert(Duration::from_secs(5));
        options.connect_timeout.get_or_insert(Duration::from_secs(5));
        options.app_name.get_or_insert_with(|| "edgewatch".into());
        let db_name = options.default_database.clone().unwrap_or_else(|| "edgewatch".into());
        let client = Client::with_options(options).map_err(unavailable)?;
        let store = Self::with_database(client.database(&db_name));
        store.create_indexes().await?;
        Ok(store)
    }

    fn with_database(db: Database) -> Self {
        Self { readings: db.collection("readings"), db }
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let index = |keys: Document| IndexModel::builder().keys(keys).build();
        self.readings.create_index(index(doc! {"d": 1, "t": 1})).await.map_err(unavailable)?;
        for tier in Tier::ALL {
            self.db
                .collection::<Document>(rollup_collection(tier))
                .create_index(index(doc! {"d": 1, "m": 1, "b": 1}))
                .await
                .map_err(unavailable)?;
        }
        self.db
            .collection::<Document>("catalogue")
            .create_index(index(doc! {"d": 1}))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Inserts the readings; returns the ids the server refused as duplicates.
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

    /// Of the given reading ids, those still pending since before the lease.
    async fn stale_pending(&self, ids: Vec<String>) -> Result<HashSet<String>, StoreError> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<Document> = self
            .readings
            .find(doc! {"_id": {"$in": ids}, "p": {"$lt": now_ms() - PENDING_LEASE_MS}})
            .projection(doc! {"_id": 1})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        found.iter().map(|d| d.get_str("_id").map(str::to_owned).map_err(corrupt)).collect()
    }

    /// Runs an `update` command of many statements; duplicate-key errors (a delta already
    /// applied, a latest already newer) are expected and ignored.
    async fn update(&self, collection: &str, updates: Vec<Document>) -> Result<(), StoreError> {
        for chunk in updates.chunks(1_000) {
            let reply = self
                .db
                .run_command(doc! {"update": collection, "updates": chunk, "ordered": false})
                .await
                .map_err(unavailable)?;
            if let Ok(errors) = reply.get_array("writeErrors") {
                for error in errors {
                    let code = error.as_document().and_then(|e| e.get_i32("code").ok());
                    if code != Some(DUPLICATE_KEY) {
                        return Err(StoreError::Unavailable(format!(
                            "update of {collection} failed: {error}"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies rollups, catalogue and latest for readings that are stored but pending, then
    /// clears their mark. Safe to repeat: see the module doc.
    async fn settle(&self, pending: &BTreeMap<String, Vec<&Reading>>) -> Result<(), StoreError> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut rollups: HashMap<Tier, Vec<Document>> = HashMap::new();
        let mut catalogue = Vec::new();
        let mut latest = Vec::new();
        let mut ids = Vec::new();
        for (device, readings) in pending {
            ids.extend(readings.iter().map(|r| reading_id(device, r.seq)));
            for tier in Tier::ALL {
                let mut buckets: BTreeMap<i64, Vec<&Reading>> = BTreeMap::new();
                for reading in readings {
                    buckets
                        .entry(reading.ts.truncate(tier.width_ms()).as_millis())
                        .or_default()
                        .push(reading);
                }
                for (start, members) in buckets {
                    let mut seqs: Vec<u64> = members.iter().map(|r| r.seq.get()).collect();
                    seqs.sort_unstable();
                    let sig = signature(device, &seqs);
                    let mut per_metric: BTreeMap<&MetricName, Bucket> = BTreeMap::new();
                    for reading in members {
                        for (name, value) in &reading.metrics {
                            let one = Bucket::of(reading.ts, *value);
                            per_metric.entry(name).and_modify(|b| b.merge(&one)).or_insert(one);
                        }
                    }
                    for (name, bucket) in per_metric {
                        let id = format!("{device}|{name}|{start}");
                        rollups.entry(tier).or_default().push(doc! {
                            "q": {"_id": id, "src": {"$ne": sig}},
                            "u": {
                                "$inc": {"c": bucket.count as i64, "s": bucket.sum},
                                "$min": {"lo": bucket.min},
                                "$max": {"hi": bucket.max},
                                "$push": {"src": sig},
                                "$set": {"d": device.as_str(), "m": name.as_str(), "b": start},
                            },
                            "upsert": true,
                        });
                    }
                }
            }
            let mut spans: BTreeMap<&MetricName, (i64, i64)> = BTreeMap::new();
            for reading in readings {
                let ts = reading.ts.as_millis();
                for name in reading.metrics.keys() {
                    spans
                        .entry(name)
                        .and_modify(|(lo, hi)| (*lo, *hi) = ((*lo).min(ts), (*hi).max(ts)))
                        .or_insert((ts, ts));
                }
            }
            for (name, (first, last)) in spans {
                catalogue.push(doc! {
                    "q": {"_id": format!("{device}|{name}")},
                    "u": {
                        "$min": {"first": first},
                        "$max": {"last": last},
                        "$set": {"d": device.as_str(), "m": name.as_str()},
                    },
                    "upsert": true,
                });
            }
            if let Some(newest) = readings.iter().max_by_key(|r| r.seq) {
                let seq = newest.seq.get() as i64;
                latest.push(doc! {
                    "q": {"_id": device.as_str(), "q": {"$lt": seq}},
                    "u": {"$set": {"q": seq, "t": newest.ts.as_millis(), "m": metrics_doc(newest)}},
                    "upsert": true,
                });
            }
        }
        for tier in Tier::ALL {
            self.update(rollup_collection(tier), rollups.remove(&tier).unwrap_or_default()).await?;
        }
        self.update("catalogue", catalogue).await?;
        self.update("latest", latest).await?;
        for chunk in ids.chunks(10_000) {
            self.readings
                .update_many(doc! {"_id": {"$in": chunk}}, doc! {"$unset": {"p": ""}})
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Finishes readings left pending past the lease by a writer that stopped half-way (and
    /// whose batch was not redelivered); returns how many. Run periodically.
    pub async fn repair(&self) -> Result<usize, StoreError> {
        let stale: Vec<Document> = self
            .readings
            .find(doc! {"p": {"$lt": now_ms() - PENDING_LEASE_MS}})
            .limit(10_000)
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        let readings: Vec<(String, Reading)> =
            stale.iter().map(reading_from_doc).collect::<Result<_, _>>()?;
        let mut pending: BTreeMap<String, Vec<&Reading>> = BTreeMap::new();
        for (device, reading) in &readings {
            pending.entry(device.clone()).or_default().push(reading);
        }
        self.settle(&pending).await?;
        Ok(readings.len())
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
            Ok((name, entry.get_f64("v").map_err(corrupt)?))
        })
        .collect()
}

fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millis(ms).map_err(corrupt)
}

fn seq_of(doc: &Document) -> Result<Seq, StoreError> {
    let seq = doc.get_i64("q").map_err(corrupt)?;
    u64::try_from(seq).ok().and_then(|s| Seq::new(s).ok()).ok_or_else(|| corrupt("seq"))
}

fn reading_from_doc(doc: &Document) -> Result<(String, Reading), StoreError> {
    Ok((
        doc.get_str("d").map_err(corrupt)?.to_owned(),
        Reading {
            seq: seq_of(doc)?,
            ts: timestamp(doc.get_i64("t").map_err(corrupt)?)?,
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

#[async_trait]
impl TelemetryStore for MongoStore {
    async fn write(&self, batches: &[Batch]) -> Result<WriteOutcome, StoreError> {
        let now = now_ms();
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
                    "p": now,
                });
                keys.push((device.clone(), reading));
            }
        }
        let refused = self.insert(docs).await?;
        let mut fresh: HashSet<String> = HashSet::new();
        let mut duplicates = Vec::new();
        for (index, (device, reading)) in keys.iter().enumerate() {
            let id = reading_id(device, reading.seq);
            if refused.contains(&index) {
                duplicates.push(id)
            } else {
                fresh.insert(id);
            }
        }
        let outcome = WriteOutcome { accepted: fresh.len(), duplicates: duplicates.len() };
        let recovered = self.stale_pending(duplicates).await?;

        let mut pending: BTreeMap<String, Vec<&Reading>> = BTreeMap::new();
        let mut taken = HashSet::new();
        for (device, reading) in &keys {
            let id = reading_id(device, reading.seq);
            if (fresh.contains(&id) || recovered.contains(&id)) && taken.insert(id) {
                pending.entry(device.clone()).or_default().push(reading);
            }
        }
        self.settle(&pending).await?;
        Ok(outcome)
    }

    async fn latest(&self, device: DeviceId) -> Result<Option<LatestReading>, StoreError> {
        let found = self
            .db
            .collection::<Document>("latest")
            .find_one(doc! {"_id": device.to_string()})
            .await
            .map_err(unavailable)?;
        let Some(doc) = found else { return Ok(None) };
        Ok(Some(LatestReading {
            device_id: device,
            ts: timestamp(doc.get_i64("t").map_err(corrupt)?)?,
            seq: seq_of(&doc)?,
            metrics: metrics_from(&doc)?,
        }))
    }

    async fn metrics(&self, device: DeviceId) -> Result<Vec<MetricSpan>, StoreError> {
        let docs: Vec<Document> = self
            .db
            .collection::<Document>("catalogue")
            .find(doc! {"d": device.to_string()})
            .sort(doc! {"m": 1})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        docs.iter()
            .map(|doc| {
                Ok(MetricSpan {
                    name: MetricName::parse(doc.get_str("m").map_err(corrupt)?.to_owned())
                        .map_err(|e| corrupt(format!("metric name {e}")))?,
                    first_ts: timestamp(doc.get_i64("first").map_err(corrupt)?)?,
                    last_ts: timestamp(doc.get_i64("last").map_err(corrupt)?)?,
                })
            })
            .collect()
    }

    async fn raw(
        &self,
        device: DeviceId,
        metric: &MetricName,
        range: TimeRange,
        limit: usize,
    ) -> Result<Vec<Point>, StoreError> {
        let mut cursor = self
            .readings
            .find(doc! {
                "d": device.to_string(),
                "t": {"$gte": range.from.as_millis(), "$lt": range.to.as_millis()},
                "m.k": metric.as_str(),
            })
            .sort(doc! {"t": 1, "q": 1})
            .projection(doc! {"t": 1, "m": 1})
            .await
            .map_err(unavailable)?;
        let mut points = Vec::new();
        while points.len() < limit {
            let Some(doc) = cursor.try_next().await.map_err(unavailable)? else { break };
            let metrics = metrics_from(&doc)?;
            if let Some(value) = metrics.get(metric) {
                points.push(Point {
                    ts: timestamp(doc.get_i64("t").map_err(corrupt)?)?,
                    value: *value,
                });
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
        let docs: Vec<Document> = self
            .db
            .collection::<Document>(rollup_collection(tier))
            .find(doc! {
                "d": device.to_string(),
                "m": metric.as_str(),
                "b": {"$gte": range.from.as_millis(), "$lt": range.to.as_millis()},
            })
            .sort(doc! {"b": 1})
            .projection(doc! {"src": 0})
            .await
            .map_err(unavailable)?
            .try_collect()
            .await
            .map_err(unavailable)?;
        docs.iter()
            .map(|doc| {
                let count = doc.get_i64("c").map_err(corrupt)?;
                Ok(Bucket {
                    start: timestamp(doc.get_i64("b").map_err(corrupt)?)?,
                    count: u64::try_from(count).map_err(|_| corrupt(format!("count {count}")))?,
                    sum: number(doc, "s")?,
                    min: number(doc, "lo")?,
                    max: number(doc, "hi")?,
                })
            })
            .collect()
    }

    async fn purge(&self, what: Purge, before: Timestamp) -> Result<u64, StoreError> {
        let cutoff = before.as_millis();
        let (collection, filter) = match what {
            Purge::Raw => ("readings", doc! {"t": {"$lt": cutoff}, "p": {"$exists": false}}),
            Purge::Rollup(tier) => (rollup_collection(tier), doc! {"b": {"$lt": cutoff}}),
        };
        let result = self
            .db
            .collection::<Document>(collection)
            .delete_many(filter)
            .await
            .map_err(unavailable)?;
        Ok(result.deleted_count)
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
    fn signatures_depend_on_device_and_every_seq() {
        let a = signature("d1", &[1, 2, 3]);
        assert_eq!(a, signature("d1", &[1, 2, 3]));
        assert_ne!(a, signature("d2", &[1, 2, 3]));
        assert_ne!(a, signature("d1", &[1, 2, 4]));
        assert_ne!(a, signature("d1", &[1, 2]));
    }
}
