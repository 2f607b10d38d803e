//! Tests of the deployment artefacts (packaging/nginx, packaging/prometheus): they run Debian's
//! nginx and Prometheus with the packaged configuration in front of the services started natively,
//! so what ships in the containers is what was exercised. This crate has no code of its own; see
//! `tests/deploy/`.
