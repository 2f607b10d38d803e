//! Integration tests of cloud/common, one binary: every port's conformance suite on every adapter
//! (real RabbitMQ for the bus), the RabbitMQ restart test, the FerretDB round trip and the shared
//! HTTP behaviour. Servers come from `scripts/services.sh`; see `testkit::services`.

mod bus;
mod cache;
mod ferretdb;
mod http;
mod telemetry_store;
