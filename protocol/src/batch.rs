//! Readings and batches, the unit of telemetry from device to store.
//!
//! A [`Batch`] can only be built valid: at least one and at most 5,000 readings, at most 1 MiB as
//! JSON, seqs unique inside the batch and below 2^53 (so JavaScript clients read them exactly),
//! every reading with 1..=256 metrics of valid names and finite values. [`Batch::from_json`] is the
//! one parser for untrusted input (HTTP bodies, MQTT payloads, bus messages); it checks the size
//! before it reads anything and reports the first problem with the path of the field, e.g.
//! `readings[3].metrics.cpu.usage_pct`. Unknown fields are ignored, so newer agents can add some.

use std::{
    collections::{BTreeMap, HashSet},
    fmt, io,
};

use serde::{Deserialize, Serialize};

use crate::{
    DeviceId, IdError, MetricName, NameError, Timestamp, TimestampError,
    metric::MAX_METRIC_NAME_LEN,
};

/// The limits of API.md, in one place.
pub mod limits {
    /// Readings in one batch.
    pub const MAX_READINGS: usize = 5_000;
    /// Bytes of one batch as JSON.
    pub const MAX_BATCH_BYTES: usize = 1 << 20;
    /// Metrics in one reading.
    pub const MAX_METRICS: usize = 256;
    /// Tags on one reading.
    pub const MAX_TAGS: usize = 32;
    /// Bytes of one tag value.
    pub const MAX_TAG_VALUE_BYTES: usize = 256;
    /// The largest seq: 2^53 - 1, the largest integer a JSON reader using doubles keeps exact.
    pub const MAX_SEQ: u64 = (1 << 53) - 1;
}

/// A reading's sequence number: per device, strictly increasing across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct Seq(u64);

impl Seq {
    pub fn new(value: u64) -> Result<Self, Problem> {
        if value > limits::MAX_SEQ {
            return Err(Problem::SeqTooLarge(value));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<u64> for Seq {
    type Error = Problem;
    fn try_from(value: u64) -> Result<Self, Problem> {
        Self::new(value)
    }
}

impl From<Seq> for u64 {
    fn from(seq: Seq) -> u64 {
        seq.0
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Free-form labels on a reading (`{"source": "host"}`); keys follow the metric-name rules.
pub type Tags = BTreeMap<MetricName, String>;

/// One observation of a device at one time. Build batches of them with [`Batch::new`], which checks
/// what the field types alone cannot (finite values, counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    pub seq: Seq,
    pub ts: Timestamp,
    pub metrics: BTreeMap<MetricName, f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: Tags,
}

/// A validated batch of readings of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawBatch")]
pub struct Batch {
    device_id: DeviceId,
    readings: Vec<Reading>,
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    #[error("{0}")]
    WrongType(String),
    #[error(transparent)]
    BadId(#[from] IdError),
    #[error(transparent)]
    BadTimestamp(#[from] TimestampError),
    #[error("is not a valid name: it {0}")]
    BadName(#[from] NameError),
    #[error("must be a finite number, not {0}")]
    NotFinite(f64),
    #[error("must not be empty")]
    Empty,
    #[error("has {count} entries; the limit is {limit}")]
    TooMany { count: usize, limit: usize },
    #[error("is {len} bytes long; the limit is {limit}")]
    TooLong { len: usize, limit: usize },
    #[error("seq {0} appears more than once in the batch")]
    DuplicateSeq(u64),
    #[error("{0} is larger than the largest seq, 2^53-1")]
    SeqTooLarge(u64),
}

/// Why a batch was refused. Every variant means nothing of the batch may be stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// Over 1 MiB of JSON: HTTP 413.
    #[error("the batch is {size} bytes; the limit is {limit} bytes: send smaller batches")]
    TooLarge { size: usize, limit: usize },
    /// Over 5,000 readings: HTTP 413.
    #[error("the batch has {count} readings; the limit is {limit}: send smaller batches")]
    TooManyReadings { count: usize, limit: usize },
    /// Not JSON at all: HTTP 400.
    #[error("malformed JSON at line {line}, column {column}: {message}")]
    Malformed { line: usize, column: usize, message: String },
    /// JSON, but a field is missing, of the wrong type or out of its rules: HTTP 422.
    #[error("{field} {problem}")]
    Invalid { field: String, problem: Problem },
}

impl BatchError {
    /// The snake_case code of the contract's error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } | Self::TooManyReadings { .. } => "batch_too_large",
            Self::Malformed { .. } => "malformed_json",
            Self::Invalid { .. } => "invalid_batch",
        }
    }

    /// The field to name in the error body's `fields`, when one is to blame.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::TooManyReadings { .. } => Some("readings"),
            _ => None,
        }
    }

    fn invalid(field: impl Into<String>, problem: impl Into<Problem>) -> Self {
        Self::Invalid { field: field.into(), problem: problem.into() }
    }
}

impl Batch {
    /// Checks every rule of the contract, including the encoded size.
    pub fn new(device_id: DeviceId, readings: Vec<Reading>) -> Result<Self, BatchError> {
        let batch = Self::checked(device_id, readings)?;
        let size = batch.encoded_len();
        if size > limits::MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge { size, limit: limits::MAX_BATCH_BYTES });
        }
        Ok(batch)
    }

    /// Parses untrusted JSON. The size is checked first, so a huge body costs nothing to refuse.
    pub fn from_json(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() > limits::MAX_BATCH_BYTES {
            return Err(BatchError::TooLarge { size: bytes.len(), limit: limits::MAX_BATCH_BYTES });
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawBatch = serde_path_to_error::deserialize(&mut de).map_err(json_error)?;
        de.end().map_err(|e| malformed(&e))?;
        raw.validate()
    }

    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }

    pub fn readings(&self) -> &[Reading] {
        &self.readings
    }

    pub fn into_readings(self) -> Vec<Reading> {
        self.readings
    }

    /// The lowest seq of the batch (batches are never empty).
    pub fn first_seq(&self) -> Seq {
        self.readings.iter().map(|r| r.seq).min().unwrap_or(Seq(0))
    }

    /// The number of bytes of the compact JSON form.
    pub fn encoded_len(&self) -> usize {
        let mut counter = ByteCounter(0);
        // Serializing valid readings into a counter cannot fail.
        let _ = serde_json::to_writer(&mut counter, self);
        counter.0
    }

    fn checked(device_id: DeviceId, readings: Vec<Reading>) -> Result<Self, BatchError> {
        if readings.is_empty() {
            return Err(BatchError::invalid("readings", Problem::Empty));
        }
        if readings.len() > limits::MAX_READINGS {
            return Err(BatchError::TooManyReadings {
                count: readings.len(),
                limit: limits::MAX_READINGS,
            });
        }
        let mut seen = HashSet::with_capacity(readings.len());
        for (i, reading) in readings.iter().enumerate() {
            if !seen.insert(reading.seq) {
                return Err(BatchError::invalid(
                    format!("readings[{i}].seq"),
                    Problem::DuplicateSeq(reading.seq.0),
                ));
            }
            check_reading(i, reading)?;
        }
        Ok(Self { device_id, readings })
    }
}

fn check_reading(i: usize, reading: &Reading) -> Result<(), BatchError> {
    let count = reading.metrics.len();
    if count == 0 {
        return Err(BatchError::invalid(format!("readings[{i}].metrics"), Problem::Empty));
    }
    if count > limits::MAX_METRICS {
        return Err(BatchError::invalid(
            format!("readings[{i}].metrics"),
            Problem::TooMany { count, limit: limits::MAX_METRICS },
        ));
    }
    if let Some((name, value)) = reading.metrics.iter().find(|(_, v)| !v.is_finite()) {
        return Err(BatchError::invalid(
            format!("readings[{i}].metrics.{name}"),
            Problem::NotFinite(*value),
        ));
    }
    let count = reading.tags.len();
    if count > limits::MAX_TAGS {
        return Err(BatchError::invalid(
            format!("readings[{i}].tags"),
            Problem::TooMany { count, limit: limits::MAX_TAGS },
        ));
    }
    if let Some((key, value)) =
        reading.tags.iter().find(|(_, v)| v.len() > limits::MAX_TAG_VALUE_BYTES)
    {
        return Err(BatchError::invalid(
            format!("readings[{i}].tags.{key}"),
            Problem::TooLong { len: value.len(), limit: limits::MAX_TAG_VALUE_BYTES },
        ));
    }
    Ok(())
}

/// The batch as it arrives, before the rules: plain strings, so that each rule can name its field.
#[derive(Deserialize)]
struct RawBatch {
    device_id: String,
    readings: Vec<RawReading>,
}

#[derive(Deserialize)]
struct RawReading {
    seq: u64,
    ts: String,
    metrics: BTreeMap<String, f64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl RawBatch {
    fn validate(self) -> Result<Batch, BatchError> {
        let device_id =
            DeviceId::parse(&self.device_id).map_err(|e| BatchError::invalid("device_id", e))?;
        // Refuse a long list before converting any of it.
        if self.readings.len() > limits::MAX_READINGS {
            return Err(BatchError::TooManyReadings {
                count: self.readings.len(),
                limit: limits::MAX_READINGS,
            });
        }
        let readings = self
            .readings
            .into_iter()
            .enumerate()
            .map(|(i, raw)| raw.validate(i))
            .collect::<Result<Vec<_>, _>>()?;
        Batch::checked(device_id, readings)
    }
}

impl RawReading {
    fn validate(self, i: usize) -> Result<Reading, BatchError> {
        let seq =
            Seq::new(self.seq).map_err(|e| BatchError::invalid(format!("readings[{i}].seq"), e))?;
        let ts = Timestamp::parse(&self.ts)
            .map_err(|e| BatchError::invalid(format!("readings[{i}].ts"), e))?;
        let metrics = named(self.metrics, || format!("readings[{i}].metrics"))?;
        let tags = named(self.tags, || format!("readings[{i}].tags"))?;
        Ok(Reading { seq, ts, metrics, tags })
    }
}

/// Parses the keys of a map as names; an error names `field`.
fn named<V>(
    map: BTreeMap<String, V>,
    field: impl Fn() -> String,
) -> Result<BTreeMap<MetricName, V>, BatchError> {
    map.into_iter()
        .map(|(key, value)| match MetricName::parse(key) {
            Ok(name) => Ok((name, value)),
            Err(e) => Err(BatchError::invalid(field(), e)),
        })
        .collect()
}

impl TryFrom<RawBatch> for Batch {
    type Error = BatchError;
    fn try_from(raw: RawBatch) -> Result<Self, BatchError> {
        raw.validate()
    }
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> BatchError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            // A root that is not an object fails at `.` or `[0]`: blame the whole batch.
            let field =
                if path == "." || path.starts_with('[') { "batch".to_owned() } else { path };
            // serde_json appends " at line L column C"; the field path says more.
            let message = inner.to_string();
            let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
            let message = if message.contains("NaN") || message.contains("out of range") {
                format!("must be a finite number ({message})")
            } else {
                message
            };
            BatchError::invalid(field, Problem::WrongType(message))
        }
        _ => malformed(&inner),
    }
}

fn malformed(err: &serde_json::Error) -> BatchError {
    let message = err.to_string();
    BatchError::Malformed {
        line: err.line(),
        column: err.column(),
        message: message.split(" at line ").next().unwrap_or(&message).to_owned(),
    }
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// Keep the documented bound of names and the limits module in agreement.
const _: () = assert!(MAX_METRIC_NAME_LEN == 128);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const DEVICE: &str = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

    fn reading(seq: u64) -> serde_json::Value {
        json!({"seq": seq, "ts": "2026-11-26T20:00:00.123Z",
               "metrics": {"cpu.usage_pct": 12.5, "mem.used_bytes": 734003200},
               "tags": {"source": "host"}})
    }

    fn parse(value: serde_json::Value) -> Result<Batch, BatchError> {
        Batch::from_json(&serde_json::to_vec(&value).unwrap())
    }

    fn invalid_field(value: serde_json::Value) -> (String, Problem) {
        match parse(value) {
            Err(BatchError::Invalid { field, problem }) => (field, problem),
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_contract_example() {
        let batch = parse(json!({"device_id": DEVICE, "readings": [reading(41)]})).unwrap();
        assert_eq!(batch.device_id().to_string(), DEVICE);
        let r = &batch.readings()[0];
        assert_eq!(r.seq.get(), 41);
        assert_eq!(r.metrics["cpu.usage_pct"], 12.5);
        assert_eq!(r.tags["source"], "host");
        assert_eq!(batch.first_seq().get(), 41);
    }

    #[test]
    fn ignores_unknown_fields() {
        let mut r = reading(1);
        r["future"] = json!(true);
        assert!(parse(json!({"device_id": DEVICE, "readings": [r], "extra": 1})).is_ok());
    }

    #[test]
    fn names_the_field_of_each_problem() {
        let (field, problem) =
            invalid_field(json!({"device_id": "nope", "readings": [reading(1)]}));
        assert_eq!(field, "device_id");
        assert!(matches!(problem, Problem::BadId(_)));

        let (field, problem) = invalid_field(json!({"device_id": DEVICE, "readings": []}));
        assert_eq!((field.as_str(), problem), ("readings", Problem::Empty));

        let mut r = reading(1);
        r["ts"] = json!("last tuesday");
        let (field, problem) = invalid_field(json!({"device_id": DEVICE, "readings": [r]}));
        assert_eq!(field, "readings[0].ts");
        assert!(matches!(problem, Problem::BadTimestamp(_)));

        let mut r = reading(1);
        r["metrics"] = json!({"CPU Usage": 1.0});
        let (field, problem) =
            invalid_field(json!({"device_id": DEVICE, "readings": [reading(0), r]}));
        assert_eq!(field, "readings[1].metrics");
        assert!(matches!(problem, Problem::BadName(NameError::BadChar { .. })));

        let (field, problem) =
            invalid_field(json!({"device_id": DEVICE, "readings": [reading(7), reading(7)]}));
        assert_eq!((field.as_str(), problem), ("readings[1].seq", Problem::DuplicateSeq(7)));

        let (field, problem) =
            invalid_field(json!({"device_id": DEVICE, "readings": [reading(1 << 53)]}));
        assert_eq!((field.as_str(), problem), ("readings[0].seq", Problem::SeqTooLarge(1 << 53)));

        let mut r = reading(1);
        r["metrics"] = json!({});
        let (field, problem) = invalid_field(json!({"device_id": DEVICE, "readings": [r]}));
        assert_eq!((field.as_str(), problem), ("readings[0].metrics", Problem::Empty));
    }

    #[test]
    fn wrong_types_name_the_path() {
        let mut r = reading(1);
        r["metrics"]["cpu.usage_pct"] = json!("high");
        let (field, problem) = invalid_field(json!({"device_id": DEVICE, "readings": [r]}));
        assert_eq!(field, "readings[0].metrics.cpu.usage_pct");
        assert!(matches!(problem, Problem::WrongType(_)));

        let mut r = reading(1);
        r["seq"] = json!(-1);
        let (field, _) = invalid_field(json!({"device_id": DEVICE, "readings": [r]}));
        assert_eq!(field, "readings[0].seq");

        let (field, _) = invalid_field(json!({"device_id": DEVICE}));
        assert_eq!(field, "batch");
        let (field, _) = invalid_field(json!([1, 2]));
        assert_eq!(field, "batch");
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        let text = format!(
            r#"{{"device_id":"{DEVICE}","readings":[{{"seq":1,"ts":"2026-11-26T20:00:00Z","metrics":{{"x":1e999}}}}]}}"#
        );
        match Batch::from_json(text.as_bytes()) {
            Err(BatchError::Invalid { field, problem: Problem::WrongType(msg) }) => {
                assert_eq!(field, "readings[0].metrics.x");
                assert!(msg.contains("finite"), "{msg}");
            }
            Err(BatchError::Malformed { .. }) => {}
            other => panic!("{other:?}"),
        }
        for nan in ["NaN", "Infinity", "-Infinity"] {
            let text = text.replace("1e999", nan);
            assert!(matches!(Batch::from_json(text.as_bytes()), Err(BatchError::Malformed { .. })));
        }
        // And from Rust, where NaN is representable.
        let mut metrics = BTreeMap::new();
        metrics.insert(MetricName::parse("x").unwrap(), f64::NAN);
        let r =
            Reading { seq: Seq::new(1).unwrap(), ts: Timestamp::now(), metrics, tags: Tags::new() };
        match Batch::new(DeviceId::new(), vec![r]) {
            Err(BatchError::Invalid { field, problem: Problem::NotFinite(v) }) => {
                assert_eq!(field, "readings[0].metrics.x");
                assert!(v.is_nan());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_are_enforced() {
        let too_many: Vec<_> = (0..5_001).map(reading).collect();
        assert!(matches!(
            parse(json!({"device_id": DEVICE, "readings": too_many})),
            Err(BatchError::TooManyReadings { count: 5_001, limit: 5_000 })
        ));
        let mut r = reading(1);
        r["metrics"] = (0..257).map(|i| (format!("m{i}"), json!(1.0))).collect();
        let (field, problem) = invalid_field(json!({"device_id": DEVICE, "readings": [r]}));
        assert_eq!(field, "readings[0].metrics");
        assert_eq!(problem, Problem::TooMany { count: 257, limit: 256 });

        let huge = vec![b' '; limits::MAX_BATCH_BYTES + 1];
        assert!(matches!(Batch::from_json(&huge), Err(BatchError::TooLarge { .. })));

        // 4,000 readings of 100 metrics fit the count but not the byte limit.
        let metrics: BTreeMap<_, _> =
            (0..100).map(|i| (MetricName::parse(format!("metric{i}")).unwrap(), 1.5)).collect();
        let readings = (0..4_000)
            .map(|seq| Reading {
                seq: Seq::new(seq).unwrap(),
                ts: Timestamp::now(),
                metrics: metrics.clone(),
                tags: Tags::new(),
            })
            .collect();
        assert!(matches!(Batch::new(DeviceId::new(), readings), Err(BatchError::TooLarge { .. })));
    }

    #[test]
    fn malformed_json_is_a_400_class_error() {
        for bad in [
            &b""[..],
            b"{",
            b"not json",
            b"{\"device_id\": }",
            b"{\"device_id\": \"x\", \"readings\": []} trailing",
        ] {
            match Batch::from_json(bad) {
                Err(e @ BatchError::Malformed { .. }) => assert_eq!(e.code(), "malformed_json"),
                other => panic!("{:?}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }

    #[test]
    fn serializes_to_the_contract_shape() {
        let batch = parse(json!({"device_id": DEVICE, "readings": [reading(41)]})).unwrap();
        let value = serde_json::to_value(&batch).unwrap();
        assert_eq!(
            value,
            json!({"device_id": DEVICE, "readings": [{"seq": 41, "ts": "2026-11-26T20:00:00.123Z",
                "metrics": {"cpu.usage_pct": 12.5, "mem.used_bytes": 734003200.0},
                "tags": {"source": "host"}}]})
        );
        assert_eq!(batch.encoded_len(), serde_json::to_vec(&batch).unwrap().len());
        // Deserialize (used by the bus consumer) applies the same rules.
        let back: Batch = serde_json::from_value(value).unwrap();
        assert_eq!(back, batch);
        assert!(
            serde_json::from_value::<Batch>(json!({"device_id": DEVICE, "readings": []})).is_err()
        );
    }
}
