//! `kill -9` at random moments while a real agent process appends and acks: afterwards the file
//! is sound, no committed seq is lost or handed out twice, and pending readings have no gaps.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use edgewatch_agent::buffer::{Buffer, BufferOptions};

use super::cloud::temp_dir;

#[derive(Default, Debug)]
struct Seen {
    last_append: Option<(u64, u64)>,
    first_append: Option<(u64, u64)>,
    last_ack: Option<u64>,
}

fn run_and_kill(data_dir: &std::path::Path, after: Duration) -> Seen {
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
        .args(["--data-dir"])
        .arg(data_dir)
        .args(["debug-fill", "--batch", "50", "--ack"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait for the first commit, so every kill lands while the process is busy writing.
    let first = rx.recv_timeout(Duration::from_secs(30)).expect("the child commits something");
    std::thread::sleep(after);
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    reader.join().unwrap();
    let mut seen = Seen::default();
    for line in std::iter::once(first).chain(rx.try_iter()) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (a, b): (u64, u64) = (parts[1].parse().unwrap(), parts[2].parse().unwrap());
        match parts[0] {
            "append" => {
                seen.first_append.get_or_insert((a, b));
                seen.last_append = Some((a, b));
            }
            "ack" => seen.last_ack = Some(b),
            other => panic!("unexpected line {other}"),
        }
    }
    seen
}

#[test]
fn kill_9_during_appends_and_acks_loses_nothing_and_reuses_no_seq() {
    let dir = temp_dir();
    let mut previous_next: Option<u64> = None;
    for round in 0..8 {
        let after = Duration::from_millis(rand::random_range(20..400));
        let seen = run_and_kill(&dir, after);
        let (_, last_printed) = seen.last_append.unwrap();
        if let Some(next) = previous_next {
            assert_eq!(
                seen.first_append.unwrap().0,
                next,
                "round {round}: the restarted process continues exactly at next_seq"
            );
        }
        let buffer = Buffer::open(&dir.join("buffer.db"), BufferOptions::default()).unwrap();
        let problems = buffer.check_integrity().unwrap();
        assert!(problems.is_empty(), "round {round}: {problems:?}");
        let stats = buffer.stats().unwrap();
        assert!(
            stats.next_seq > last_printed,
            "round {round}: committed seq {last_printed} but next_seq is {}",
            stats.next_seq
        );
        let mut pending = Vec::new();
        buffer
            .for_each_pending(|r| {
                pending.push(r.seq.get());
                Ok(())
            })
            .unwrap();
        assert!(!pending.is_empty());
        assert!(
            pending.windows(2).all(|w| w[0] + 1 == w[1]),
            "round {round}: a gap in the pending seqs"
        );
        assert_eq!(
            *pending.last().unwrap(),
            stats.next_seq - 1,
            "round {round}: the newest commit is pending"
        );
        if let Some(acked) = seen.last_ack {
            // Acked readings are gone; at most one ack committed without being printed.
            assert!(pending[0] > acked, "round {round}: acked seq {acked} came back");
            assert!(
                pending[0] <= acked + 1 + 50,
                "round {round}: readings lost below {}",
                pending[0]
            );
        }
        assert_eq!(buffer.depth().0, pending.len() as u64);
        previous_next = Some(stats.next_seq);
    }
}
