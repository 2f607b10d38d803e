//! `/readyz`: the service's dependency checks, run concurrently with a deadline. 200 when every
//! check passes; 503 with `Retry-After` and the failing checks in `fields` otherwise, so a load
//! balancer stops sending traffic while a dependency is down and resumes when it returns.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::{extract::State, response::IntoResponse};

use super::ApiError;

type CheckFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// The named dependency checks of one service.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(&'static str, CheckFn)>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a check; `check` is called on every `/readyz`.
    pub fn with<F, Fut, E>(mut self, name: &'static str, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Display,
    {
        let check = Arc::new(check);
        self.checks.push((
            name,
            Arc::new(move || {
                let check = Arc::clone(&check);
                Box::pin(async move { check().await.map_err(|e| e.to_string()) })
            }),
        ));
        self
    }

    /// Runs every check; the failing ones with their reasons.
    pub async fn failures(&self) -> Vec<(&'static str, String)> {
        let runs = self.checks.iter().map(|(name, check)| async move {
            match tokio::time::timeout(CHECK_TIMEOUT, check()).await {
                Ok(Ok(())) => None,
                Ok(Err(why)) => Some((*name, why)),
                Err(_) => Some((*name, format!("no answer within {CHECK_TIMEOUT:?}"))),
            }
        });
        futures_util::future::join_all(runs).await.into_iter().flatten().collect()
    }
}

pub(super) async fn readyz(
    State(readiness): State<Readiness>,
) -> Result<impl IntoResponse, ApiError> {
    let failures = readiness.failures().await;
    if failures.is_empty() {
        let names: Vec<_> = readiness.checks.iter().map(|(name, _)| *name).collect();
        return Ok(axum::Json(serde_json::json!({"status": "ready", "checks": names})));
    }
    let names: Vec<_> = failures.iter().map(|(name, _)| *name).collect();
    let mut err = ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "not_ready",
        format!("dependencies unavailable: {}", names.join(", ")),
    )
    .with_retry_after(5);
    for (name, why) in failures {
        err = err.with_field(name, why);
    }
    Err(err)
}
