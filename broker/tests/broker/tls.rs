//! The TLS listener: a Mosquitto client that verifies the broker's certificate publishes over
//! TLS and a plain subscriber receives it; a bad certificate path fails start with a message.

use std::path::PathBuf;

use edgewatch_broker::{BrokerError, Role, TlsListener};

use crate::helpers::{Sub, edge_accounts, loopback_config, mosquitto, start, stderr};

/// A self-signed certificate for 127.0.0.1 made with the openssl command line.
fn certificate() -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir()
        .join(format!("edgewatch-broker-tls-{}", edgewatch_protocol::DeviceId::new()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl) makes a test certificate");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    (cert, key)
}

#[tokio::test]
async fn mqtt_over_tls_with_a_verified_certificate() {
    let (cert, key) = certificate();
    let mut config = loopback_config(Role::Edge, edge_accounts());
    config.tls = Some(TlsListener {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_path: cert.clone(),
        key_path: key,
    });
    let auth = edgewatch_broker::authenticator(&config).unwrap();
    let broker = start(config, auth).await;
    let tls = broker.handle.tls_addr.unwrap();

    let sub = Sub::start(broker.mqtt, "agent", "agent-pw", "sensors/#", 1, 10).await;
    let cafile = cert.to_str().unwrap();
    let out = mosquitto(
        "mosquitto_pub",
        tls,
        &[
            "--cafile",
            cafile,
            "-u",
            "sensor",
            "-P",
            "sensor-pw",
            "-t",
            "sensors/tls/temp_c",
            "-q",
            "1",
            "-m",
            "20",
        ],
    )
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sub.lines().await, ["sensors/tls/temp_c 20"]);

    // Plain MQTT on the TLS port is no TLS handshake: refused.
    let out = mosquitto(
        "mosquitto_pub",
        tls,
        &["-u", "sensor", "-P", "sensor-pw", "-t", "sensors/a/b", "-m", "1"],
    )
    .await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn a_missing_certificate_is_a_clear_start_error() {
    let mut config = loopback_config(Role::Edge, edge_accounts());
    config.tls = Some(TlsListener {
        listen: "127.0.0.1:0".parse().unwrap(),
        cert_path: "/nonexistent/cert.pem".into(),
        key_path: "/nonexistent/key.pem".into(),
    });
    let auth = edgewatch_broker::authenticator(&config).unwrap();
    let err = edgewatch_broker::start(config, auth, None, Default::default()).await.unwrap_err();
    assert!(matches!(err, BrokerError::Tls(_)), "{err}");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
