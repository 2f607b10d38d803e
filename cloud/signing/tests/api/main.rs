//! Integration tests of the signing service, one binary. Every flow runs on both shapes:
//! PostgreSQL + Redis (real servers from `scripts/services.sh`) and SQLite + memory.

mod flows;
mod helpers;
mod outage;
mod repository;
