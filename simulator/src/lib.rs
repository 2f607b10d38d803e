//! The sensor fleet simulator (`edgewatch-sim`): N devices or local sensors publishing realistic,
//! seeded, deterministic telemetry (diurnal curves, drift, spikes, dropouts) to an edge broker or
//! straight to the cloud, with a load mode that reports achieved rate and latency. Built out by the
//! broker/simulator issue; today this crate holds no code.
