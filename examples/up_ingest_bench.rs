//! HTTP ingest into `edgewatch up` as a fleet sends it: the real binary on a fresh data
//! directory (in the temporary directory: put it on a real disk, the bus syncs to it), DEVICES
//! enrolled devices posting batches of 100 readings (5 metrics) as fast as they get answers, for
//! SECONDS. Every 202 means the batch is on the bus (in `bus.db`, synced). Prints readings/s and
//! the latency to 202. Taking the binary as an argument lets two builds be run alternately.
//!
//! Run:
//!   cargo build --release --bin edgewatch
//!   cargo run --release --example up_ingest_bench -- [BINARY] [SECONDS] [DEVICES]

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use edgewatch_protocol::Timestamp;
use serde_json::{Value, json};

const PER_BATCH: u64 = 100;

fn batch(device_id: &str, first_seq: u64, base_ms: i64) -> Vec<u8> {
    let readings: Vec<Value> = (first_seq..first_seq + PER_BATCH)
        .map(|seq| {
            let ts =
                Timestamp::from_millis(base_ms + seq as i64).unwrap_or_else(|_| Timestamp::now());
            json!({"seq": seq, "ts": ts.to_string(),
                   "metrics": {"cpu.usage_pct": 12.5, "mem.used_bytes": 734003200, "load.1m": 0.42,
                               "temp.cpu_thermal_c": 51.3, "net.eth0.rx_bytes": 123456789}})
        })
        .collect();
    serde_json::to_vec(&json!({"device_id": device_id, "readings": readings})).unwrap_or_default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let binary = args.next().map_or_else(
        || std::env::current_exe().map(|exe| exe.with_file_name("../edgewatch")),
        |b| Ok(PathBuf::from(b)),
    )?;
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let devices: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);

    let data = std::env::temp_dir().join(format!("edgewatch-up-bench-{}", rand::random::<u64>()));
    let mut child = Command::new(&binary)
        .args(["up", "--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0", "--sim", "0", "--no-agent"])
        .arg("--data-dir")
        .arg(&data)
        .env("EDGEWATCH_LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (mut url, mut password) = (None, None);
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("edgewatch is up: ") {
            url = Some(rest.trim().to_owned());
        }
        if let Some((_, rest)) = line.split_once("administrator: admin@edgewatch.local / ") {
            password = Some(rest.trim().to_owned());
        }
        if line.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let (Some(url), Some(password)) = (url, password) else {
        let _ = child.kill();
        bail!("no banner from {}", binary.display());
    };

    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let login: Value = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": "admin@edgewatch.local", "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"].as_str().context("no access token")?.to_owned();
    let mut fleet = Vec::new();
    for i in 0..devices {
        let created: Value = http
            .post(format!("{url}/api/v1/devices"))
            .bearer_auth(&token)
            .json(&json!({"name": format!("bench-{i}")}))
            .send()
            .await?
            .json()
            .await?;
        let enrolled: Value = http
            .post(format!("{url}/api/v1/devices/enroll"))
            .json(&json!({"enrollment_token": created["enrollment_token"]}))
            .send()
            .await?
            .json()
            .await?;
        let id = enrolled["device_id"].as_str().context("no device id")?.to_owned();
        let secret = enrolled["device_secret"].as_str().context("no secret")?.to_owned();
        fleet.push((id, secret));
    }

    // Readings stamped over the last hour, inside raw retention whatever the date.
    let base_ms = Timestamp::now().as_millis() - 3_600_000;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = fleet
        .into_iter()
        .map(|(id, secret)| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut refused = 0usize;
                let mut seq = 1;
                while Instant::now() < deadline {
                    let body = batch(&id, seq, base_ms);
                    seq += PER_BATCH;
                    let sent = Instant::now();
                    let response = http
                        .post(format!("{url}/api/v1/devices/{id}/telemetry"))
                        .bearer_auth(&secret)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status() == 202 => latencies.push(sent.elapsed()),
                        _ => refused += 1,
                    }
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut refused = 0;
    for worker in workers {
        let (l, r) = worker.await?;
        latencies.extend(l);
        refused += r;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let batches = latencies.len();
    println!(
        "{}: {devices} devices, {seconds} s: {:.0} readings/s accepted ({batches} batches, {refused} refused), 202 p50 {:.1} ms, p99 {:.1} ms",
        binary.display(),
        (batches as u64 * PER_BATCH) as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
    let _ = Command::new("kill").arg("-INT").arg(child.id().to_string()).status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
