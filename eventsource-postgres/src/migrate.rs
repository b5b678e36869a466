//! Creating and upgrading the store's schema, and checking its era on start.

use eventsource_core::StoreError;
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection, PgPool};
use tracing::Instrument;

use crate::errors::backend;
use crate::schema::PgSchema;
use crate::xid::Xid8;

/// The store's migrations: plain SQL files with unqualified names, run with `search_path` set
/// to the store's schema. Migrations that a newer binary applied and this one does not know
/// are let be: every migration only adds (a table, a column with a default, a function that
/// keeps its signature), so a process of this version restarting during a rolling upgrade,
/// after a newer one migrated the schema, starts and works beside it.
fn migrator() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.set_ignore_missing(true);
    migrator
}

/// The advisory lock key that serialises store setup across processes (any schema).
const SETUP_LOCK: i64 = 0x6576_656e_7473_7263; // "eventsrc"

/// Creates the schema if needed and applies pending migrations, then bumps the era if the
/// stored positions come from another cluster. Safe to run from many processes at once: all of
/// it happens under a session advisory lock, on a connection of its own that is closed after.
pub(crate) async fn migrate(pool: &PgPool, schema: &PgSchema) -> Result<(), StoreError> {
    let span = tracing::info_span!("migrate", schema = schema.as_str());
    async {
        let conn = pool
            .acquire()
            .await
            .map_err(|e| backend("connecting to migrate", e))?;
        // This connection's search_path is changed below; it never goes back to the pool.
        let mut conn = conn.detach();
        let result = migrate_on(&mut conn, schema).await;
        let closed = conn.close().await;
        result?;
        closed.map_err(|e| backend("closing the migration connection", e))
    }
    .instrument(span)
    .await
}

async fn migrate_on(conn: &mut PgConnection, schema: &PgSchema) -> Result<(), StoreError> {
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| backend("reading the server version", e))?;
    if version < 130_000 {
        return Err(StoreError::Config(format!(
            "PostgreSQL {version} is too old: the store needs 13 or newer (xid8, pg_current_snapshot)"
        )));
    }
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(SETUP_LOCK)
        .execute(&mut *conn)
        .await
        .map_err(|e| backend("taking the setup lock", e))?;
    let result = setup_locked(conn, schema).await;
    let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(SETUP_LOCK)
        .execute(&mut *conn)
        .await;
    result?;
    unlocked
        .map(|_| ())
        .map_err(|e| backend("releasing the setup lock", e))
}

async fn setup_locked(conn: &mut PgConnection, schema: &PgSchema) -> Result<(), StoreError> {
    let q = schema.quoted();
    sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {q}"))
        .execute(&mut *conn)
        .await
        .map_err(|e| backend("creating the schema", e))?;
    sqlx::query(&format!("SET search_path TO {q}"))
        .execute(&mut *conn)
        .await
        .map_err(|e| backend("setting search_path", e))?;
    migrator().run_direct(&mut *conn).await.map_err(|e| {
        StoreError::Config(format!(
            "migrating schema `{schema}` failed: {e} (source: {:?})",
            std::error::Error::source(&e).map(|s| s.to_string())
        ))
    })?;
    check_era(conn, schema).await
}

/// Positions fold an era above the xid (`era << 48 | xid8`). After a dump/restore into another
/// cluster the stored xids may be ahead of this cluster's: then new transactions would get
/// positions below ones readers have passed. Detect that and move to the next era, whose
/// positions are above every stored one.
async fn check_era(conn: &mut PgConnection, schema: &PgSchema) -> Result<(), StoreError> {
    let q = schema.quoted();
    let (era, folded, next_xid, newest): (i64, i64, Xid8, Option<i64>) = sqlx::query_as(&format!(
        "SELECT m.era, {q}.store_era(), pg_snapshot_xmax(pg_current_snapshot()), \
           (SELECT max(commit_id) FROM {q}.events) FROM {q}.store_meta m"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| backend("reading the era", e))?;
    let Ok(xid) = i64::try_from(next_xid.0) else {
        return Err(StoreError::Config(format!(
            "the cluster's next xid8 {} does not fit a position",
            next_xid.0
        )));
    };
    if xid >= 1 << 48 {
        return Err(StoreError::Config(format!(
            "the cluster's next xid8 {xid} is beyond 2^48 and does not fit a position"
        )));
    }
    let new_era = match newest {
        Some(newest) if newest >= (era << 48) | xid => (newest >> 48) + 1,
        _ if folded != era => {
            tracing::warn!(
                era,
                folded,
                "store_era() disagreed with store_meta: replaced"
            );
            return set_era(conn, schema, era).await;
        }
        _ => return Ok(()),
    };
    tracing::warn!(
        old_era = era,
        new_era,
        "stored transaction ids are ahead of this cluster's (restored from another cluster?): \
         moving to a new era so positions keep increasing"
    );
    set_era(conn, schema, new_era).await
}

/// Records `era` in `store_meta` and in `store_era()` (migration 0003), in one transaction.
async fn set_era(conn: &mut PgConnection, schema: &PgSchema, era: i64) -> Result<(), StoreError> {
    let q = schema.quoted();
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| backend("bumping the era", e))?;
    sqlx::query(&format!("UPDATE {q}.store_meta SET era = $1"))
        .bind(era)
        .execute(&mut *tx)
        .await
        .map_err(|e| backend("bumping the era", e))?;
    // The era is a number (never text from outside), so it can be the function's body.
    sqlx::query(&format!(
        "CREATE OR REPLACE FUNCTION {q}.store_era() RETURNS bigint LANGUAGE sql IMMUTABLE \
         PARALLEL SAFE AS 'SELECT {era}::bigint'"
    ))
    .execute(&mut *tx)
    .await
    .map_err(|e| backend("bumping the era", e))?;
    tx.commit().await.map_err(|e| backend("bumping the era", e))
}
