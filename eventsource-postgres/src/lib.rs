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
//! ## Schema
//!
//! All tables live in one schema (default `eventsource`, see [`PgStoreBuilder::schema`]);
//! its name is validated as a plain identifier ([`PgSchema`]) and is the only thing ever
//! spliced into SQL; every value is a bound parameter. The migrations are plain SQL files
//! embedded with `sqlx::migrate!` and written with unqualified names: the store runs them on
//! a dedicated connection whose `search_path` is the schema (its functions pin it with
//! `SET search_path FROM CURRENT`), under a session advisory lock, so any number of
//! processes may start at once. `events` holds the log (payload as `bytea`, byte for byte
//! as written; a stream's version is its last entry in the primary key `(stream_id,
//! version)`, so an append writes only event rows), `snapshots`, `checkpoints`, and
//! `store_meta` the era.
//!
//! ## Appends
//!
//! An append is one statement with the batch in its parameters: one round trip whatever its
//! size. There are two kinds:
//!
//! - **Direct**, for one stream at an exact version (`ExpectedVersion::Exact`, or `NoStream`
//!   as version 0: every repository command). One plain statement reads the stream's current
//!   version (the last entry of the primary key `(stream_id, version)`) and inserts the rows
//!   only if it is the expected one, so a conflict writes nothing; no lock is taken. A writer
//!   that commits the same version first, after the statement's snapshot, makes the insert
//!   fail on the primary key. One event is a plain `INSERT .. RETURNING` with scalar
//!   parameters: PostgreSQL plans it once, its plan has few nodes (set up again on every
//!   execution) and it reads no other table (the era is folded in as a constant, see
//!   "Eras"); when it writes nothing, or loses the race on the primary key, one read-only
//!   round trip reads the actual version and whether the event ids are stored. A batch binds
//!   arrays (`unnest`), which PostgreSQL re-plans on every call (a custom plan; measured
//!   0.7-0.9 ms for a statement of this shape, against 0.3 ms of work), small beside a
//!   batch's rows, and answers a conflict in the same row.
//! - **Locked**, for everything else (`Any`, `StreamExists`, several streams) and for retries:
//!   the `append_events` function locks the written streams with transaction-scoped advisory
//!   locks in one fixed order (multi-stream appends cannot deadlock each other; a reported
//!   deadlock, `40P01`, is retried; racing `Any` appends queue behind each other instead of
//!   failing) and checks the versions under the locks, on cached generic plans. A direct
//!   append racing it can still take a version first; the function then meets a unique
//!   violation and is called again.
//!
//! The database enforces the versions through the primary key and the event ids through a
//! unique index. When an id may already be stored (a unique violation on it, a lost
//! connection, a conflict while some ids are stored) the function is called with the ids
//! looked up first: the same events again return the first commit; other content under a
//! stored id is [`StoreError::EventIdReused`](eventsource_core::StoreError::EventIdReused).
//! Errors are told apart by SQLSTATE and constraint name, never by message text; a version
//! mismatch comes back as a row and becomes the typed
//! [`Conflict`](eventsource_core::StoreError::Conflict) with expected and actual versions.
//! `recorded_at` is `max(now(), the stream's last recorded_at)`, so it never decreases
//! within a stream.
//!
//! ## Why the global order never skips
//!
//! A position is `(commit, sequence)`: `commit = era << 48 | xid8` of the writing
//! transaction (`pg_current_xact_id()`, the top-level id even inside subtransactions), and
//! `sequence` a global identity. A reader only passes events whose `commit` is below the
//! *horizon*: `era << 48 | pg_snapshot_xmin(pg_current_snapshot())`, computed in the same
//! statement (so under the same snapshot) that reads the page; its plan walks the position
//! index whatever the table's statistics say (the type filter is written so the planner never
//! takes it to be selective: see `Sql::read_all`). This is safe because:
//!
//! 1. every transaction with an xid below `xmin` has ended when the snapshot is taken, so
//!    all events below the horizon that will ever exist are already committed and visible to
//!    that very snapshot; and
//! 2. every transaction that commits later has an xid at or above `xmin` (it was running, so
//!    `xmin` is at most its xid, or it gets an xid later, at or above `xmax`), so its events
//!    land at or above the horizon: above any position a reader has passed.
//!
//! So a page that is not full has examined every event that will ever exist below the
//! horizon: its `scanned_to` is the newest readable event (of any type, when the read filters
//! by type), and a checkpoint saved there is exact. (`(horizon, 0)` would be safe too, but it
//! moves with every transaction in the cluster, and an idle projection would then write a new
//! checkpoint on every poll.) Reads from a store handle also wait, briefly, until the horizon
//! has passed that handle's own last append, so a caller reads its own writes. Writers to different streams never share a lock: the order comes
//! from xids PostgreSQL assigns anyway. The price: the horizon is cluster-wide, so any long
//! write transaction (in any database of the cluster, a `SELECT ... FOR UPDATE`, a prepared
//! transaction) delays readers until it ends. Nothing is lost, and [`PgStore::lag`] reports
//! who holds it (pid, age, state, query; prepared transactions). The store keeps its own
//! write transactions to one statement and takes leases with session advisory locks, never
//! row locks.
//!
//! ## Eras: dump/restore into another cluster
//!
//! xids belong to a cluster. After a restore into a cluster whose xids are behind the stored
//! ones, new events would get positions below ones readers have passed. On start
//! ([`PgStore::migrate`]) the store compares the newest stored position with the cluster's
//! next xid; if the stored one is ahead it moves to the next era (`store_meta.era`), which is
//! folded into the top bits of every new position, so positions keep increasing. pg_upgrade
//! and physical failover keep xids and need nothing. The direct appends read the era from
//! `store_era()`, an immutable function whose body is the era (the planner folds it in as a
//! constant; reading `store_meta` on every append cost measurable server time): the era
//! check replaces it together with `store_meta` in one transaction, which invalidates every
//! session's cached plans, and repairs it on start if the two disagree.
//!
//! ## Live subscriptions
//!
//! [`EventStore::wait_for_events`](eventsource_core::EventStore::wait_for_events) is woken by
//! a LISTEN on a dedicated connection (re-established with backoff; a reconnect wakes
//! waiters, since notifications may have been missed). The NOTIFY is not sent inside the
//! append: the append only flags a background task, which sends one NOTIFY per burst on its
//! own connection (at most one per 5 ms, with `synchronous_commit = off`: a lost
//! notification costs one poll), so the notification queue's commit lock is off the
//! append's path.
//! A NOTIFY says "committed", not "readable": while committed events wait behind the
//! horizon, waiters poll every [`PgStoreBuilder::poll_interval`].
//!
//! ## Connections
//!
//! sqlx's pool checks every connection handed back to it with a round trip (in case the
//! caller dropped a statement midway; run in the background, but work for the server and
//! the client all the same), so each statement run on the pool costs two. The store's
//! single statements (appends without inline projections, stream and log reads, snapshots,
//! checkpoints) keep the connection they finished on for the store's next operations instead:
//! at most [`PgStoreBuilder::reuse_connections`] connections (half the pool by default, and
//! always one less than the pool's size); an unused one for about 50 ms, after which a
//! background task hands it back; and each passes through the pool at least once a second.
//! The store hands back the connections it cannot vouch for: a read dropped midway, an I/O,
//! protocol or decoding error, the server ending the session. A repository command (a load
//! and an append) so makes the server answer two round trips, not four. Transactions (the
//! transactional runner, inline projections, page streams) and the per-stream lock's
//! waiting take their connections from the pool as before.
//!
//! ## The writers' lock
//!
//! A command that keeps losing races on a hot stream takes the stream's writers' lock
//! ([`EventStore::lock_streams`](eventsource_core::EventStore::lock_streams), through the
//! repository's [`RetryPolicy`](eventsource_core::RetryPolicy)). Here it is a session
//! advisory lock on `hashtextextended('<schema>/<stream>', 11)`, held exclusively and shared
//! by a connection of the lock's own, and every append checks it with a shared,
//! transaction-scoped try-lock on the same key: the direct statements in their `WHERE`
//! clause, `append_events` (migration 0005) before it looks at versions. So while a session
//! holds the lock, or waits for it, appends of other sessions to that stream write nothing
//! and answer [`StoreError::StreamLocked`](eventsource_core::StoreError::StreamLocked); the
//! lock's own appends run on its session and pass. (PostgreSQL refuses a shared try-lock
//! while another session waits for the key, even to the session that holds the key
//! exclusively; holding it shared as well makes the holder's own checks pass at once.)
//! Appends never wait for one another on the check. A waiter from another process is served
//! once the appends in flight commit, in the order the waiters queued; in one process the
//! lockers queue in the store first, so one connection per stream waits, not one per
//! locker. With inline projections, the lock's appends run in a transaction on its session.
//!
//! ## Reads ride out dropped connections
//!
//! Reads are idempotent: one that fails because the server ended its connection (a
//! restart, a failover, `pg_terminate_backend`) or could not serve it for a moment is tried
//! again on a fresh connection, with backoff, for up to
//! [`PgStoreBuilder::read_retry_for`] (10 s by default); a stream read cut midway goes on
//! after the last event it handed out. Appends retry on their own terms (their event ids
//! make a retry after a lost reply safe) and surface after a few attempts.
//!
//! ## Checkpoints
//!
//! [`EventStore::save_checkpoint`](eventsource_core::EventStore::save_checkpoint) (the core
//! runner's checkpoint) commits without waiting for its WAL flush when it moves the checkpoint
//! forward or leaves it (`synchronous_commit = off` for that statement's transaction alone):
//! a server crash before the flush leaves the checkpoint where it was, and the events after
//! it are handled again, as the core runner's at-least-once handlers allow. One that moves
//! back (a rebuild's reset) waits as every other commit does, since losing it would skip
//! events; so does the first one (nothing to gain there). A catch-up so saves a checkpoint per batch without
//! an fsync per batch. The transactional runner ([`PgProjectionRunner`]) commits its
//! checkpoint with its read model, durably.

mod append;
mod builder;
mod conns;
mod context;
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
mod wait;
mod xid;

pub use builder::PgStoreBuilder;
pub use conns::IDLE_CHECK_AFTER;
pub use context::PgProjectionContext;
pub use horizon::{PgHorizonHolder, PgLag, PgPreparedXact};
pub use projection::PgProjectionRunner;
pub use schema::PgSchema;
pub use store::PgStore;
pub use xid::Xid8;
