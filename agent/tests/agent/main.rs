//! The agent's integration tests, one binary: the buffer under `kill -9`, the CLI, and the agent
//! against the real devices service (in process: SQLite registry, in-memory bus).

mod cli;
mod cloud;
mod crash;
mod e2e;
mod mqtt;
mod sensors;
mod systemd;
mod tls;
