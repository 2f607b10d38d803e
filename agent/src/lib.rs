//! The edge agent that runs on Raspberry-Pi-class devices for years.
//!
//! It will collect the host metrics of API.md (sysinfo plus direct reads of thermal zones) and
//! local sensor readings from `sensors/#`, give each reading a per-device `seq` that survives
//! restarts, keep them in a bounded SQLite buffer, and ship them over MQTT or HTTP, deleting a
//! batch only after the cloud acknowledged it. Built out by the edge-agent issue; today this crate
//! holds no code, only its place in the workspace and its dependencies.
