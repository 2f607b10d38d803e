//! `edgewatch up` as a user runs it: the real binary, a fresh data directory, loopback ports.
//! Each test starts its own process on port 0 (HTTP) and a free MQTT port.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use edgewatch_protocol::Timestamp;
use serde_json::{Value, json};

struct Up {
    child: Child,
    url: String,
    _lines: mpsc::Receiver<String>,
    banner: Vec<String>,
}

fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgewatch-up-{name}-{}", uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn uuid() -> String {
    format!("{:x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn command(data: &Path, extra: &[&str]) -> Command {
    command_on(data, "127.0.0.1:0", extra)
}

fn command_on(data: &Path, http: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgewatch"));
    cmd.args(["up", "--data-dir"])
        .arg(data)
        .args(["--http", http, "--mqtt", "127.0.0.1:0", "--agent-interval", "0.5"])
        .args(extra)
        .env("EDGEWATCH_LOG__FILTER", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Starts `edgewatch up` and waits for its banner.
fn start(data: &Path, extra: &[&str]) -> Up {
    spawn(command(data, extra))
}

fn spawn(mut command: Command) -> Up {
    let mut child = command.spawn().expect("start edgewatch up");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = Vec::new();
    let mut url = None;
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                if let Some(rest) = line.strip_prefix("edgewatch is up: ") {
                    url = Some(rest.trim().to_owned());
                }
                let done = line.starts_with("Press Ctrl-C");
                banner.push(line);
                if done {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = child.try_wait().unwrap() {
                    panic!("edgewatch up exited early with {status}: {banner:?}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let url = url.unwrap_or_else(|| panic!("no banner within 60 s: {banner:?}"));
    Up { child, url, _lines: lines, banner }
}

impl Up {
    fn password(&self) -> Option<String> {
        self.banner.iter().find_map(|line| {
            let rest = line.trim().strip_prefix("administrator: admin@edgewatch.local / ")?;
            Some(rest.trim().to_owned())
        })
    }

    /// Ctrl-C, and the exit status.
    fn interrupt(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "edgewatch up did not stop within 40 s of Ctrl-C");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

fn login(url: &str, password: &str) -> String {
    let response = client()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": "admin@edgewatch.local", "password": password}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "login with the printed password");
    let body: Value = response.json().unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

fn get(url: &str, token: &str) -> (u16, Value) {
    let response = client().get(url).bearer_auth(token).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

/// Polls `check` every 200 ms until it yields, or fails after `within`.
fn eventually<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_command_brings_up_a_live_system_that_survives_a_restart() {
    let data = data_dir("live");
    let started = Instant::now();
    let up = start(&data, &[]);
    let password = up.password().expect("the first start prints the administrator's password");
    let token = login(&up.url, &password);

    // Within 15 s of the start: this host's agent and the three simulated devices (over MQTT,
    // through the broker and the bridge) are online.
    let within = Duration::from_secs(15).saturating_sub(started.elapsed());
    let host = eventually(within, "the local host and 3 simulated devices online", || {
        let (status, body) = get(&format!("{}/api/v1/devices", up.url), &token);
        assert_eq!(status, 200, "{body}");
        let items = body["items"].as_array()?;
        let online = |kind: &str| {
            items.iter().filter(|d| d["status"] == "online" && d["kind"] == kind).count()
        };
        if online("simulator") < 3 {
            return None;
        }
        items
            .iter()
            .find(|d| d["status"] == "online" && d["kind"] == "host")
            .map(|d| d["id"].as_str().unwrap().to_owned())
    });
    // The simulated local sensors reach the store through the broker and this host's agent.
    // Host metrics and, through the broker and the agent, the simulated local sensors (their
    // readings are separate from the host's, so the latest reading may be either).
    eventually(Duration::from_secs(15), "host and sensor metrics from the local agent", || {
        let (_, body) = get(&format!("{}/api/v1/telemetry/{host}/metrics", up.url), &token);
        let items = body["items"].as_array()?;
        let has = |name: &str| items.iter().any(|m| m["name"] == name);
        (has("cpu.usage_pct") && has("sensor.sim_0000.temp_c")).then_some(())
    });
    let latest = eventually(Duration::from_secs(15), "the local host's readings", || {
        let (status, body) = get(&format!("{}/api/v1/telemetry/{host}/latest", up.url), &token);
        (status == 200).then_some(body)
    });
    let seq_before = latest["seq"].as_u64().unwrap();

    // The gateway's own answers: readiness of all services, one OpenAPI document.
    let ready: Value = client().get(format!("{}/readyz", up.url)).send().unwrap().json().unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let doc: Value =
        client().get(format!("{}/api/v1/openapi.json", up.url)).send().unwrap().json().unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/api/v1/auth/login", "/api/v1/devices", "/api/v1/telemetry/{device_id}/latest"] {
        assert!(paths.contains_key(path), "{path} missing from the merged OpenAPI document");
    }

    // The dashboard (or the page saying how to build it) at `/` and at the app's own routes;
    // unknown API routes keep the contract's error body.
    for page in ["/", "/devices/some-id"] {
        let response = client().get(format!("{}{page}", up.url)).send().unwrap();
        assert_eq!(response.status(), 200, "{page}");
        let html = response.text().unwrap();
        assert!(html.to_lowercase().starts_with("<!doctype html"), "{page}: {html}");
    }
    let response = client().get(format!("{}/api/v1/nope", up.url)).send().unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "not_found", "{body}");

    let status = up.interrupt();
    assert!(status.success(), "Ctrl-C should stop cleanly, got {status}");

    // Restart on the same data: same administrator (no new password), same device, more data.
    let again = start(&data, &["--sim", "0"]);
    assert_eq!(again.password(), None, "the password is printed only once");
    let token = login(&again.url, &password);
    let (status, device) = get(&format!("{}/api/v1/devices/{host}", again.url), &token);
    assert_eq!(status, 200, "{device}");
    eventually(Duration::from_secs(15), "new readings after the restart", || {
        let (_, body) = get(&format!("{}/api/v1/telemetry/{host}/latest", again.url), &token);
        (body["seq"].as_u64()? > seq_before).then_some(())
    });
    let (_, body) = get(&format!("{}/api/v1/devices", again.url), &token);
    let hosts = body["items"].as_array().unwrap().iter().filter(|d| d["kind"] == "host").count();
    assert_eq!(hosts, 1, "a restart must not register this host again: {body}");
    assert!(again.interrupt().success());
}

fn fails_with(mut cmd: Command, expect: &str) {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    let last = stderr.lines().filter(|l| l.starts_with("edgewatch up:")).collect::<Vec<_>>();
    assert_eq!(last.len(), 1, "one error line expected: {stderr}");
    assert!(last[0].contains(expect), "{:?} should mention {expect:?}", last[0]);
}

#[test]
fn a_port_in_use_is_one_line_that_says_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = data_dir("port");
    fails_with(command_on(&data, &format!("127.0.0.1:{port}"), &[]), "--http");
}

#[test]
fn an_unwritable_data_dir_is_one_line_that_says_what_to_do() {
    let data = data_dir("unwritable");
    let file = data.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    fails_with(command(&file, &[]), "--data-dir");
}

#[test]
fn a_corrupt_database_is_one_line_that_says_what_to_do() {
    let data = data_dir("corrupt");
    std::fs::write(data.join("devices.db"), vec![0x42u8; 8192]).unwrap();
    fails_with(command(&data, &[]), "move it aside");
}

#[test]
fn settings_come_from_the_file_then_the_environment_then_flags() {
    let data = data_dir("settings");
    let file = data.join("edgewatch.toml");
    std::fs::write(&file, "admin_email = \"file@example.com\"\nsim = 0\nlocal_agent = false\n")
        .unwrap();
    let config = file.to_str().unwrap();

    let up = start(&data, &["--config", config]);
    assert!(
        up.banner.iter().any(|l| l.contains("administrator: file@example.com / ")),
        "{:?}",
        up.banner
    );
    assert!(up.interrupt().success());

    // The environment beats the file...
    let data = data_dir("settings-env");
    let mut cmd = command(&data, &["--config", config]);
    cmd.env("EDGEWATCH_ADMIN_EMAIL", "env@example.com");
    let up = spawn(cmd);
    assert!(
        up.banner.iter().any(|l| l.contains("administrator: env@example.com / ")),
        "{:?}",
        up.banner
    );
    assert!(up.interrupt().success());

    // ...and a flag beats both: its (bad) address is the one refused.
    let mut cmd = command(&data_dir("settings-flag"), &["--config", config]);
    cmd.env("EDGEWATCH_ADMIN_EMAIL", "env@example.com").args(["--admin-email", "not-an-email"]);
    fails_with(cmd, "not-an-email");
}

/// The promise of the embedded shape: what a device was told is accepted (202) is stored, even
/// when Ctrl-C comes right after, while the readings are still on the bus.
#[test]
fn ctrl_c_right_after_ingest_loses_nothing_acknowledged() {
    let data = data_dir("drain");
    let up = start(&data, &["--sim", "0", "--no-agent"]);
    let password = up.password().unwrap();
    let token = login(&up.url, &password);
    let http = client();
    let (id, secret) = enroll(&up.url, &token, "drain-test");

    const BATCHES: u64 = 9;
    const PER_BATCH: u64 = 1_000;
    // Readings a millisecond apart from the start of the last hour: inside raw retention
    // whatever today's date is.
    let hour = Timestamp::now().as_millis() - 3_600_000;
    let from = Timestamp::from_millis(hour).unwrap().truncate(3_600_000);
    let to = Timestamp::from_millis(from.as_millis() + 3_600_000).unwrap();
    for batch in 0..BATCHES {
        let readings: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                let n = batch * PER_BATCH + i;
                let ts = Timestamp::from_millis(from.as_millis() + n as i64).unwrap();
                json!({"seq": n + 1, "ts": ts, "metrics": {"drain.value": n as f64}})
            })
            .collect();
        let response = http
            .post(format!("{}/api/v1/devices/{id}/telemetry", up.url))
            .bearer_auth(&secret)
            .json(&json!({"device_id": id, "readings": readings}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 202, "{:?}", response.text());
    }
    let url = up.url.clone();
    assert!(up.interrupt().success());
    drop(url);

    let again = start(&data, &["--sim", "0", "--no-agent"]);
    let token = login(&again.url, &password);
    let (status, body) = get(
        &format!("{}/api/v1/telemetry/{id}?metric=drain.value&from={from}&to={to}", again.url),
        &token,
    );
    assert_eq!(status, 200, "{body}");
    let stored = body["points"].as_array().unwrap().len() as u64;
    assert_eq!(stored, BATCHES * PER_BATCH, "every acknowledged reading is stored");
    assert!(again.interrupt().success());
}

/// The dashboard in a real browser against `edgewatch up` (dashboard/e2e/e2e.mjs: Debian's
/// Chromium driven by playwright-core): sign in, the fleet, create a device, enroll a real
/// `edgewatch-agent` with the line the page shows, its live chart over Socket.IO, a config change
/// and the version it applied, delete and the agent refused, and the fleet page's load time with
/// 1,000 devices. Screenshots go to a folder it prints.
#[test]
fn the_dashboard_works_end_to_end_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let agent = Path::new(env!("CARGO_BIN_EXE_edgewatch")).with_file_name("edgewatch-agent");
    assert!(
        agent.exists(),
        "{} is missing: build it first (cargo build -p edgewatch-agent; cargo test --workspace does)",
        agent.display()
    );
    let built = Command::new(root.join("scripts/build-dashboard.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/build-dashboard.sh (needs Node.js 20 and npm)");
    assert!(built.status.success(), "scripts/build-dashboard.sh failed");
    let dist = String::from_utf8(built.stdout).unwrap().trim().to_owned();

    let data = data_dir("browser");
    let up = start(&data, &["--dashboard-dir", &dist]);
    let password = up.password().unwrap();
    let shots = data.join("screenshots");
    let status = Command::new("node")
        .arg(root.join("dashboard/e2e/e2e.mjs"))
        .args(["--base-url", &up.url, "--email", "admin@edgewatch.local", "--password", &password])
        .arg("--agent")
        .arg(&agent)
        .arg("--screenshots")
        .arg(&shots)
        .status()
        .expect("run node (Node.js 20)");
    assert!(status.success(), "the browser test failed (its log is above)");
    eprintln!("screenshots: {}", shots.display());
    assert!(up.interrupt().success());
}

/// The embedded bus is durable: `kill -9` at random moments while devices post readings (also
/// while a restart is still storing what the last one left), 20 times on one data directory;
/// afterwards every reading that was answered 202 is stored, exactly once.
#[test]
fn kill_9_mid_ingest_loses_nothing_acknowledged() {
    use edgewatch_protocol::Timestamp;
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    const ROUNDS: usize = 20;
    const DEVICES: usize = 3;
    const WINDOW_MS: i64 = 5_000;
    let began = Instant::now();
    let data = data_dir("kill9");
    // Reading n of a device is stamped `base + n` ms: well inside raw retention whatever today is.
    let base = Timestamp::now().as_millis() - 30 * 60_000;
    let first = start(&data, &["--sim", "0", "--no-agent"]);
    let password = first.password().unwrap();
    let token = login(&first.url, &password);
    let devices: Vec<(String, String)> =
        (0..DEVICES).map(|i| enroll(&first.url, &token, &format!("kill9-{i}"))).collect();
    let mut first = Some(first);
    let mut next_seq = vec![1u64; DEVICES];
    let mut acked: Vec<Vec<u64>> = vec![Vec::new(); DEVICES];
    for round in 0..ROUNDS {
        let up = first.take().unwrap_or_else(|| start(&data, &["--sim", "0", "--no-agent"]));
        let stop = Arc::new(AtomicBool::new(false));
        let posters: Vec<_> = devices
            .iter()
            .zip(&next_seq)
            .map(|((id, secret), &seq)| {
                let (url, id, secret, stop) =
                    (up.url.clone(), id.clone(), secret.clone(), Arc::clone(&stop));
                std::thread::spawn(move || post_until_gone(&url, &id, &secret, seq, base, &stop))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(30 + rand_u64() % 1_200));
        kill_9(up);
        stop.store(true, Ordering::Relaxed);
        for (device, poster) in posters.into_iter().enumerate() {
            let (accepted, next) = poster.join().expect("poster thread");
            acked[device].extend(accepted);
            next_seq[device] = next;
        }
        assert!(began.elapsed() < Duration::from_secs(400), "round {round}: too slow");
    }
    let total: usize = acked.iter().map(Vec::len).sum();
    assert!(total > ROUNDS, "too few batches were acknowledged to tell anything: {total}");

    let up = start(&data, &["--sim", "0", "--no-agent"]);
    let token = login(&up.url, &password);
    for (device, (id, _)) in devices.iter().enumerate() {
        let expected: Vec<u64> =
            acked[device].iter().flat_map(|first| *first..*first + KILL9_BATCH).collect();
        let end = base + next_seq[device] as i64;
        let counts =
            eventually(Duration::from_secs(90), "every acknowledged reading stored", || {
                let mut counts = std::collections::HashMap::<u64, usize>::new();
                let mut from = base;
                while from < end {
                    let (lo, hi) = (
                        Timestamp::from_millis(from).unwrap(),
                        Timestamp::from_millis(from + WINDOW_MS).unwrap(),
                    );
                    let (status, body) = get(
                        &format!(
                            "{}/api/v1/telemetry/{id}?metric=kill.value&from={lo}&to={hi}",
                            up.url
                        ),
                        &token,
                    );
                    assert_eq!(status, 200, "{body}");
                    for point in body["points"].as_array().unwrap() {
                        *counts.entry(point[1].as_f64().unwrap() as u64).or_default() += 1;
                    }
                    from += WINDOW_MS;
                }
                expected.iter().all(|seq| counts.contains_key(seq)).then_some(counts)
            });
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "device {device}: readings stored more than once: {twice:?}");
        assert!(counts.keys().all(|seq| *seq < next_seq[device]), "a reading nobody sent");
    }
    eprintln!(
        "kill -9 test: {ROUNDS} kills, {} readings acknowledged, all stored once, in {:?}",
        total as u64 * KILL9_BATCH,
        began.elapsed()
    );
    assert!(up.interrupt().success());
}

/// Readings per batch of the `kill -9` test.
const KILL9_BATCH: u64 = 50;

/// Registers and enrolls a device: its id and secret.
fn enroll(url: &str, token: &str, name: &str) -> (String, String) {
    let http = client();
    let created: Value = http
        .post(format!("{url}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"name": name}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let enrolled: Value = http
        .post(format!("{url}/api/v1/devices/enroll"))
        .json(&json!({"enrollment_token": created["enrollment_token"]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let id = enrolled["device_id"].as_str().unwrap().to_owned();
    (id, enrolled["device_secret"].as_str().unwrap().to_owned())
}

/// Posts batches of `KILL9_BATCH` readings from `seq` on until the server is gone (or `stop`):
/// the first seqs of the batches answered 202, and the next unused seq.
fn post_until_gone(
    url: &str,
    id: &str,
    secret: &str,
    mut seq: u64,
    base: i64,
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<u64>, u64) {
    let http = client();
    let mut acked = Vec::new();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let readings: Vec<Value> = (seq..seq + KILL9_BATCH)
            .map(|n| {
                let ts = edgewatch_protocol::Timestamp::from_millis(base + n as i64).unwrap();
                json!({"seq": n, "ts": ts.to_string(), "metrics": {"kill.value": n as f64}})
            })
            .collect();
        let first = seq;
        // Sent or not, these seqs are used: a batch cut off by the kill may have been stored.
        seq += KILL9_BATCH;
        match http
            .post(format!("{url}/api/v1/devices/{id}/telemetry"))
            .bearer_auth(secret)
            .json(&json!({"device_id": id, "readings": readings}))
            .send()
        {
            Ok(response) if response.status() == 202 => acked.push(first),
            Ok(response) if response.status().is_server_error() => {}
            Ok(response) => panic!("batch refused: {} {:?}", response.status(), response.text()),
            Err(_) => break,
        }
    }
    (acked, seq)
}

/// `kill -9`: no shutdown of any kind runs.
fn kill_9(mut up: Up) {
    up.child.kill().expect("SIGKILL edgewatch up");
    up.child.wait().expect("reap edgewatch up");
}
