//! The devices service: the device registry with ownership, credentials and enrollment, and
//! telemetry ingest, which it hands to the bus with publisher confirms before it acknowledges
//! the device (API.md "Devices").
//!
//! Built so far: the registry store ([`repository`], PostgreSQL and SQLite) and its domain
//! ([`domain`]). Still to come (devices issue): the HTTP API, enrollment and ingest, the MQTT
//! bridge, status tracking, the event outbox and config push.

pub mod domain;
pub mod repository;
