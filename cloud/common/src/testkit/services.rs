//! The real servers of the test suite. Their URLs come from `EDGEWATCH_TEST_*` variables, printed
//! by `scripts/services.sh start`. A test that needs a server which is not configured fails with a
//! message saying how to start it: it never skips.

use std::path::PathBuf;

const HOW: &str = "start the test services with `eval \"$(scripts/services.sh start)\"` (or run the \
                   whole suite with `scripts/test.sh`)";

/// The value of a required `EDGEWATCH_TEST_*` variable.
///
/// # Panics
/// When it is not set: the test cannot run without its server.
pub fn require(var: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!("{var} is not set: this test needs a real server; {HOW}"),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A RabbitMQ broker under test: its AMQP URL (for a vhost of its own) and admin API.
struct Rabbit {
    amqp: String,
    admin: String,
}

impl Rabbit {
    /// Creates a fresh vhost with full rights for the default user; returns its AMQP URL.
    async fn fresh_vhost(&self) -> String {
        let vhost = unique("test");
        let admin = reqwest::Client::new();
        let (base, user, password) = split_credentials(&self.admin);
        let put = |path: String, body: serde_json::Value| {
            admin.put(format!("{base}{path}")).basic_auth(&user, Some(&password)).json(&body).send()
        };
        let created =
            put(format!("/api/vhosts/{vhost}"), serde_json::json!({})).await.unwrap_or_else(|e| {
                panic!("cannot reach the RabbitMQ admin API at {base}: {e}; {HOW}")
            });
        assert!(created.status().is_success(), "creating vhost {vhost}: {}", created.status());
        let granted = put(
            format!("/api/permissions/{vhost}/{user}"),
            serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}),
        )
        .await
        .unwrap_or_else(|e| panic!("granting {user} on {vhost}: {e}"));
        assert!(granted.status().is_success(), "granting {user} on {vhost}: {}", granted.status());
        let root = self.amqp.trim_end_matches("%2f").trim_end_matches('/');
        format!("{root}/{vhost}")
    }
}

/// `http://user:password@host:port` -> (`http://host:port`, user, password).
fn split_credentials(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    match rest.split_once('@') {
        Some((credentials, host)) => {
            let (user, password) = credentials.split_once(':').unwrap_or((credentials, ""));
            (format!("{scheme}://{host}"), user.to_owned(), password.to_owned())
        }
        None => (format!("{scheme}://{rest}"), "guest".to_owned(), "guest".to_owned()),
    }
}

/// An AMQP URL for a fresh vhost on the shared test broker.
pub async fn amqp_vhost() -> String {
    Rabbit {
        amqp: require("EDGEWATCH_TEST_AMQP_URL"),
        admin: require("EDGEWATCH_TEST_AMQP_ADMIN_URL"),
    }
    .fresh_vhost()
    .await
}

/// A broker that a test may restart: an AMQP URL for a fresh vhost on it, and the command that
/// restarts it (it returns once the broker serves again).
pub async fn restartable_amqp_vhost() -> (String, PathBuf) {
    let rabbit = Rabbit {
        amqp: require("EDGEWATCH_TEST_AMQP_RESTART_URL"),
        admin: require("EDGEWATCH_TEST_AMQP_RESTART_ADMIN_URL"),
    };
    (rabbit.fresh_vhost().await, PathBuf::from(require("EDGEWATCH_TEST_AMQP_RESTART_CMD")))
}

/// The MongoDB-wire server (FerretDB) and a database name no other test uses.
pub fn mongodb() -> (String, String) {
    (require("EDGEWATCH_TEST_MONGODB_URL"), unique("test"))
}

/// The URL of a fresh MongoDB (FerretDB) database, `mongodb://host:port/<unique name>`.
pub fn mongodb_database() -> String {
    let (url, db) = mongodb();
    format!("{}/{db}", url.trim_end_matches('/'))
}

/// A fresh PostgreSQL database; returns its URL.
pub async fn postgres_database() -> String {
    use sqlx::{Connection, PgConnection};
    let admin_url = require("EDGEWATCH_TEST_POSTGRES_URL");
    let name = unique("test");
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}; {HOW}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let base = admin_url.rsplit_once('/').map_or(admin_url.as_str(), |(base, _)| base);
    format!("{base}/{name}")
}

/// A `sqlite://` URL for a new database file in a fresh temporary directory.
pub fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(unique("edgewatch"));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    format!("sqlite://{}", dir.join(name).display())
}

/// A server of the test's own on a free loopback port, that the test may stop and start again
/// (outage tests) without disturbing the shared ones.
pub struct PrivateServer {
    name: &'static str,
    scheme: &'static str,
    port: u16,
    command: Box<dyn Fn(u16) -> tokio::process::Command + Send + Sync>,
    child: Option<tokio::process::Child>,
}

impl PrivateServer {
    /// Starts the server `command(port)` runs and waits until it listens; `scheme` is its
    /// URL's.
    pub async fn start(
        name: &'static str,
        scheme: &'static str,
        command: impl Fn(u16) -> tokio::process::Command + Send + Sync + 'static,
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
        let mut server = Self { name, scheme, port, command: Box::new(command), child: None };
        server.restart().await;
        server
    }

    /// `<scheme>://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Kills the server: clients see connection errors from now on.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) {
        self.stop().await;
        let child = (self.command)(self.port)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} ({e}); {HOW}", self.name));
        self.child = Some(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not start on {}",
                self.name,
                self.port
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A Redis server of the test's own (empty after each restart).
pub async fn private_redis() -> PrivateServer {
    PrivateServer::start("redis-server", "redis", |port| {
        let mut command = tokio::process::Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        command
    })
    .await
}

/// A FerretDB server of the test's own, keeping its data across restarts.
pub async fn private_ferretdb() -> PrivateServer {
    let binary = require("EDGEWATCH_TEST_FERRETDB_BIN");
    let data = std::env::temp_dir().join(unique("ferretdb"));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("creating {}: {e}", data.display()));
    PrivateServer::start("FerretDB", "mongodb", move |port| {
        let mut command = tokio::process::Command::new(&binary);
        command.args([
            "--listen-addr",
            &format!("127.0.0.1:{port}"),
            "--handler",
            "sqlite",
            "--sqlite-url",
            &format!("file:{}/", data.display()),
        ]);
        command
    })
    .await
}
