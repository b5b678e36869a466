//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]
// These helpers fail the calling test by panicking, with a message saying what to fix.
#![allow(clippy::panic)]

use eventsource_core::AnyStore;
use eventsource_examples::store;

/// A PostgreSQL store in a schema of its own (fresh for every call), at `DATABASE_URL`.
///
/// Fails the test, on purpose, when `DATABASE_URL` is not set: a PostgreSQL test that quietly
/// skips would let CI pass without ever touching PostgreSQL.
pub(crate) async fn postgres(test: &str) -> AnyStore {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        panic!(
            "DATABASE_URL is not set: the PostgreSQL tests need a server, e.g. \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p eventsource-examples"
        );
    };
    let schema = format!(
        "examples_{test}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    match store::postgres(&url, &schema).await {
        Ok(chosen) => chosen.store,
        Err(e) => {
            panic!("cannot open the PostgreSQL store at DATABASE_URL in schema `{schema}`: {e}")
        }
    }
}

/// The embedded in-memory store.
pub(crate) fn in_memory() -> AnyStore {
    store::in_memory().store
}
