//! The signing service's numbers, in one run against PostgreSQL + Redis (the test services):
//! raw argon2id cost, login latency at 50 concurrent clients, refresh latency, and token
//! verification throughput on one core — raw signature checks and the verification layer other
//! services use (`HttpVerifier`, warm).
//!
//! Run:
//!   eval "$(scripts/services.sh start)"
//!   cargo run --release -p edgewatch-signing --example signing_bench

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use edgewatch_common::{
    auth::{HttpVerifier, TokenVerifier, verify_access},
    shutdown::Shutdown,
    testkit::{serve_on_loopback, services},
};
use edgewatch_signing::{SigningConfig, build, domain::Password, passwords::Hasher};
use serde_json::{Value, json};

const CLIENTS: usize = 50;
const SERVICE_TOKEN: &str = "bench-service-token-0123456789";

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

#[allow(clippy::print_stdout)]
fn report(name: &str, mut samples: Vec<Duration>, elapsed: Duration) {
    samples.sort_unstable();
    println!(
        "{name:<34} n={:<6} p50 {:>8.2} ms  p99 {:>8.2} ms  ({:.0}/s)",
        samples.len(),
        pct(&samples, 0.5),
        pct(&samples, 0.99),
        samples.len() as f64 / elapsed.as_secs_f64()
    );
}

#[tokio::main]
#[allow(clippy::print_stdout)]
async fn main() {
    // Raw argon2id: what every login costs at least.
    let hasher = Hasher::new(2).expect("hasher");
    let hash = hasher.hash(Password::parse("correct horse battery".into()).unwrap()).await.unwrap();
    let mut raw = Vec::new();
    let started = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        assert!(hasher.verify("correct horse battery".into(), Some(hash.clone())).await);
        raw.push(t.elapsed());
    }
    report("argon2id verify (1 at a time)", raw, started.elapsed());

    let config = SigningConfig {
        database_url: services::postgres_database().await,
        cache_url: services::require("EDGEWATCH_TEST_REDIS_URL"),
        cache_namespace: format!("bench:{}:", uuid::Uuid::new_v4().simple()),
        keys_dir: std::env::temp_dir()
            .join(format!("edgewatch-bench-keys-{}", uuid::Uuid::new_v4())),
        service_token: SERVICE_TOKEN.into(),
        login_per_ip: u64::MAX,
        login_per_account: u64::MAX,
        ..SigningConfig::default()
    };
    let (router, _) = build(&config).await.expect("build");
    let shutdown = Shutdown::new();
    let base = serve_on_loopback(router, &shutdown).await;
    let http = reqwest::Client::new();
    for i in 0..CLIENTS {
        let body =
            json!({"email": format!("user{i}@example.com"), "password": "correct horse battery"});
        http.post(format!("{base}/api/v1/auth/register")).json(&body).send().await.unwrap();
    }

    // Logins: 50 clients at once, 4 each.
    let started = Instant::now();
    let runs: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (http, base) = (http.clone(), base.clone());
            tokio::spawn(async move {
                let body = json!({"email": format!("user{i}@example.com"), "password": "correct horse battery"});
                let mut out = Vec::new();
                let mut last = Value::Null;
                for _ in 0..4 {
                    let t = Instant::now();
                    last = http.post(format!("{base}/api/v1/auth/login")).json(&body).send().await.unwrap().json().await.unwrap();
                    out.push(t.elapsed());
                }
                (out, last)
            })
        })
        .collect();
    let mut samples = Vec::new();
    let mut tokens = Vec::new();
    for run in runs {
        let (s, last) = run.await.unwrap();
        samples.extend(s);
        tokens.push(last);
    }
    report("login, 50 concurrent", samples, started.elapsed());

    // Refresh chains: 50 clients at once, 20 rotations each.
    let started = Instant::now();
    let runs: Vec<_> = tokens
        .iter()
        .map(|pair| {
            let (http, base) = (http.clone(), base.clone());
            let mut refresh = pair["refresh_token"].as_str().unwrap().to_owned();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for _ in 0..20 {
                    let t = Instant::now();
                    let next: Value = http
                        .post(format!("{base}/api/v1/auth/refresh"))
                        .json(&json!({"refresh_token": refresh}))
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    out.push(t.elapsed());
                    refresh = next["refresh_token"].as_str().expect("rotated").to_owned();
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for run in runs {
        samples.extend(run.await.unwrap());
    }
    report("refresh, 50 concurrent", samples, started.elapsed());

    // Verification on one core: a fresh login per client, then many checks of those tokens.
    let mut access = Vec::new();
    for i in 0..CLIENTS {
        let body =
            json!({"email": format!("user{i}@example.com"), "password": "correct horse battery"});
        let pair: Value = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        access.push(pair["access_token"].as_str().unwrap().to_owned());
    }
    let jwks: jsonwebtoken::jwk::JwkSet =
        http.get(format!("{base}/api/v1/auth/jwks")).send().await.unwrap().json().await.unwrap();
    let verifier = Arc::new(HttpVerifier::new(&base, SERVICE_TOKEN));
    let access = Arc::new(access);
    let (raw_rate, layer_rate) = std::thread::spawn({
        let (verifier, access) = (Arc::clone(&verifier), Arc::clone(&access));
        move || {
            let one_core =
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let n = 20_000;
            let t = Instant::now();
            for i in 0..n {
                verify_access(&access[i % access.len()], &jwks).expect("valid");
            }
            let raw = n as f64 / t.elapsed().as_secs_f64();
            let layer = one_core.block_on(async {
                for token in access.iter() {
                    verifier.verify(token).await.expect("valid"); // warm: JWKS and sessions
                }
                let n = 200_000;
                let t = Instant::now();
                for i in 0..n {
                    verifier.verify(&access[i % access.len()]).await.expect("valid");
                }
                n as f64 / t.elapsed().as_secs_f64()
            });
            (raw, layer)
        }
    })
    .join()
    .unwrap();
    println!(
        "{:<34} {raw_rate:>10.0} verifications/s (EdDSA signature + claims, no cache)",
        "verify_access, 1 core"
    );
    println!(
        "{:<34} {layer_rate:>10.0} verifications/s (50 live tokens, warm caches)",
        "HttpVerifier, 1 core"
    );
    shutdown.cancel();
}
