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
    /// The signal that asks the server to stop (`kill -<signal>`); `None` kills it at once.
    stop_signal: Option<&'static str>,
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
        let mut server =
            Self { name, scheme, port, command: Box::new(command), child: None, stop_signal: None };
        server.restart().await;
        server
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `<scheme>://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    /// Stops the server: clients see connection errors from now on. A server with a stop signal
    /// gets it first and a few seconds to exit (PostgreSQL killed outright can leave its
    /// shared memory behind and refuse to start again); it is killed after that.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let (Some(signal), Some(pid)) = (self.stop_signal, child.id()) {
            let asked = tokio::process::Command::new("kill")
                .args([format!("-{signal}"), pid.to_string()])
                .status()
                .await
                .is_ok_and(|status| status.success());
            if asked
                && tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
                    .await
                    .is_ok()
            {
                return;
            }
        }
        let _ = child.kill().await;
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

/// A PostgreSQL server of the test's own: a fresh cluster in a temporary directory (trust
/// authentication, user `postgres`), on a free loopback port, keeping its data across restarts.
/// Outage tests stop it (fast shutdown: every connection is closed) and start it again.
pub struct PrivatePostgres {
    server: PrivateServer,
}

/// A private PostgreSQL (see [`PrivatePostgres`]), serving once this returns.
///
/// # Panics
/// When PostgreSQL's programs are not installed (`scripts/services.sh` installs them) or the
/// cluster cannot be made.
pub async fn private_postgres() -> PrivatePostgres {
    use std::os::unix::process::CommandExt;
    let bin = postgres_bin();
    let data = std::env::temp_dir().join(unique("postgres"));
    std::fs::create_dir_all(&data).unwrap_or_else(|e| panic!("creating {}: {e}", data.display()));
    // PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` user.
    let owner = running_as_root().then(postgres_user);
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&data, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", data.display()));
    }
    let mut initdb = std::process::Command::new(bin.join("initdb"));
    initdb.args(["-U", "postgres", "-A", "trust", "--no-sync", "-D"]).arg(&data);
    if let Some((uid, gid)) = owner {
        initdb.uid(uid).gid(gid);
    }
    let made = initdb.output().unwrap_or_else(|e| panic!("cannot run initdb ({e}); {HOW}"));
    assert!(made.status.success(), "initdb failed: {}", String::from_utf8_lossy(&made.stderr));
    let mut server = PrivateServer::start("PostgreSQL", "postgres", move |port| {
        let mut command = tokio::process::Command::new(bin.join("postgres"));
        command.arg("-D").arg(&data).arg("-k").arg(&data).args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=100",
        ]);
        if let Some((uid, gid)) = owner {
            command.uid(uid).gid(gid);
        }
        command
    })
    .await;
    // SIGINT: PostgreSQL's fast shutdown.
    server.stop_signal = Some("INT");
    let postgres = PrivatePostgres { server };
    postgres.wait_until_serving().await;
    postgres
}

impl PrivatePostgres {
    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.server.port())
    }

    /// Stops it (fast shutdown): connections drop, new ones are refused.
    pub async fn stop(&mut self) {
        self.server.stop().await;
    }

    /// Starts it again on the same port and data; returns once it takes queries.
    pub async fn restart(&mut self) {
        self.server.restart().await;
        self.wait_until_serving().await;
    }

    /// The port opens before PostgreSQL takes queries ("the database system is starting up").
    async fn wait_until_serving(&self) {
        use sqlx::Connection;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match sqlx::PgConnection::connect(&self.url()).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return;
                }
                Err(err) => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the private PostgreSQL did not serve: {err}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// The directory of PostgreSQL's programs (Debian: `/usr/lib/postgresql/<version>/bin`, the
/// newest), or the one `pg_config --bindir` names.
fn postgres_bin() -> PathBuf {
    let debian = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|versions| {
        versions
            .filter_map(Result::ok)
            .filter_map(|v| v.file_name().to_str()?.parse::<u32>().ok().map(|n| (n, v.path())))
            .max_by_key(|(n, _)| *n)
            .map(|(_, path)| path.join("bin"))
    });
    if let Some(bin) = debian.filter(|bin| bin.join("initdb").exists()) {
        return bin;
    }
    std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .filter(|bin| bin.join("initdb").exists())
        .unwrap_or_else(|| panic!("PostgreSQL's initdb is not installed; {HOW}"))
}

fn running_as_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The uid and gid of the `postgres` system user (made by Debian's postgresql package).
fn postgres_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .unwrap_or_else(|| panic!("no `postgres` user to run PostgreSQL as (not as root); {HOW}"))
}
