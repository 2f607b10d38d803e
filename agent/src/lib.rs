//! The edge agent that runs on Raspberry-Pi-class devices for years.
//!
//! It collects the host metrics of API.md (sysinfo plus direct reads of `/proc` and the thermal
//! zones) and local sensor readings (`sensors/#`), gives each reading a per-device `seq` that
//! survives restarts, keeps them in a bounded SQLite buffer ([`buffer`]), and ships them to the
//! cloud over HTTP or MQTT ([`uplink`]), deleting a batch only after the cloud acknowledged it.

pub mod buffer;
pub mod collect;
pub mod config;
pub mod enroll;
pub mod error;
pub mod metrics;
pub mod run;
pub mod systemd;
pub mod uplink;

pub use error::{AgentError, Result};
