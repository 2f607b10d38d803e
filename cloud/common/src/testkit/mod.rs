//! Test support shared by every crate's tests (feature `testkit`): access to the real services
//! that `scripts/services.sh` starts, one isolated namespace per test (a vhost, a database, a
//! file), and the conformance suite of each port, which every adapter's tests run by calling one
//! function.

pub mod conformance;
pub mod services;

/// Serves `router` on a free loopback port until `shutdown`; returns its base URL
/// (`http://127.0.0.1:PORT`). Tests and benchmarks start services this way.
///
/// # Panics
/// When no loopback port can be bound.
pub async fn serve_on_loopback(
    router: axum::Router,
    shutdown: &crate::shutdown::Shutdown,
) -> String {
    let listener =
        tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("a bound address"));
    tokio::spawn(crate::http::serve(listener, router, shutdown.clone()));
    base
}

/// Registers `email` with the signing service at `signing` and signs in; returns the access
/// token. The first account of a fresh signing service is its admin.
///
/// # Panics
/// When registration or sign-in fails.
pub async fn sign_up(client: &reqwest::Client, signing: &str, email: &str) -> String {
    let body = serde_json::json!({"email": email, "password": "correct horse battery"});
    let created = client
        .post(format!("{signing}/api/v1/auth/register"))
        .json(&body)
        .send()
        .await
        .expect("signing answers");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED, "register {email}");
    let tokens: serde_json::Value = client
        .post(format!("{signing}/api/v1/auth/login"))
        .json(&body)
        .send()
        .await
        .expect("signing answers")
        .json()
        .await
        .expect("login answer");
    tokens["access_token"].as_str().expect("an access token").to_owned()
}

/// Creates a device named `name` for the holder of `token` through the devices service at
/// `devices`, and enrolls it with its one-time token; returns (device id, device secret).
pub async fn enroll_device(
    client: &reqwest::Client,
    devices: &str,
    token: &str,
    name: &str,
) -> (String, String) {
    let created: serde_json::Value = client
        .post(format!("{devices}/api/v1/devices"))
        .bearer_auth(token)
        .json(&serde_json::json!({"name": name}))
        .send()
        .await
        .expect("devices answers")
        .json()
        .await
        .expect("a created device");
    let enrolled: serde_json::Value = client
        .post(format!("{devices}/api/v1/devices/enroll"))
        .json(&serde_json::json!({"enrollment_token": created["enrollment_token"]}))
        .send()
        .await
        .expect("devices answers")
        .json()
        .await
        .expect("an enrollment answer");
    let field =
        |name: &str| enrolled[name].as_str().expect("device_id and device_secret").to_owned();
    (field("device_id"), field("device_secret"))
}
