//! Integration tests of the forecast crate, one binary: the open-meteo client against a local
//! replay server (answers built from the real hourly normals, plus scripted failures), and the
//! PNG charts.

mod openmeteo;
mod plots;
mod replay;
