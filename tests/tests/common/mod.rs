//! Test support: the two stores every end-to-end test runs on (PostgreSQL is the real server
//! named by `DATABASE_URL`, which `scripts/test` sets, each test in a fresh schema of its
//! own), and shorthands for the states the tests expect.

// Not every test binary uses every helper.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use eventsource_core::{EventStore, InMemoryStore, ReadUntil, RecordedEvent, StreamId, Version};
use eventsource_postgres::PgStore;
use eventsource_tests::Balance;
use eventsource_tests::wallet::Wallet;
use futures::TryStreamExt;
use sqlx::{Connection, PgConnection};

/// How long a test waits for a projection to reach a position. Generous: the server is shared
/// with other tests, whose transactions may hold the log's horizon back for a moment.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// The embedded store.
pub(crate) fn in_memory() -> InMemoryStore {
    InMemoryStore::new()
}

/// A PostgreSQL store in a fresh schema at `DATABASE_URL`. Fails the test, on purpose, when
/// `DATABASE_URL` is not set: a PostgreSQL test that quietly skipped would let a run pass
/// without ever touching PostgreSQL.
pub(crate) async fn postgres() -> PgStore {
    let url = database_url();
    drop_stale_schemas(&url).await;
    let schema = unique_schema();
    PgStore::builder()
        .schema(&schema)
        .max_connections(8)
        .connect(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot open a store in schema `{schema}` at DATABASE_URL: {e}"))
}

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "DATABASE_URL is not set: the PostgreSQL tests need a real server. Run them with \
             `scripts/test`, which finds or starts one, or set DATABASE_URL, e.g. \
             DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
        ),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A schema name no other test uses: `es_e2e_<unix seconds>_<pid>_<n>_<random>`.
fn unique_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "es_e2e_{}_{}_{}_{}",
        now_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Drops the schemas earlier runs left (older than an hour), once per test binary, so a
/// long-lived development database does not fill up with them.
async fn drop_stale_schemas(url: &str) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(mut conn) = PgConnection::connect(url).await else {
            return;
        };
        let cutoff = now_secs().saturating_sub(3600);
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace \
             WHERE nspname ~ '^es_e2e_[0-9]+_[0-9]+_[0-9]+_[0-9a-f]{8}$'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        for name in names {
            let stamp = name
                .trim_start_matches("es_e2e_")
                .split('_')
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            if stamp.is_some_and(|s| s < cutoff) {
                // The name matched a plain-identifier pattern above: quoting it is enough.
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        }
    })
    .await;
}

/// Every event of `stream`, as stored.
pub(crate) async fn stored<S: EventStore>(store: &S, stream: &StreamId) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, Version::FIRST, ReadUntil::End)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("cannot read stream `{stream}`: {e}"))
}

/// An open wallet of `owner` with `balance` cents.
pub(crate) fn wallet(owner: &str, balance: i64) -> Wallet {
    Wallet {
        owner: Some(owner.into()),
        balance,
    }
}

/// A read model's line: `owner`'s wallet with `cents`, reflecting its stream up to `version`.
pub(crate) fn balance(owner: &str, cents: i64, version: u64) -> Balance {
    Balance {
        owner: owner.into(),
        cents,
        version,
    }
}
