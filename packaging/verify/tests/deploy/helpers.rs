//! The stack under test (three services on loopback ports, distributed shape) and the private
//! nginx and Prometheus processes put in front of it. Each test starts its own of everything: its
//! own databases, vhost, ports and data directories, so tests run in parallel.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use edgewatch_common::{
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_devices::DevicesConfig;
use edgewatch_monitoring::{MonitoringConfig, config::RetentionConfig};
use edgewatch_protocol::DeviceId;
use edgewatch_signing::SigningConfig;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

const SERVICE_TOKEN: &str = "deploy-test-service-token-012345";

/// The repository's root (packaging/verify is two levels down).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository")
}

/// A fresh directory of this test's own, readable by nginx's unprivileged workers.
pub fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgewatch-deploy-{what}-{}", DeviceId::new()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// A loopback port nobody listens on right now (bound, read, released).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("an address").port()
}

/// signing, devices and monitoring, each on a loopback port of its own, wired as in compose.
pub struct Stack {
    pub signing: String,
    pub devices: String,
    pub monitoring: String,
    pub client: Client,
    shutdown: Shutdown,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Stack {
    pub async fn start() -> Self {
        let shutdown = Shutdown::new();
        let redis = services::require("EDGEWATCH_TEST_REDIS_URL");
        let namespace = format!("deploy:{}:", DeviceId::new());
        let signing_config = SigningConfig {
            keys_dir: scratch_dir("keys"),
            service_token: SERVICE_TOKEN.into(),
            database_url: services::postgres_database().await,
            cache_url: redis.clone(),
            cache_namespace: namespace.clone(),
            // Behind the gateway, as in compose: the client address is nginx's X-Forwarded-For.
            trust_forwarded_for: true,
            ..SigningConfig::default()
        };
        let (router, _) = edgewatch_signing::build(&signing_config).await.expect("signing");
        let signing = serve_on_loopback(router, &shutdown).await;

        let bus_url = services::amqp_vhost().await;
        let devices_config = DevicesConfig {
            signing_url: signing.clone(),
            service_token: SERVICE_TOKEN.into(),
            database_url: services::postgres_database().await,
            bus_url: bus_url.clone(),
            cache_url: redis.clone(),
            cache_namespace: namespace,
            ..DevicesConfig::default()
        };
        let (router, _) =
            edgewatch_devices::build(&devices_config, &shutdown).await.expect("devices");
        let devices = serve_on_loopback(router, &shutdown).await;

        let monitoring_config = MonitoringConfig {
            signing_url: signing.clone(),
            devices_url: devices.clone(),
            service_token: SERVICE_TOKEN.into(),
            store_url: services::mongodb_database(),
            bus_url,
            live_redis_url: Some(redis),
            live_redis_prefix: format!("deploy-live-{}", DeviceId::new()),
            // Readings carry fixed dates: nothing may age out, whatever today is.
            retention: RetentionConfig::keep_everything(),
            ..MonitoringConfig::default()
        };
        let (router, _) =
            edgewatch_monitoring::build(&monitoring_config, &shutdown).await.expect("monitoring");
        let monitoring = serve_on_loopback(router, &shutdown).await;
        Self { signing, devices, monitoring, client: Client::new(), shutdown }
    }
}

/// `http://127.0.0.1:PORT` -> `127.0.0.1:PORT`.
pub fn host_port(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// Polls `url` until it answers 200 or `seconds` pass; says what `what` is when it never does.
pub async fn wait_until_ok(client: &Client, url: &str, seconds: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Ok(answer) = client.get(url).send().await
            && answer.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not answer {url} in {seconds} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Finds a Debian package's program, or fails saying how to get it.
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} is not installed: `apt-get install {package}` (scripts/services.sh does)");
}

/// A private nginx (own prefix, pid, logs, port) running packaging/nginx's template.
pub struct Nginx {
    pub base: String,
    _child: Child,
}

impl Nginx {
    /// Renders the packaged template with these upstreams (host:port) and starts nginx on a
    /// free loopback port.
    pub async fn start(signing: &str, devices: &str, monitoring: &str) -> Self {
        let template = std::fs::read_to_string(
            repo_root().join("packaging/nginx/templates/edgewatch.conf.template"),
        )
        .expect("the nginx template");
        let mut last_error = String::new();
        // The free port may be taken between our probe and nginx's bind: try a few.
        for _ in 0..3 {
            let port = free_port();
            let dir = scratch_dir("nginx");
            let rendered = template
                .replace("${EDGEWATCH_GATEWAY_LISTEN}", &format!("127.0.0.1:{port}"))
                .replace("${EDGEWATCH_SIGNING_UPSTREAM}", signing)
                .replace("${EDGEWATCH_DEVICES_UPSTREAM}", devices)
                .replace("${EDGEWATCH_MONITORING_UPSTREAM}", monitoring);
            assert!(!rendered.contains("${"), "a template variable is left unsubstituted");
            std::fs::write(dir.join("edgewatch.conf"), rendered).unwrap();
            let d = dir.display();
            // What the official image's nginx.conf provides around conf.d/, with paths of our own.
            let main = format!(
                "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  \
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
                 include {d}/edgewatch.conf;\n}}\n"
            );
            std::fs::write(dir.join("nginx.conf"), main).unwrap();
            let nginx = program("nginx", "nginx");
            let check = Command::new(&nginx)
                .args(["-t", "-q", "-p"])
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .output()
                .await
                .expect("run nginx -t");
            assert!(
                check.status.success(),
                "nginx rejects the configuration: {}",
                String::from_utf8_lossy(&check.stderr)
            );
            let mut child = Command::new(&nginx)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .args(["-g", "daemon off;"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start nginx");
            let base = format!("http://127.0.0.1:{port}");
            let client = Client::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last_error = format!(
                        "nginx exited ({status}): {}",
                        std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
                    );
                    break;
                }
                if client.get(format!("{base}/healthz")).send().await.is_ok() {
                    return Self { base, _child: child };
                }
                if tokio::time::Instant::now() > deadline {
                    last_error = "nginx did not answer within 10 s".into();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("{last_error}");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Nginx {
    /// SIGTERM to the master, which stops its workers; a SIGKILL (kill_on_drop) alone would
    /// leave the workers running, holding the port.
    fn drop(&mut self) {
        if let Some(pid) = self._child.id() {
            let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while matches!(self._child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A private Prometheus with its own data directory and port.
pub struct Prometheus {
    pub base: String,
    _child: Child,
}

impl Prometheus {
    pub async fn start(config: &str) -> Self {
        let dir = scratch_dir("prometheus");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(program("prometheus", "prometheus"))
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus");
        let base = format!("http://127.0.0.1:{port}");
        wait_until_ok(&Client::new(), &format!("{base}/-/ready"), 60, "prometheus").await;
        Self { base, _child: child }
    }

    /// An instant query's result vector.
    pub async fn query(&self, client: &Client, query: &str) -> Vec<Value> {
        let answer: Value = client
            .get(format!("{}/api/v1/query?query={}", self.base, percent_encode(query)))
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(answer["status"], "success", "{answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

/// `text` as a URL query value (every byte but unreserved ones escaped).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A device registered by `token`'s owner and enrolled, through `base` (a service or the
/// gateway); returns (id, secret).
pub async fn enrolled_device(
    client: &Client,
    base: &str,
    token: &str,
    name: &str,
) -> (String, String) {
    let created = client
        .post(format!("{base}/api/v1/devices"))
        .bearer_auth(token)
        .json(&json!({"name": name, "tags": ["greenhouse"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let enrolled = client
        .post(format!("{base}/api/v1/devices/enroll"))
        .json(&json!({"enrollment_token": created["enrollment_token"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(enrolled.status(), StatusCode::OK);
    let enrolled: Value = enrolled.json().await.unwrap();
    assert_eq!(enrolled["device_id"], created["id"]);
    (
        enrolled["device_id"].as_str().unwrap().to_owned(),
        enrolled["device_secret"].as_str().unwrap().to_owned(),
    )
}

/// Posts one reading through `base`; expects 202.
pub async fn ingest(client: &Client, base: &str, id: &str, secret: &str, seq: u64, value: f64) {
    let answer = client
        .post(format!("{base}/api/v1/devices/{id}/telemetry"))
        .bearer_auth(secret)
        .json(&json!({"device_id": id, "readings": [
            {"seq": seq, "ts": format!("2026-11-26T10:00:{:02}Z", seq % 60),
             "metrics": {"sensor.greenhouse.temp_c": value}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED, "{:?}", answer.text().await);
}

/// Waits until the latest stored reading of `id` (asked through `base`) has `seq`.
pub async fn wait_for_seq(client: &Client, base: &str, token: &str, id: &str, seq: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = client
            .get(format!("{base}/api/v1/telemetry/{id}/latest"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        if answer.status() == StatusCode::OK {
            let latest: Value = answer.json().await.unwrap();
            if latest["seq"] == seq {
                return latest;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "seq {seq} never reached the store");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
