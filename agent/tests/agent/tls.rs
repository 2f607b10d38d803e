//! The MQTT uplink over TLS: a real agent process against our broker's TLS listener, whose
//! certificate a private CA signed. Without `--mqtt-ca` the broker is not trusted and nothing is
//! delivered; with the CA file the readings arrive.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use edgewatch_agent::enroll::{Credentials, MqttEndpoint};
use edgewatch_broker::{
    Account, AccountRole, Accounts, AuthError, Authenticator, BrokerConfig, Chain, Identity, Login,
    MqttListener, Role, TlsListener,
};
use edgewatch_protocol::{Batch, DeviceId, Timestamp};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use super::cloud::temp_dir;

/// One device with one secret.
struct OneDevice {
    id: DeviceId,
    secret: String,
}

#[async_trait]
impl Authenticator for OneDevice {
    async fn authenticate(&self, login: &Login) -> Result<Identity, AuthError> {
        match DeviceId::parse(&login.username) {
            Ok(id) if id == self.id && login.password == self.secret => Ok(Identity::Device(id)),
            Ok(_) => Err(AuthError::Denied),
            Err(_) => Err(AuthError::UnknownUser),
        }
    }
}

/// A private CA and a certificate for `localhost` signed by it: (CA file, cert, key).
fn private_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let openssl = |args: &[&str]| {
        let made = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (scripts/services.sh installs it)");
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &["-days", "1", "-subj", "/CN=edgewatch test CA"],
            &["-keyout", "ca.key", "-out", "ca.pem"],
        ]
        .concat(),
    );
    openssl(
        &[&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", "key.pem", "-out", "leaf.csr"]]
            .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"))
}

/// Counts the readings published on the device's telemetry topic.
async fn watch(port: u16, device: DeviceId) -> Arc<AtomicUsize> {
    let mut options = MqttOptions::new("tls-watcher", "127.0.0.1", port);
    options.set_credentials("watcher", "watcher-password").set_max_packet_size(4 << 20, 4 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .subscribe(format!("edgewatch/v1/devices/{device}/telemetry"), QoS::AtLeastOnce)
        .await
        .unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let sink = Arc::clone(&count);
    let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _client = client;
        let mut subscribed_tx = Some(subscribed_tx);
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if let Some(tx) = subscribed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let batch = Batch::from_json(&p.payload).expect("a valid batch");
                    sink.fetch_add(batch.readings().len(), Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(err) => panic!("the watcher lost the broker: {err}"),
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(10), subscribed).await.unwrap().unwrap();
    count
}

fn spawn_agent(dir: &Path, ca: Option<&Path>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgewatch-agent"));
    cmd.arg("--data-dir").arg(dir).args(["run", "--uplink", "mqtt", "--interval", "0.2"]);
    if let Some(ca) = ca {
        cmd.arg("--mqtt-ca").arg(ca);
    }
    cmd.env_remove("EDGEWATCH_AGENT_MQTT_CA").spawn().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mqtt_uplink_speaks_tls_to_a_broker_it_trusts_and_only_then() {
    let dir = temp_dir();
    let (ca, cert, key) = private_ca(&dir);
    let device = OneDevice { id: DeviceId::new(), secret: "tls-device-secret".into() };
    let id = device.id;
    let watcher = Account {
        username: "watcher".into(),
        password: "watcher-password".into(),
        role: AccountRole::Service,
        publish: Vec::new(),
        subscribe: Vec::new(),
    };
    let config = BrokerConfig {
        role: Role::Cloud,
        mqtt: Some(MqttListener { listen: "127.0.0.1:0".parse().unwrap() }),
        tls: Some(TlsListener {
            listen: "127.0.0.1:0".parse().unwrap(),
            cert_path: cert,
            key_path: key,
        }),
        http: None,
        accounts: vec![watcher.clone()],
        ..BrokerConfig::default()
    };
    let auth: Arc<dyn Authenticator> =
        Arc::new(Chain(vec![Arc::new(Accounts::new(vec![watcher])), Arc::new(device)]));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let broker = edgewatch_broker::start(config, auth, None, shutdown.clone()).await.unwrap();
    let (plain, tls) = (broker.mqtt_addr.unwrap(), broker.tls_addr.unwrap());
    let credentials = Credentials {
        device_id: id,
        device_secret: "tls-device-secret".into(),
        server: "http://127.0.0.1:9".into(),
        http_base_url: "http://127.0.0.1:9".into(),
        mqtt: MqttEndpoint { host: "localhost".into(), port: tls.port(), tls: true },
        enrolled_at: Timestamp::now(),
    };
    credentials.save(&dir.join("credentials.json")).unwrap();
    let delivered = watch(plain.port(), id).await;

    // The system's CA store does not know this broker: the handshake fails, nothing arrives.
    let mut untrusting = spawn_agent(&dir, None);
    tokio::time::sleep(Duration::from_secs(3)).await;
    untrusting.kill().unwrap();
    untrusting.wait().unwrap();
    assert_eq!(delivered.load(Ordering::Relaxed), 0, "an untrusted broker got readings");

    // With the broker's CA: the buffered readings and new ones arrive over TLS.
    let mut agent = spawn_agent(&dir, Some(&ca));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while delivered.load(Ordering::Relaxed) < 5 {
        assert!(std::time::Instant::now() < deadline, "no readings over TLS within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.kill().unwrap();
    agent.wait().unwrap();
    shutdown.cancel();
}
