//! The domain the workspace-level end-to-end tests run, written as a user of the toolkit would
//! write it: plain structs and the derives of `eventsource-core`, nothing else.
//!
//! - [`wallet`]: a prepaid wallet as the application ships it now (amounts in cents), with the
//!   upcast of the top-ups version 1 stored;
//! - [`v1`]: the same domain as version 1 of the application shipped it (whole euros, an older
//!   snapshot schema), so the upgrade tests can write streams with the older code itself;
//! - [`balances`]: a read model in memory, fed by the core `ProjectionRunner` on any store;
//! - [`pg_balances`]: the same read model as a table, fed by PostgreSQL's transactional
//!   `PgProjectionRunner` in the transaction that saves its checkpoint.
//!
//! Both read models show a wallet as a [`Balance`], so a test can check that they agree.
//!
//! The tests are in `tests/tests/`, each written once, generic over the store, and run on the
//! in-memory store and on PostgreSQL (at `DATABASE_URL`; without it they fail, never skip):
//! `wallet_story.rs` tells one story through every part of the public API a service uses, and
//! `upgrade.rs` hands streams written by version 1 to the current version.

pub mod balances;
pub mod pg_balances;
pub mod v1;
pub mod wallet;

/// One wallet as a read model shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Who owns the wallet.
    pub owner: String,
    /// The balance, in cents.
    pub cents: i64,
    /// The last version of the wallet's stream reflected.
    pub version: u64,
}

/// The wallet id of a wallet stream (`"wallet-ada"` is wallet `"ada"`); the whole stream id
/// for a stream that is not an aggregate's.
fn wallet_id(stream: &eventsource_core::StreamId) -> String {
    stream
        .aggregate_parts()
        .map_or_else(|| stream.as_str().to_owned(), |(_, id)| id.to_owned())
}
