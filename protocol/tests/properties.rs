//! Property tests of the wire contract: every valid batch survives a JSON round trip, and no
//! input — random bytes, random JSON, or a valid batch with one rule broken — panics the parser
//! or slips through; each broken rule is reported with its field.

use std::collections::{BTreeMap, BTreeSet};

use edgewatch_protocol::{
    Batch, BatchError, DeviceId, MetricName, Problem, Reading, SensorValue, Seq, Tags, Timestamp,
    Topic, limits,
};
use proptest::prelude::*;
use serde_json::Value;

fn metric_name() -> impl Strategy<Value = MetricName> {
    "[a-z0-9_.]{1,40}".prop_map(|s| MetricName::parse(s).expect("strategy yields valid names"))
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![any::<f64>().prop_filter("finite", |v| v.is_finite()), -1e6..1e6f64, Just(0.0)]
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_135_596_800_000i64..=253_402_300_799_999)
        .prop_map(|ms| Timestamp::from_millis(ms).unwrap())
}

fn reading(seq: u64) -> impl Strategy<Value = Reading> {
    (
        timestamp(),
        prop::collection::btree_map(metric_name(), finite(), 1..8),
        prop::collection::btree_map(metric_name(), "[ -~]{0,20}", 0..3),
    )
        .prop_map(move |(ts, metrics, tags)| Reading {
            seq: Seq::new(seq).unwrap(),
            ts,
            metrics,
            tags: tags as Tags,
        })
}

fn batch() -> impl Strategy<Value = Batch> {
    (any::<u128>(), prop::collection::btree_set(0..=limits::MAX_SEQ, 1..20))
        .prop_flat_map(|(id, seqs): (u128, BTreeSet<u64>)| {
            let readings: Vec<_> = seqs.into_iter().map(reading).collect();
            (Just(id), readings)
        })
        .prop_map(|(id, readings)| {
            Batch::new(DeviceId::from(uuid::Uuid::from_u128(id)), readings)
                .expect("valid by construction")
        })
}

/// Any JSON value, a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        finite().prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("device_id".to_owned()),
                    Just("readings".to_owned()),
                    Just("seq".to_owned()),
                    Just("ts".to_owned()),
                    Just("metrics".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn to_value(batch: &Batch) -> Value {
    serde_json::to_value(batch).unwrap()
}

fn parse(value: &Value) -> Result<Batch, BatchError> {
    Batch::from_json(&serde_json::to_vec(value).unwrap())
}

fn field_of(result: Result<Batch, BatchError>) -> (String, Problem) {
    match result {
        Err(BatchError::Invalid { field, problem }) => (field, problem),
        other => panic!("expected an invalid field, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_batches_round_trip(batch in batch()) {
        let bytes = serde_json::to_vec(&batch).unwrap();
        prop_assert_eq!(bytes.len(), batch.encoded_len());
        prop_assert_eq!(Batch::from_json(&bytes).unwrap(), batch.clone());
        let via_serde: Batch = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(via_serde, batch);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Batch::from_json(&bytes);
        let _ = SensorValue::parse(&bytes);
        let _ = Topic::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_json_never_panics_and_never_passes_invalid(value in json()) {
        if let Ok(batch) = parse(&value) {
            // Whatever got through is a batch that obeys every rule.
            prop_assert!(Batch::new(batch.device_id(), batch.readings().to_vec()).is_ok());
        }
    }

    #[test]
    fn a_bad_metric_name_is_named(batch in batch(), index in any::<prop::sample::Index>(), bad in "[A-Z ]{1,5}") {
        let mut value = to_value(&batch);
        let i = index.index(batch.readings().len());
        value["readings"][i]["metrics"].as_object_mut().unwrap().insert(bad, Value::from(1.0));
        let (field, problem) = field_of(parse(&value));
        prop_assert_eq!(field, format!("readings[{i}].metrics"));
        prop_assert!(matches!(problem, Problem::BadName(_)));
    }

    #[test]
    fn a_duplicate_seq_is_named(batch in batch(), index in any::<prop::sample::Index>()) {
        let mut readings = batch.readings().to_vec();
        let copy = readings[index.index(readings.len())].clone();
        let seq = copy.seq.get();
        readings.push(copy);
        let position = readings.len() - 1;
        let (field, problem) = field_of(Batch::new(batch.device_id(), readings.clone()));
        let first = readings.iter().position(|r| r.seq.get() == seq).unwrap();
        // The later of the two copies is blamed.
        let blamed = if first < position { position } else { first };
        prop_assert_eq!(field, format!("readings[{blamed}].seq"));
        prop_assert_eq!(problem, Problem::DuplicateSeq(seq));
    }

    #[test]
    fn non_finite_values_are_named(
        batch in batch(),
        index in any::<prop::sample::Index>(),
        bad in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
    ) {
        let mut readings = batch.readings().to_vec();
        let i = index.index(readings.len());
        let name = readings[i].metrics.keys().next().unwrap().clone();
        readings[i].metrics.insert(name.clone(), bad);
        let (field, problem) = field_of(Batch::new(batch.device_id(), readings));
        prop_assert_eq!(field, format!("readings[{i}].metrics.{name}"));
        prop_assert!(matches!(problem, Problem::NotFinite(_)));
    }

    #[test]
    fn wrong_types_are_named(batch in batch(), index in any::<prop::sample::Index>(), which in 0..3usize) {
        let mut value = to_value(&batch);
        let i = index.index(batch.readings().len());
        let key = ["seq", "ts", "metrics"][which];
        value["readings"][i][key] = Value::Array(vec![]);
        let (field, _) = field_of(parse(&value));
        prop_assert_eq!(field, format!("readings[{i}].{key}"));
    }

    #[test]
    fn seqs_beyond_2_pow_53_are_refused(batch in batch(), extra in (limits::MAX_SEQ + 1)..u64::MAX) {
        let mut value = to_value(&batch);
        value["readings"][0]["seq"] = Value::from(extra);
        let (field, problem) = field_of(parse(&value));
        prop_assert_eq!(field, "readings[0].seq");
        prop_assert_eq!(problem, Problem::SeqTooLarge(extra));
    }
}

#[test]
fn oversize_batches_are_refused_before_anything_else() {
    let reading = |seq: u64| Reading {
        seq: Seq::new(seq).unwrap(),
        ts: Timestamp::from_millis(0).unwrap(),
        metrics: BTreeMap::from([(MetricName::parse("x").unwrap(), 1.0)]),
        tags: Tags::new(),
    };
    let too_many: Vec<_> = (0..=limits::MAX_READINGS as u64).map(reading).collect();
    assert!(matches!(
        Batch::new(DeviceId::new(), too_many),
        Err(BatchError::TooManyReadings { count: 5_001, .. })
    ));
    let mut body = br#"{"device_id":"not checked yet","readings":["#.to_vec();
    body.resize(limits::MAX_BATCH_BYTES + 10, b' ');
    assert!(matches!(Batch::from_json(&body), Err(BatchError::TooLarge { .. })));
}
