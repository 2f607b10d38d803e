//! Starting brokers, and MQTT clients that report what happened to them.

use std::{net::SocketAddr, process::Output, sync::Arc, time::Duration};

use edgewatch_broker::{
    Account, AccountRole, Authenticator, BrokerConfig, BrokerHandle, Ingest, MqttListener, Role,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions, Packet, Publish,
    QoS, SubscribeReasonCode,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(10);

pub fn account(username: &str, password: &str, role: AccountRole) -> Account {
    Account {
        username: username.into(),
        password: password.into(),
        role,
        publish: vec![],
        subscribe: vec![],
    }
}

/// The accounts of an edge broker in these tests.
pub fn edge_accounts() -> Vec<Account> {
    vec![
        account("sensor", "sensor-pw", AccountRole::Sensor),
        account("agent", "agent-pw", AccountRole::Agent),
    ]
}

/// A broker on loopback ports; stops when dropped.
pub struct TestBroker {
    pub mqtt: SocketAddr,
    pub handle: BrokerHandle,
    pub shutdown: CancellationToken,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A config listening on free loopback ports (MQTT and HTTP).
pub fn loopback_config(role: Role, accounts: Vec<Account>) -> BrokerConfig {
    BrokerConfig {
        role,
        accounts,
        mqtt: Some(MqttListener { listen: "127.0.0.1:0".parse().unwrap() }),
        http: Some(edgewatch_common::config::HttpConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        }),
        ..BrokerConfig::default()
    }
}

/// Starts a broker with the ingest port its configuration describes (a cloud broker posts device
/// telemetry to `devices_url`, as the binary does; without one, none).
pub async fn start(config: BrokerConfig, auth: Arc<dyn Authenticator>) -> TestBroker {
    let ingest = edgewatch_broker::ingest(&config).ok().flatten();
    start_with(config, auth, ingest).await
}

pub async fn start_with(
    config: BrokerConfig,
    auth: Arc<dyn Authenticator>,
    ingest: Option<Arc<dyn Ingest>>,
) -> TestBroker {
    let shutdown = CancellationToken::new();
    let handle =
        edgewatch_broker::start(config, auth, ingest, shutdown.clone()).await.expect("broker");
    TestBroker { mqtt: handle.mqtt_addr.expect("a plain listener"), handle, shutdown }
}

pub async fn edge_broker() -> TestBroker {
    let config = loopback_config(Role::Edge, edge_accounts());
    let auth = edgewatch_broker::authenticator(&config).unwrap();
    start(config, auth).await
}

impl TestBroker {
    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.handle.http_addr.unwrap());
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }
}

/// What a rumqttc client saw.
#[derive(Debug)]
pub enum Seen {
    Message(Publish),
    SubAck(Vec<SubscribeReasonCode>),
    PubAck,
    /// The connection ended (refused, closed by the broker, or lost).
    Closed(String),
}

/// A rumqttc client whose event loop runs in a task and reports into a channel.
pub struct Client {
    pub client: AsyncClient,
    pub seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects; `Err` carries the broker's refusal.
pub async fn connect(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    password: &str,
    will: Option<LastWill>,
) -> Result<Client, ConnectReturnCode> {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_credentials(username, password).set_keep_alive(Duration::from_secs(5));
    options.set_max_packet_size(2 << 20, 2 << 20);
    if let Some(will) = will {
        options.set_last_will(will);
    }
    let (client, mut events) = AsyncClient::new(options, 64);
    let (tx, seen) = mpsc::unbounded_channel();
    let (first, connected) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut first = Some(first);
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if let Some(first) = first.take() {
                        let _ = first.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => drop(tx.send(Seen::Message(p))),
                Ok(Event::Incoming(Packet::SubAck(s))) => {
                    drop(tx.send(Seen::SubAck(s.return_codes)))
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => drop(tx.send(Seen::PubAck)),
                Ok(_) => {}
                Err(err) => {
                    if let Some(first) = first.take() {
                        let code = match err {
                            ConnectionError::ConnectionRefused(code) => code,
                            _ => ConnectReturnCode::ServiceUnavailable,
                        };
                        let _ = first.send(Err(code));
                    } else {
                        let _ = tx.send(Seen::Closed(err.to_string()));
                    }
                    // No reconnects: a test wants to see each ending.
                    return;
                }
            }
        }
    });
    match tokio::time::timeout(WAIT, connected).await {
        Ok(Ok(Ok(()))) => Ok(Client { client, seen, task }),
        Ok(Ok(Err(code))) => Err(code),
        _ => panic!("no CONNACK from {addr} within {WAIT:?}"),
    }
}

impl Client {
    /// The next thing seen within `within`, if any.
    pub async fn next(&mut self, within: Duration) -> Option<Seen> {
        tokio::time::timeout(within, self.seen.recv()).await.ok().flatten()
    }

    /// Subscribes and returns the broker's answer.
    pub async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        loop {
            match self.next(WAIT).await {
                Some(Seen::SubAck(codes)) => return codes[0],
                Some(Seen::Message(_) | Seen::PubAck) => {}
                other => panic!("no SUBACK for {filter}: {other:?}"),
            }
        }
    }

    /// The next message, skipping acks.
    pub async fn message(&mut self, within: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Message(p)) => return Some(p),
                Some(Seen::Closed(why)) => panic!("the connection closed: {why}"),
                Some(_) => {}
                None => return None,
            }
        }
    }

    /// Waits until the broker closes the connection; panics if it stays open `within`.
    pub async fn closed(&mut self, within: Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(Seen::Closed(why)) => return why,
                Some(_) => {}
                None => panic!("the broker kept the connection open for {within:?}"),
            }
        }
    }

    /// Drops the TCP connection without a DISCONNECT, as a crashed client would.
    pub fn crash(self) {
        self.task.abort();
    }
}

/// Runs a Mosquitto command-line client against `addr`.
pub async fn mosquitto(tool: &str, addr: SocketAddr, args: &[&str]) -> Output {
    let port = addr.port().to_string();
    let mut command = tokio::process::Command::new(tool);
    command.args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311"]).args(args);
    command.kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(20), command.output())
        .await
        .unwrap_or_else(|_| panic!("{tool} {args:?} did not finish"))
        .unwrap_or_else(|e| panic!("cannot run {tool} (Debian package mosquitto-clients): {e}"))
}

/// A `mosquitto_sub` running in the background; `lines` waits for it to finish.
pub struct Sub(tokio::task::JoinHandle<Output>);

impl Sub {
    /// Subscribes to `filter` as `user`, expecting up to `count` messages within `seconds`.
    pub async fn start(
        addr: SocketAddr,
        user: &str,
        pw: &str,
        filter: &str,
        count: u32,
        seconds: u32,
    ) -> Self {
        let (count, seconds) = (count.to_string(), seconds.to_string());
        let (user, pw, filter) = (user.to_owned(), pw.to_owned(), filter.to_owned());
        let task = tokio::spawn(async move {
            mosquitto(
                "mosquitto_sub",
                addr,
                &[
                    "-u", &user, "-P", &pw, "-t", &filter, "-v", "-q", "1", "-C", &count, "-W",
                    &seconds,
                ],
            )
            .await
        });
        // mosquitto_sub has no "subscribed" signal; a subscription takes a few ms on loopback.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Self(task)
    }

    pub async fn lines(self) -> Vec<String> {
        let out = self.0.await.unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
