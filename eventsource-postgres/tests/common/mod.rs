//! Shared test support: every test gets a store in a fresh schema of its own on the real
//! server named by `DATABASE_URL` (`scripts/test` sets it). No mocks.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use eventsource_core::{
    EventId, ExpectedVersion, NewEvent, RecordedEvent, StoreError, StreamWrite,
};
use eventsource_postgres::{PgStore, PgStoreBuilder};
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::{Connection, PgConnection};

pub mod cluster;
pub mod database;
pub mod proxy;

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

/// `DATABASE_URL` with an application name, to find a store's sessions in pg_stat_activity.
pub fn url_with_application(name: &str) -> String {
    let url = database_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}application_name={name}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A schema name no other test uses: `es_test_<unix seconds>_<pid>_<n>_<random>`.
pub fn unique_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "es_test_{}_{}_{}_{:08x}",
        now_secs(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

/// Drops test schemas older than an hour (left by earlier runs), once per test binary.
async fn drop_stale_schemas() {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let Ok(mut conn) = PgConnection::connect(&database_url()).await else {
            return;
        };
        let cutoff = now_secs().saturating_sub(3600);
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname ~ '^es_test_[0-9]+_'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap_or_default();
        for name in names {
            let stamp = name
                .trim_start_matches("es_test_")
                .split('_')
                .next()
                .and_then(|s| s.parse::<u64>().ok());
            if stamp.is_some_and(|s| s < cutoff) {
                // The name matched a plain-identifier pattern above; quoting is complete.
                let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                    .execute(&mut conn)
                    .await;
            }
        }
    })
    .await;
}

/// Options for a test store in a fresh schema.
pub fn builder() -> PgStoreBuilder {
    PgStore::builder()
        .schema(&unique_schema())
        .max_connections(12)
}

/// A store in a fresh schema.
pub async fn fresh_store() -> PgStore {
    drop_stale_schemas().await;
    builder()
        .connect(&database_url())
        .await
        .unwrap_or_else(|e| panic!("cannot open a test store at DATABASE_URL: {e:?}"))
}

/// A second store on the same schema as `store` (another "process").
pub async fn same_schema(store: &PgStore, url: &str) -> PgStore {
    PgStore::builder()
        .schema(store.schema().as_str())
        .max_connections(12)
        .connect(url)
        .await
        .expect("second store")
}

/// A raw connection of its own.
pub async fn raw() -> PgConnection {
    PgConnection::connect(&database_url())
        .await
        .expect("raw connection")
}

/// An event with payload `{"n":n}`.
pub fn event(n: u64) -> NewEvent {
    NewEvent::new("test.added", 1, format!("{{\"n\":{n}}}").into_bytes())
}

/// A write of `events` to `stream`.
pub fn write(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite::new(stream, expected, events)
}

/// The horizon is cluster-wide: a test that holds a write transaction open on purpose holds
/// back every reader of every other test. Such a test takes this exclusively; the others of
/// the binary share it.
static HORIZON: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Shared use of the horizon (most tests).
pub async fn horizon_shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    HORIZON.read().await
}

/// Exclusive use of the horizon (a test that holds it back on purpose, or whose pages must
/// not be cut short by another test's transaction).
pub async fn horizon_exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    HORIZON.write().await
}

/// The ids of the next `n` events of a subscription, each within 10 s (`why`: what should have
/// delivered them, for the failure message).
pub async fn next_ids(
    sub: &mut BoxStream<'static, Result<RecordedEvent, StoreError>>,
    n: usize,
    why: &str,
) -> Vec<EventId> {
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
            .await
            .unwrap_or_else(|_| panic!("{why}: only {} of {n} delivered", seen.len()))
            .expect("stream")
            .expect("event");
        seen.push(next.id);
    }
    seen
}

/// Terminates every session of the application `app` (a process "dies", or is cut off);
/// returns how many there were.
pub async fn kill_sessions(app: &str) -> i64 {
    let mut conn = raw().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(app)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    killed.len() as i64
}
