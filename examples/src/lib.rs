//! The example domains of eventsource, runnable on the embedded store or on PostgreSQL.
//!
//! - [`account`]: a bank account, walked through step by step by the `account` binary:
//!   commands, a concurrency conflict, an upcast event, time travel, snapshots, projections.
//! - [`orders`]: a shop's orders behind an HTTP API (the `orders` binary): read-your-writes
//!   queries, and read-model changes pushed over a WebSocket.
//! - [`store`]: how both choose their store at run time (`DATABASE_URL`).

pub mod account;
pub mod errors;
pub mod orders;
pub mod projections;
pub mod request;
pub mod store;
pub mod story;
