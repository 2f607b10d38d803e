use std::path::PathBuf;

use super::*;

pub(crate) fn temp_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("edgewatch-agent-{}", edgewatch_protocol::DeviceId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn reading(value: f64) -> NewReading {
    NewReading {
        ts: Timestamp::now(),
        metrics: BTreeMap::from([(MetricName::parse("cpu.usage_pct").unwrap(), value)]),
        tags: Tags::new(),
    }
}

fn readings(n: usize) -> Vec<NewReading> {
    (0..n).map(|i| reading(i as f64)).collect()
}

fn pending_seqs(buffer: &Buffer) -> Vec<u64> {
    let mut seqs = Vec::new();
    buffer
        .for_each_pending(|r| {
            seqs.push(r.seq.get());
            Ok(())
        })
        .unwrap();
    seqs
}

fn pending_values(buffer: &Buffer) -> Vec<f64> {
    let mut values = Vec::new();
    buffer
        .for_each_pending(|r| {
            values.push(r.metrics["cpu.usage_pct"]);
            Ok(())
        })
        .unwrap();
    values
}

#[test]
fn seqs_are_consecutive_and_survive_a_restart() {
    let path = temp_file("buffer.db");
    let (first_run_last, depth) = {
        let mut buffer = Buffer::open(&path, BufferOptions::default()).unwrap();
        let a = buffer.append(readings(3)).unwrap();
        let b = buffer.append(readings(2)).unwrap();
        let (a0, a1) = a.seqs.unwrap();
        let (b0, b1) = b.seqs.unwrap();
        assert_eq!(a1.get() - a0.get(), 2);
        assert_eq!(b0.get(), a1.get() + 1);
        // Acknowledged readings leave, but their seqs are never handed out again.
        buffer.ack(b0, b1).unwrap();
        (b1.get(), buffer.depth())
    };
    let mut buffer = Buffer::open(&path, BufferOptions::default()).unwrap();
    assert_eq!(buffer.depth(), depth, "the reopened buffer counts the same pending readings");
    let c = buffer.append(readings(1)).unwrap();
    assert_eq!(c.seqs.unwrap().0.get(), first_run_last + 1);
    assert!(buffer.check_integrity().unwrap().is_empty());
}

#[test]
fn a_new_file_starts_counting_from_the_clock() {
    let mut buffer = Buffer::open(&temp_file("b.db"), BufferOptions::default()).unwrap();
    let first = buffer.append(readings(1)).unwrap().seqs.unwrap().0.get();
    let floor = (now_ms() as u64 - 60_000) * 1000;
    assert!(first > floor, "seq {first} should start from unix ms * 1000");
    assert!(first <= limits::MAX_SEQ);
}

#[test]
fn peek_returns_the_oldest_and_only_ack_deletes() {
    let mut buffer = Buffer::open(&temp_file("b.db"), BufferOptions::default()).unwrap();
    buffer.append(readings(10)).unwrap();
    let batch = buffer.peek(4, u64::MAX).unwrap().unwrap();
    assert_eq!(batch.readings.len(), 4);
    assert_eq!(batch.readings[0].metrics["cpu.usage_pct"], 0.0);
    // Peeking again without an ack sees the same batch: a failed upload loses nothing.
    assert_eq!(buffer.peek(4, u64::MAX).unwrap().unwrap(), batch);
    assert_eq!(buffer.ack(batch.first, batch.last).unwrap(), 4);
    let next = buffer.peek(100, u64::MAX).unwrap().unwrap();
    assert_eq!(next.first.get(), batch.last.get() + 1);
    assert_eq!(next.readings.len(), 6);
    // A byte budget smaller than one reading still returns one reading.
    assert_eq!(buffer.peek(100, 1).unwrap().unwrap().readings.len(), 1);
    let stats = buffer.stats().unwrap();
    assert_eq!(stats.uploaded_readings, 4);
    assert!(stats.last_upload.is_some());
    buffer.ack(next.first, next.last).unwrap();
    assert_eq!(buffer.peek(100, u64::MAX).unwrap(), None);
    assert_eq!(buffer.depth(), (0, 0));
}

#[test]
fn drop_oldest_keeps_the_newest_within_the_row_cap() {
    let options = BufferOptions { max_rows: 5, ..BufferOptions::default() };
    let mut buffer = Buffer::open(&temp_file("b.db"), options).unwrap();
    buffer.append(readings(3)).unwrap();
    let outcome = buffer.append((10..15).map(|i| reading(f64::from(i))).collect()).unwrap();
    assert_eq!(outcome.stored, 5);
    assert_eq!(outcome.dropped_oldest, 3);
    assert_eq!(pending_values(&buffer), vec![10.0, 11.0, 12.0, 13.0, 14.0]);
    assert_eq!(buffer.stats().unwrap().dropped_oldest, 3);
    assert_eq!(buffer.depth().0, 5);
}

#[test]
fn drop_oldest_keeps_the_byte_cap() {
    let mut probe = Buffer::open(&temp_file("b.db"), BufferOptions::default()).unwrap();
    probe.append(readings(1)).unwrap();
    let one = probe.depth().1;
    let options = BufferOptions { max_bytes: one * 4, ..BufferOptions::default() };
    let path = temp_file("b.db");
    let mut buffer = Buffer::open(&path, options.clone()).unwrap();
    for i in 0..10 {
        buffer.append(vec![reading(f64::from(i))]).unwrap();
        assert!(buffer.depth().1 <= one * 4);
    }
    assert_eq!(pending_values(&buffer), vec![6.0, 7.0, 8.0, 9.0]);
    assert_eq!(buffer.stats().unwrap().dropped_oldest, 6);
    // The count on disk agrees with the one in memory after a restart.
    drop(buffer);
    let reopened = Buffer::open(&path, options).unwrap();
    assert_eq!(reopened.depth(), (4, one * 4));
    assert_eq!(reopened.stats().unwrap().dropped_oldest, 6);
}

#[test]
fn drop_newest_refuses_what_does_not_fit_and_reuses_no_seq() {
    let options =
        BufferOptions { max_rows: 4, policy: DropPolicy::DropNewest, ..BufferOptions::default() };
    let mut buffer = Buffer::open(&temp_file("b.db"), options).unwrap();
    let first = buffer.append(readings(3)).unwrap();
    let second = buffer.append((10..13).map(|i| reading(f64::from(i))).collect()).unwrap();
    assert_eq!((second.stored, second.dropped_newest), (1, 2));
    assert_eq!(pending_values(&buffer), vec![0.0, 1.0, 2.0, 10.0]);
    let full = buffer.append(readings(1)).unwrap();
    assert_eq!((full.stored, full.dropped_newest, full.seqs), (0, 1, None));
    assert_eq!(buffer.stats().unwrap().dropped_newest, 3);
    // Once room returns, seqs continue right after the last stored one: no gap, no reuse.
    let (a, b) = buffer.peek(2, u64::MAX).map(|p| p.map(|p| (p.first, p.last))).unwrap().unwrap();
    buffer.ack(a, b).unwrap();
    let later = buffer.append(readings(1)).unwrap();
    assert_eq!(later.seqs.unwrap().0.get(), first.seqs.unwrap().1.get() + 2);
    let seqs = pending_seqs(&buffer);
    assert!(seqs.windows(2).all(|w| w[0] + 1 == w[1]), "{seqs:?}");
}

#[test]
fn quarantine_moves_a_batch_aside_and_counts_it() {
    let options = BufferOptions { quarantine_max: 2, ..BufferOptions::default() };
    let mut buffer = Buffer::open(&temp_file("b.db"), options).unwrap();
    buffer.append(readings(6)).unwrap();
    for _ in 0..3 {
        let batch = buffer.peek(2, u64::MAX).unwrap().unwrap();
        buffer.quarantine(batch.first, batch.last, 422, "invalid_batch: bad").unwrap();
    }
    assert_eq!(buffer.depth(), (0, 0));
    let kept = buffer.quarantined().unwrap();
    assert_eq!(kept.len(), 2, "only the newest quarantine_max batches are kept");
    assert_eq!(kept[0].status, 422);
    assert_eq!(kept[1].readings, 2);
    let stats = buffer.stats().unwrap();
    assert_eq!((stats.quarantined_batches, stats.quarantined_readings), (3, 6));
    assert_eq!(stats.quarantine_evicted, 1);
    assert!(buffer.check_integrity().unwrap().is_empty());
}

#[test]
fn invalid_readings_are_refused_whole() {
    let mut buffer = Buffer::open(&temp_file("b.db"), BufferOptions::default()).unwrap();
    let err = buffer.append(vec![reading(1.0), reading(f64::NAN)]).unwrap_err();
    assert!(matches!(err, AgentError::InvalidReading(_)), "{err}");
    let empty = NewReading { ts: Timestamp::now(), metrics: BTreeMap::new(), tags: Tags::new() };
    assert!(buffer.append(vec![empty]).is_err());
    assert_eq!(buffer.depth(), (0, 0));
}

#[test]
fn a_full_disk_refuses_writes_without_damage_and_recovers() {
    let path = temp_file("b.db");
    let tight = BufferOptions { max_file_bytes: Some(256 * 1024), ..BufferOptions::default() };
    let mut buffer = Buffer::open(&path, tight).unwrap();
    let mut stored = 0;
    let err = loop {
        match buffer.append(readings(200)) {
            Ok(outcome) => stored += outcome.stored,
            Err(err) => break err,
        }
        assert!(stored < 1_000_000, "the ceiling was never hit");
    };
    assert!(matches!(err, AgentError::DiskFull), "{err}");
    assert_eq!(buffer.depth().0, stored, "a failed append stores nothing");
    // Still usable for reads and for making room: acks are how space comes back.
    let batch = buffer.peek(100, u64::MAX).unwrap().unwrap();
    let last_before = buffer.stats().unwrap().next_seq;
    drop(buffer);
    let mut buffer = Buffer::open(&path, BufferOptions::default()).unwrap();
    assert!(buffer.check_integrity().unwrap().is_empty());
    assert_eq!(buffer.depth().0, stored);
    buffer.ack(batch.first, batch.last).unwrap();
    let again = buffer.append(readings(200)).unwrap();
    assert_eq!(again.seqs.unwrap().0.get(), last_before, "no seq lost or reused");
}
