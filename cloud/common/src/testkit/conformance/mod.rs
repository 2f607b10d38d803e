//! One conformance suite per port. Each `run` takes a factory that makes a fresh, empty adapter
//! and runs every case against it, naming the case in the panic message when one fails. An
//! adapter is correct when its suite passes; the embedded and the distributed adapters run the
//! same one.

pub mod bus;
pub mod cache;
pub mod telemetry_store;

use std::future::Future;

/// Runs one named case, so that a failure says which.
pub(crate) async fn case<F: Future<Output = ()>>(suite: &str, name: &str, body: F) {
    eprintln!("{suite} conformance: {name}");
    body.await;
}
