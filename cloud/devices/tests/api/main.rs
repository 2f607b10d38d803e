//! Integration tests of the devices service, one binary.

mod repository;
