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
