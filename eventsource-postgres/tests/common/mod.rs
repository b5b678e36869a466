//! Shared test support: every test gets a store in a fresh schema of its own on the real
//! server named by `DATABASE_URL` (`scripts/test` sets it). No mocks.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};

use eventsource_postgres::{PgStore, PgStoreBuilder};

/// The server to test against. Panics, failing the test, when it is not configured: these
/// tests never skip silently.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the PostgreSQL tests need a real server. \
             Run them with `scripts/test`, which finds or starts one, or set DATABASE_URL."
        ),
    }
}

/// A schema name no other test uses.
pub fn unique_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "es_test_{}_{}_{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// Options for a test store in a fresh schema.
pub fn builder() -> PgStoreBuilder {
    PgStore::builder()
        .schema(&unique_schema())
        .max_connections(12)
}

/// A store in a fresh schema.
pub async fn fresh_store() -> PgStore {
    builder()
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("cannot open a test store at DATABASE_URL: {e:?}"))
}
