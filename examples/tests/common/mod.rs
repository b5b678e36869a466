//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]
// These helpers fail the calling test by panicking, with a message saying what to fix.
#![allow(clippy::panic)]

use std::time::{SystemTime, UNIX_EPOCH};

use eventsource_core::AnyStore;
use eventsource_examples::store;
use sqlx::{Connection, PgConnection};

/// A PostgreSQL store in a schema of its own (fresh for every call), at `DATABASE_URL`.
///
/// Fails the test, on purpose, when `DATABASE_URL` is not set: a PostgreSQL test that quietly
/// skips would let CI pass without ever touching PostgreSQL.
pub(crate) async fn postgres(test: &str) -> AnyStore {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        panic!(
            "DATABASE_URL is not set: the PostgreSQL tests need a server, e.g. \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p eventsource-examples \
             (or run scripts/test, which finds or starts one)"
        );
    };
    drop_stale_schemas(&url).await;
    let schema = format!(
        "examples_{}_{test}_{}",
        now_secs(),
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

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Drops the schemas of earlier test runs (older than an hour), once per test binary, so a
/// long-lived development database does not fill up with them.
async fn drop_stale_schemas(url: &str) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(mut conn) = PgConnection::connect(url).await else {
            return;
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^examples_[0-9]+_[a-z_]+_[0-9a-f]{8}$'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        let cutoff = now_secs().saturating_sub(3600);
        for name in names {
            let stamp = name.split('_').nth(1).and_then(|s| s.parse::<u64>().ok());
            if stamp.is_some_and(|s| s < cutoff) {
                // The pattern above admits plain identifiers only: the quoting is complete.
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        }
    })
    .await;
}
