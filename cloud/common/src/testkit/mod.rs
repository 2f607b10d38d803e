//! Test support shared by every crate's tests (feature `testkit`): access to the real services
//! that `scripts/services.sh` starts, one isolated namespace per test (a vhost, a database, a
//! file), and the conformance suite of each port, which every adapter's tests run by calling one
//! function.

pub mod conformance;
pub mod services;
