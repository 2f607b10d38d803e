//! The agent against the real devices service: enrollment, upload, the cloud offline for two
//! minutes then back, a refused batch quarantined, a config change applied live.

use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc, time::Duration};

use edgewatch_agent::{
    buffer::{Buffer, BufferOptions, NewReading, SharedBuffer, Stats},
    config::RuntimeConfig,
    enroll::{self, Credentials},
    run::{self, RunOptions, UplinkKind},
    uplink::{self, http::HttpUplink},
};
use edgewatch_protocol::{MetricName, Timestamp};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::cloud::{Cloud, eventually, temp_dir};

fn stats(dir: &Path) -> Stats {
    Buffer::open(&run::buffer_path(dir), BufferOptions::default()).unwrap().stats().unwrap()
}

fn pending_seqs(dir: &Path) -> Vec<u64> {
    let buffer = Buffer::open(&run::buffer_path(dir), BufferOptions::default()).unwrap();
    let mut seqs = Vec::new();
    buffer
        .for_each_pending(|r| {
            seqs.push(r.seq.get());
            Ok(())
        })
        .unwrap();
    seqs
}

/// Waits until every seq the agent handed out is in the cloud or still pending (the last
/// batches acknowledged may still be on their way through the bus to the consumer).
async fn assert_no_gaps(cloud: &Cloud, device: edgewatch_protocol::DeviceId, dir: &Path) {
    let next_seq = stats(dir).next_seq;
    let pending = pending_seqs(dir);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut all: Vec<u64> = cloud.seqs_of(device).into_iter().chain(pending.clone()).collect();
        all.sort_unstable();
        all.dedup();
        if all.windows(2).all(|w| w[0] + 1 == w[1]) && all.last().is_some_and(|l| l + 1 == next_seq)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a gap in the seqs (next_seq {next_seq}): {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn enrolled(cloud: &Cloud, dir: &Path) -> Credentials {
    let (_, token) = cloud.device("pi-greenhouse").await;
    let path = dir.join("credentials.json");
    let client = reqwest::Client::new();
    let credentials = enroll::enroll(&client, &cloud.url(), &token, &path).await.unwrap();
    assert_eq!(Credentials::load(&path).unwrap(), credentials);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "credentials must be readable by the owner only");
    // The token was for one use.
    let again = enroll::enroll(&client, &cloud.url(), &token, &dir.join("other.json")).await;
    assert!(
        matches!(again, Err(edgewatch_agent::AgentError::Refused { status: 401, .. })),
        "{again:?}"
    );
    credentials
}

pub fn options(dir: &Path, interval: Duration) -> RunOptions {
    RunOptions {
        data_dir: dir.to_owned(),
        credentials: dir.join("credentials.json"),
        uplink: UplinkKind::Http,
        buffer: BufferOptions::default(),
        config: RuntimeConfig { interval, ..RuntimeConfig::default() },
        config_poll: Duration::from_millis(200),
        server: None,
        sensors: None,
        mqtt_ca: None,
        metrics: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_drains_without_gaps_or_duplicates_after_the_cloud_was_offline() {
    let mut cloud = Cloud::start().await;
    let dir = temp_dir();
    let credentials = enrolled(&cloud, &dir).await;
    let device = credentials.device_id;
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run::run(options(&dir, Duration::from_millis(100)), shutdown.clone()));

    eventually(Duration::from_secs(20), "readings in the cloud", || {
        cloud.seqs_of(device).len() >= 5
    })
    .await;
    // Minutes, as the issue asks: long enough for the retry backoff to reach its cap (60 s) and
    // for 1,000+ readings to pile up at 10 a second.
    cloud.go_offline().await;
    let before = cloud.seqs_of(device).len();
    tokio::time::sleep(Duration::from_secs(120)).await;
    let offline = stats(&dir);
    assert!(offline.pending_readings >= 1_000, "readings pile up while offline: {offline:?}");
    assert!(offline.link_state.as_deref().unwrap_or("").starts_with("down"), "{offline:?}");
    assert_eq!(cloud.seqs_of(device).len(), before);

    cloud.come_back().await;
    eventually(Duration::from_secs(90), "the backlog to drain", || {
        let s = stats(&dir);
        s.pending_readings <= 1 && s.link_state.as_deref() == Some("up")
    })
    .await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();

    assert_no_gaps(&cloud, device, &dir).await;
    let received = cloud.seqs_of(device);
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "sent oldest first, none twice: {received:?}"
    );
    assert!(received.len() > before + 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_the_cloud_refuses_is_quarantined_not_retried_forever() {
    let cloud = Cloud::start().await;
    let dir = temp_dir();
    let mine = enrolled(&cloud, &dir).await;
    let (other, _) = cloud.device("someone-else").await;
    let buffer = Buffer::open(&run::buffer_path(&dir), BufferOptions::default()).unwrap();
    let buffer = SharedBuffer::new(buffer);
    let name = MetricName::parse("sensor.t.temp_c").unwrap();
    buffer
        .with(move |b| {
            b.append(vec![NewReading {
                ts: Timestamp::now(),
                metrics: [(name, 21.5)].into(),
                tags: Default::default(),
            }])
        })
        .await
        .unwrap();
    // Batches labelled with another device's id, posted with this device's credential: the
    // service answers 403, a refusal of the batch itself.
    let uplink =
        Arc::new(HttpUplink::new(&cloud.url(), mine.device_id, &mine.device_secret).unwrap());
    let (_tx, config) = watch::channel(RuntimeConfig::default());
    let shutdown = CancellationToken::new();
    let drain = tokio::spawn(uplink::drain(
        buffer.clone(),
        uplink,
        other,
        config,
        Arc::new(Notify::new()),
        shutdown.clone(),
    ));
    eventually(Duration::from_secs(10), "the batch in quarantine", || {
        stats(&dir).quarantined_batches == 1
    })
    .await;
    shutdown.cancel();
    drain.await.unwrap();
    let s = stats(&dir);
    assert_eq!((s.pending_readings, s.quarantined_readings, s.uploaded_readings), (0, 1, 0));
    let kept = buffer.with(|b| b.quarantined()).await.unwrap();
    assert_eq!(kept[0].status, 403);
    assert!(kept[0].reason.contains("not"), "{}", kept[0].reason);
    assert!(cloud.received.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_is_applied_live_and_reported() {
    let cloud = Cloud::start().await;
    let dir = temp_dir();
    let credentials = enrolled(&cloud, &dir).await;
    let device = credentials.device_id;
    let shutdown = CancellationToken::new();
    // One collection a minute, and only memory metrics...
    let agent = tokio::spawn(run::run(options(&dir, Duration::from_secs(60)), shutdown.clone()));
    eventually(Duration::from_secs(20), "the first reading", || !cloud.seqs_of(device).is_empty())
        .await;
    // ...until the cloud says every 100 ms, memory only.
    let config = serde_json::json!({"interval_s": 0.1, "collectors": ["mem"]});
    let view = cloud
        .core
        .set_config(&cloud.admin, device, config.as_object().unwrap().clone())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "readings at the new interval", || {
        cloud.seqs_of(device).len() >= 10
    })
    .await;
    assert_eq!(stats(&dir).config_version, Some(view.version));
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    let last = cloud.readings_of(device).pop().unwrap();
    assert!(
        last.metrics
            .keys()
            .all(|k| k.as_str().starts_with("mem.") || k.as_str().starts_with("swap.")),
        "only the memory collector is on: {:?}",
        last.metrics.keys().collect::<Vec<_>>()
    );
    let buffer = Buffer::open(&run::buffer_path(&dir), BufferOptions::default()).unwrap();
    let remote = buffer.remote_config().unwrap().unwrap();
    assert_eq!(remote.version, view.version);
}

fn spawn_http_agent(dir: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"))
        .arg("--data-dir")
        .arg(dir)
        .args(["run", "--uplink", "http", "--interval", "0.1", "--drain-rate", "100"])
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_uploads_loses_no_seq() {
    let cloud = Cloud::start().await;
    let dir = temp_dir();
    let device = enrolled(&cloud, &dir).await.device_id;
    // A slow drain (100 readings/s, batches sent as soon as allowed) keeps uploads in flight.
    for round in 0..3 {
        let mut agent = spawn_http_agent(&dir);
        let before = cloud.seqs_of(device).len();
        eventually(Duration::from_secs(20), "uploads in progress", || {
            cloud.seqs_of(device).len() >= before + 5
        })
        .await;
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..300))).await;
        agent.kill().unwrap(); // SIGKILL, wherever it is
        agent.wait().unwrap();
        let buffer = Buffer::open(&run::buffer_path(&dir), BufferOptions::default()).unwrap();
        assert!(buffer.check_integrity().unwrap().is_empty(), "round {round}");
    }
    let before = cloud.seqs_of(device).len();
    let mut agent = spawn_http_agent(&dir);
    // Uploads from this process (so it is up, and its SIGTERM handler too), then an empty backlog.
    eventually(Duration::from_secs(30), "the backlog to drain", || {
        cloud.seqs_of(device).len() >= before + 3 && stats(&dir).pending_readings <= 2
    })
    .await;
    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &agent.id().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert!(agent.wait().unwrap().success());

    // At least once: a batch whose 202 was lost with the process is sent again; the store
    // dedupes on (device_id, seq). Nothing may be missing.
    assert_no_gaps(&cloud, device, &dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_collection_and_it_resumes_when_space_returns() {
    let mut cloud = Cloud::start().await;
    let dir = temp_dir();
    let device = enrolled(&cloud, &dir).await.device_id;
    cloud.go_offline().await;
    let mut options = options(&dir, Duration::from_millis(100));
    // A 64 KiB ceiling on the file stands in for a full disk: SQLite answers SQLITE_FULL.
    options.buffer.max_file_bytes = Some(64 * 1024);
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run::run(options, shutdown.clone()));

    // Full: the depth stops growing while the agent keeps running.
    let mut last = 0;
    let mut steady = 0;
    // Under load an append now and then still finds a free page; allow time for a quiet second.
    eventually(Duration::from_secs(90), "the buffer to fill up", || {
        let now = stats(&dir).pending_readings;
        steady = if now == last && now > 0 { steady + 1 } else { 0 };
        last = now;
        steady >= 20
    })
    .await;
    assert!(!agent.is_finished(), "the agent keeps running on a full disk");

    let back = Timestamp::now();
    cloud.come_back().await;
    eventually(Duration::from_secs(60), "readings collected after space returned", || {
        cloud.readings_of(device).iter().any(|r| r.ts > back)
    })
    .await;
    shutdown.cancel();
    agent.await.unwrap().unwrap();
    // Refused cycles must not have used up seqs.
    assert_no_gaps(&cloud, device, &dir).await;
}

/// The value of an unlabelled sample in a Prometheus text answer.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_agents_counters() {
    let mut cloud = Cloud::start().await;
    let dir = temp_dir();
    enrolled(&cloud, &dir).await;
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut options = options(&dir, Duration::from_millis(100));
    options.metrics = Some(addr);
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(run::run(options, shutdown.clone()));
    let url = format!("http://{addr}/metrics");
    let scrape = || async {
        let answer = reqwest::get(&url).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
        answer.text().await.unwrap()
    };

    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sample(&text, "edgewatch_agent_uploaded_readings_total").unwrap_or(0.0) < 5.0 {
        assert!(tokio::time::Instant::now() < deadline, "no uploads counted: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = scrape().await;
    }
    assert_eq!(sample(&text, "edgewatch_agent_link_up"), Some(1.0), "{text}");
    assert!(sample(&text, "edgewatch_agent_last_upload_timestamp_seconds").is_some(), "{text}");
    assert!(text.contains("edgewatch_agent_dropped_readings_total{policy=\"oldest\"} 0"), "{text}");

    // The cloud goes away: the link is down and readings pile up, as the scrape says.
    cloud.go_offline().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        text = scrape().await;
        if sample(&text, "edgewatch_agent_link_up") == Some(0.0)
            && sample(&text, "edgewatch_agent_pending_readings").unwrap_or(0.0) >= 5.0
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the outage is not visible: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(sample(&text, "edgewatch_agent_oldest_pending_timestamp_seconds").is_some(), "{text}");

    // Anything but GET /metrics is a 404; an endless request head is cut off.
    let other = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(other.status(), 404);
    let long = reqwest::Client::new().get(&url).header("x-pad", "a".repeat(16 << 10)).send().await;
    assert_eq!(long.unwrap().status(), 431);

    shutdown.cancel();
    agent.await.unwrap().unwrap();
}
