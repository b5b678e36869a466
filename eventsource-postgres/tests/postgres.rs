//! PostgreSQL-specific behaviour of `PgStore`, against the real server (`scripts/test`).

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "postgres/appends.rs"]
mod appends;
#[path = "postgres/blue_green.rs"]
mod blue_green;
#[path = "postgres/clusters.rs"]
mod clusters;
#[path = "postgres/connections.rs"]
mod connections;
#[path = "postgres/failure_policy.rs"]
mod failure_policy;
#[path = "postgres/faults.rs"]
mod faults;
#[path = "postgres/group_commit.rs"]
mod group_commit;
#[path = "postgres/ordering.rs"]
mod ordering;
#[path = "postgres/projections.rs"]
mod projections;
#[path = "postgres/weather.rs"]
mod weather;
