//! The deployment artefacts run for real: Debian's nginx with packaging/nginx in front of the
//! three services started in this process (distributed shape: PostgreSQL, Redis, RabbitMQ,
//! FerretDB), and Debian's Prometheus with packaging/prometheus scraping them. One binary, as the
//! house style asks.

mod dashboard;
mod gateway;
mod helpers;
mod prometheus;
