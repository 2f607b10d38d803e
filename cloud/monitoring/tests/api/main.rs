//! The monitoring service against real signing and devices services: in the embedded shape
//! (SQLite, in-process bus) and the distributed one (FerretDB, RabbitMQ, PostgreSQL, Redis).

mod forecast;
mod helpers;
mod live;
mod queries;
