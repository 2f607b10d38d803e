//! Prometheus (packaging/prometheus/prometheus.yml) scraping the services for real: Debian's
//! prometheus runs the packaged file with the service targets rewritten to loopback ports, and
//! its query API must return the ingest counters after readings went through.

use std::time::Duration;

use edgewatch_common::testkit::sign_up;
use serde_json::Value;

use crate::helpers::{
    Prometheus, Stack, enrolled_device, host_port, ingest, repo_root, wait_for_seq,
};

/// The packaged configuration with compose's service names swapped for the stack's addresses
/// and a 1 s scrape interval (the other targets stay, and are simply down here).
fn packaged_config_for(stack: &Stack) -> String {
    let packaged =
        std::fs::read_to_string(repo_root().join("packaging/prometheus/prometheus.yml")).unwrap();
    let mut config = packaged.clone();
    for (target, base) in [
        ("signing:8080", &stack.signing),
        ("devices:8080", &stack.devices),
        ("monitoring:8080", &stack.monitoring),
    ] {
        assert!(config.contains(target), "prometheus.yml scrapes no {target}");
        config = config.replace(&format!("\"{target}\""), &format!("\"{}\"", host_port(base)));
    }
    assert!(config.contains("scrape_interval: 15s"), "the global scrape interval moved");
    config.replacen("scrape_interval: 15s", "scrape_interval: 1s", 1)
}

/// The value of the single series `query` returns, summed over its series.
fn total(result: &[Value]) -> f64 {
    result.iter().map(|series| series["value"][1].as_str().unwrap().parse::<f64>().unwrap()).sum()
}

#[tokio::test]
async fn prometheus_scrapes_every_service_and_sees_the_ingest_counter() {
    let stack = Stack::start().await;
    let client = &stack.client;
    let prometheus = Prometheus::start(&packaged_config_for(&stack)).await;

    let token = sign_up(client, &stack.signing, "metrics@example.com").await;
    let (id, secret) = enrolled_device(client, &stack.devices, &token, "scraped").await;
    for seq in 1..=3 {
        ingest(client, &stack.devices, &id, &secret, seq, seq as f64).await;
    }
    wait_for_seq(client, &stack.monitoring, &token, &id, 3).await;

    // Every service is up for Prometheus, and the readings are counted where they entered
    // (devices) and where they were stored (monitoring). One process hosts the three services
    // here, so each target serves the same counters; the job label tells them apart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = prometheus.query(client, r#"up{job=~"signing|devices|monitoring"} == 1"#).await;
        let accepted = prometheus
            .query(client, r#"edgewatch_devices_readings_accepted_total{job="devices",via="http"}"#)
            .await;
        let stored = prometheus
            .query(client, r#"edgewatch_monitoring_readings_stored_total{job="monitoring"}"#)
            .await;
        let requests = prometheus
            .query(client, r#"sum by (service) (http_requests_total{job="devices"})"#)
            .await;
        // A latency quantile the dashboard plots (a rate needs two scrapes of the histogram).
        let latency = prometheus
            .query(
                client,
                "histogram_quantile(0.95, sum by (le) \
                 (rate(http_request_duration_seconds_bucket{job=\"devices\"}[30s])))",
            )
            .await;
        if up.len() == 3
            && total(&accepted) >= 3.0
            && total(&stored) >= 3.0
            && !requests.is_empty()
            && !latency.is_empty()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "prometheus never saw it: up {up:?}, accepted {accepted:?}, stored {stored:?}, \
             latency {latency:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn promtool_accepts_the_packaged_configuration() {
    let output = tokio::process::Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(repo_root().join("packaging/prometheus/prometheus.yml"))
        .output()
        .await
        .expect("promtool is installed with `apt-get install prometheus` (scripts/services.sh)");
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
