//! # eventsource-postgres
//!
//! The PostgreSQL event store for eventsource, on sqlx: [`PgStore`] implements the core's
//! [`EventStore`](eventsource_core::EventStore), plus live subscriptions through
//! LISTEN/NOTIFY, transactional and inline projections ([`PgProjectionRunner`],
//! [`PgStore::with_inline_projection`]), the writers' lock that lets a command on a hot stream
//! make progress ([`EventStore::lock_streams`](eventsource_core::EventStore::lock_streams)),
//! reads that ride out dropped connections, and lag reporting ([`PgStore::lag`]). PostgreSQL
//! 13 or newer.
//!
//! ```no_run
//! # async fn doc() -> Result<(), eventsource_core::StoreError> {
//! use eventsource_core::{EventStore, ExpectedVersion, NewEvent, StreamWrite};
//! use eventsource_postgres::PgStore;
//!
//! let store = PgStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
//! let commit = store
//!     .append(vec![StreamWrite::new(
//!         "account-1",
//!         ExpectedVersion::NoStream,
//!         vec![NewEvent::new("account.opened", 1, &br#"{"owner":"ada"}"#[..])],
//!     )])
//!     .await?;
//! # let _ = commit; Ok(()) }
//! ```
//!
#![doc = include_str!("../docs/schema.md")]
#![doc = include_str!("../docs/appends.md")]
#![doc = include_str!("../docs/ordering.md")]
#![doc = include_str!("../docs/eras.md")]
#![doc = include_str!("../docs/live.md")]
#![doc = include_str!("../docs/connections.md")]
#![doc = include_str!("../docs/writers-lock.md")]
#![doc = include_str!("../docs/read-retries.md")]
#![doc = include_str!("../docs/checkpoints.md")]
#![doc = include_str!("../docs/projections.md")]

mod append;
mod builder;
mod conns;
mod context;
mod dead_letters;
mod errors;
mod horizon;
mod inline;
mod lock;
mod meta;
mod migrate;
mod notify;
mod projection;
mod read;
mod read_log;
mod read_stream;
mod rows;
mod schema;
mod sql;
mod store;
mod versions;
mod wait;
mod xid;

pub use append::GroupCommit;
pub use builder::PgStoreBuilder;
pub use conns::IDLE_CHECK_AFTER;
pub use context::PgProjectionContext;
pub use horizon::{PgHorizonHolder, PgLag, PgPreparedXact};
pub use projection::{PgBatches, PgProjectionRunner};
pub use schema::PgSchema;
pub use store::PgStore;
pub use xid::Xid8;
