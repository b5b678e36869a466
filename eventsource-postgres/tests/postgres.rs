//! PostgreSQL-specific behaviour of `PgStore`, against the real server (`scripts/test`).

mod common;

#[path = "postgres/appends.rs"]
mod appends;
#[path = "postgres/faults.rs"]
mod faults;
#[path = "postgres/ordering.rs"]
mod ordering;
#[path = "postgres/projections.rs"]
mod projections;
