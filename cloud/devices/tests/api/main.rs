//! Integration tests of the devices service, one binary: the registry store's conformance suite,
//! and the HTTP API next to a real signing service, on SQLite + in-process bus and on
//! PostgreSQL + RabbitMQ.

mod api;
mod events;
mod faults;
mod helpers;
mod mqtt;
mod repository;
