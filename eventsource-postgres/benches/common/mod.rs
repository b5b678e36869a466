//! What the benches share: the pool both sides run on, the hand-written baselines' schema and
//! command, and medians. How they are used: `docs/bench.md`.

#![allow(dead_code)] // each bench uses its part

use eventsource_core::testing::fixtures::CounterEvent;
use eventsource_core::{EventSet, HandlerError, Projection, RecordedEvent};
use eventsource_postgres::{GroupCommit, PgStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

/// Which hand-written baseline: a plain events table, or one with the gap-safe `xid8`
/// column and index (readers below `pg_snapshot_xmin`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Plain,
    GapSafe,
}

/// The server to measure on: `DATABASE_URL`.
pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| panic!("set DATABASE_URL (scripts/test finds or starts a server)"))
}

/// The variable `name` parsed, or `default` when it is unset or does not parse.
pub(crate) fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A new schema name for one timed part.
pub(crate) fn schema() -> String {
    format!("es_bench_{:08x}", fastrand::u32(..))
}

/// A pool of up to `max` connections, configured as the store configures its own (no ping
/// before each use of a busy connection), for both sides: the ratios measure the store's own
/// work.
pub(crate) async fn bench_pool(url: &str, max: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= eventsource_postgres::IDLE_CHECK_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect(url)
        .await
        .unwrap()
}

/// A store in a new schema, migrated through a pool of its own, then working on `pool` (the
/// baselines' pool): both sides run on the same warm connections, so no timed part pays for
/// opening connections that the other side finds open. (Migrating takes a connection out of
/// its pool and closes it, since it changes the connection's `search_path`.)
pub(crate) async fn new_store(url: &str, pool: &PgPool) -> PgStore {
    new_store_grouped(url, pool, None).await
}

/// [`new_store`] with group commit set to `group`.
pub(crate) async fn new_store_grouped(
    url: &str,
    pool: &PgPool,
    group: Option<GroupCommit>,
) -> PgStore {
    let s = schema();
    PgStore::builder()
        .schema(&s)
        .max_connections(2)
        .connect(url)
        .await
        .unwrap();
    on_pool_grouped(pool, &s, group).await
}

/// A handle on the store in schema `s` (already migrated) over `pool`.
pub(crate) async fn on_pool(pool: &PgPool, s: &str) -> PgStore {
    on_pool_grouped(pool, s, None).await
}

/// [`on_pool`] with group commit set to `group`.
pub(crate) async fn on_pool_grouped(pool: &PgPool, s: &str, group: Option<GroupCommit>) -> PgStore {
    PgStore::builder()
        .schema(s)
        .migrate(false)
        .group_commit(group)
        .with_pool(pool.clone())
        .await
        .unwrap()
}

/// A new schema with the baseline's tables, made through `pool`.
pub(crate) async fn baseline_schema(pool: &PgPool, kind: Kind) -> String {
    let s = schema();
    let xid = if kind == Kind::GapSafe {
        "tx xid8 NOT NULL DEFAULT pg_current_xact_id(),"
    } else {
        ""
    };
    for ddl in [
        format!("CREATE SCHEMA {s}"),
        format!(
            "CREATE TABLE {s}.events (id bigserial PRIMARY KEY, {xid} stream_id text NOT NULL, \
             version bigint NOT NULL, event_id uuid NOT NULL UNIQUE, event_type text NOT NULL, \
             payload bytea NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(), \
             UNIQUE (stream_id, version))"
        ),
        format!(
            "CREATE TABLE {s}.snapshots (stream_id text PRIMARY KEY, version bigint NOT NULL, \
             payload bytea NOT NULL)"
        ),
        format!(
            "CREATE TABLE {s}.checkpoints (name text PRIMARY KEY, a bigint NOT NULL, b bigint NOT NULL)"
        ),
    ] {
        sqlx::query(&ddl).execute(pool).await.unwrap();
    }
    if kind == Kind::GapSafe {
        sqlx::query(&format!("CREATE INDEX ON {s}.events (tx, id)"))
            .execute(pool)
            .await
            .unwrap();
    }
    s
}

/// A projection summing the `counter.added` amounts it handles.
pub(crate) struct Sum(pub(crate) i64);

impl Projection for Sum {
    const NAME: &'static str = "bench.sum";
    type Context = ();
    fn event_types() -> Option<&'static [&'static str]> {
        Some(&["counter.added"])
    }
    async fn handle_event(&mut self, e: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.0 += decode_n(&e.payload);
        Ok(())
    }
}

/// The amount a stored `counter.added` payload adds.
pub(crate) fn decode_n(payload: &[u8]) -> i64 {
    match CounterEvent::decode("counter.added", 1, payload).unwrap() {
        CounterEvent::Added(n) => n,
        CounterEvent::Reset => 0,
    }
}

/// The baseline's command on `$on` (an executor, evaluated once per statement): load and
/// fold the stream, append one event at the next version; `false` on a lost race (unique
/// violation).
macro_rules! command_on {
    ($on:expr, $s:expr, $stream:expr) => {{
        let (s, stream) = ($s, $stream);
        let rows = sqlx::query(&format!(
            "SELECT version, payload FROM {s}.events WHERE stream_id = $1 ORDER BY version"
        ))
        .bind(stream)
        .fetch_all($on)
        .await
        .unwrap();
        let mut version = 0i64;
        let mut sum = 0i64;
        for r in &rows {
            version = r.get(0);
            sum += decode_n(r.get::<&[u8], _>(1));
        }
        std::hint::black_box(sum);
        let payload = CounterEvent::Added(1).encode().unwrap();
        match sqlx::query(&format!(
            "INSERT INTO {s}.events (stream_id, version, event_id, event_type, payload) \
             VALUES ($1, $2, $3, 'counter.added', $4)"
        ))
        .bind(stream)
        .bind(version + 1)
        .bind(Uuid::now_v7())
        .bind(payload.as_ref())
        .execute($on)
        .await
        {
            Ok(_) => true,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => false,
            Err(e) => panic!("{e}"),
        }
    }};
}

/// The baseline's command statement by statement on the pool, as hand-written sqlx does
/// (each statement borrows a connection and hands it back).
pub(crate) async fn raw_command(pool: &PgPool, s: &str, stream: &str) -> bool {
    command_on!(pool, s, stream)
}

/// The baseline's command on a connection the task holds (what a hand-tuned service does).
pub(crate) async fn raw_command_held(conn: &mut PgConnection, s: &str, stream: &str) -> bool {
    command_on!(&mut *conn, s, stream)
}

/// The median (the upper one of an even count); NaN for none.
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
