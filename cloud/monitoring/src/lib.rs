//! The monitoring service: consumes `monitoring.telemetry` from the bus, writes readings and their
//! rollups to the telemetry store (exactly once per `(device_id, seq)`), answers the query API and
//! pushes live telemetry over Socket.IO. Built out by the monitoring issue; today this crate holds
//! no code.
