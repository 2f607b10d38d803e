//! Service plumbing shared by the cloud services (signing, devices, monitoring) and by
//! `edgewatch up`, which runs them all in one process.
//!
//! - [`config`]: layered configuration (defaults -> file -> `EDGEWATCH_*` environment).
//! - [`observability`]: tracing (pretty or JSON) and the Prometheus recorder.
//! - [`http`]: the error body of the contract, request ids, `/healthz`, `/readyz`, `/metrics`,
//!   and graceful serving.
//! - The ports of DESIGN.md with their adapters: [`bus`] (RabbitMQ, in-process), [`cache`]
//!   (in-memory, Redis) and [`telemetry_store`] (SQLite; MongoDB
//!   joins with the monitoring service). Each port has one conformance suite in `testkit`.

pub mod auth;
pub mod binary;
pub mod bus;
pub mod cache;
pub mod config;
pub mod db;
pub mod http;
pub mod observability;
pub mod shutdown;
pub mod telemetry_store;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use http::ApiError;
