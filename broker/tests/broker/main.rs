//! The broker's integration tests, one binary (STYLE.md): each test starts its own broker on
//! port 0 and talks to it with independent clients — Mosquitto's `mosquitto_pub`/`mosquitto_sub`
//! and rumqttc — and, for the cloud role, with a real devices service built from cloud/devices.

mod cloud;
mod edge;
mod helpers;
mod ingest;
mod tls;
