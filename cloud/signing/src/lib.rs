//! The signing service: accounts (argon2id), login with rate limits, short-lived EdDSA access
//! tokens with rotating refresh tokens and reuse detection, JWKS and introspection, sessions in
//! Redis or memory (API.md "Signing").
//!
//! [`serve`] runs it; [`build`] assembles the router for tests and for `edgewatch up`.

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod keys;
pub mod passwords;
pub mod repository;
pub mod service;
pub mod sessions;

use std::{sync::Arc, time::Duration};

use axum::Router;
use edgewatch_common::{
    cache,
    http::{Readiness, serve as serve_http, service_router},
    shutdown::Shutdown,
};

pub use config::SigningConfig;
pub use service::Signing;

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "service_token is empty: set EDGEWATCH_SERVICE_TOKEN (a long random string shared with the other services)"
    )]
    NoServiceToken,
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("cannot open the account database: {0}")]
    Database(#[from] repository::RepoError),
    #[error("cannot reach the session store: {0}")]
    Cache(#[from] cache::CacheError),
    #[error(transparent)]
    Hasher(#[from] passwords::HashError),
    #[error("cannot listen on {addr}: {cause}")]
    Listen { addr: std::net::SocketAddr, cause: std::io::Error },
}

/// The service's router and core, ready to serve.
pub async fn build(config: &SigningConfig) -> Result<(Router, Signing), StartError> {
    if config.service_token.trim().is_empty() {
        return Err(StartError::NoServiceToken);
    }
    let keys = Arc::new(if config.signing_keys.trim().is_empty() {
        keys::KeySet::load_dir(&config.keys_dir, config.generate_keys)?
    } else {
        keys::KeySet::from_pem_text(&config.signing_keys)?
    });
    let users = repository::connect(&config.database_url).await?;
    let cache = cache::connect(&config.cache_url, &config.cache_namespace).await?;
    let signing = Signing::new(
        users,
        cache,
        keys,
        passwords::Hasher::new(config.max_concurrent_hashes)?,
        service::LoginLimits {
            per_ip: config.login_per_ip,
            per_account: config.login_per_account,
            window: Duration::from_secs(config.login_window_s.max(1)),
        },
        Duration::from_secs(config.access_ttl_s.max(1)),
        Duration::from_secs(config.refresh_ttl_s.max(1)),
        &config.service_token,
    );
    let readiness = {
        let (users, cache) = (Arc::clone(&signing.users), Arc::clone(&signing.cache));
        Readiness::new()
            .with("database", move || {
                let users = Arc::clone(&users);
                async move { users.ping().await }
            })
            .with("session_store", move || {
                let cache = Arc::clone(&cache);
                async move { cache.ping().await }
            })
    };
    let api = http::routes(http::AppState {
        signing: signing.clone(),
        verifier: Arc::new(signing.clone()),
        trust_forwarded_for: config.trust_forwarded_for,
    });
    Ok((service_router("signing", api, readiness, config.http.body_limit), signing))
}

/// Runs the service until `shutdown` fires.
pub async fn serve(config: SigningConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let (router, _) = build(&config).await?;
    let addr = config.http.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| StartError::Listen { addr, cause })?;
    tracing::info!(%addr, "Signing service listening");
    serve_http(listener, router, shutdown).await.map_err(|cause| StartError::Listen { addr, cause })
}
