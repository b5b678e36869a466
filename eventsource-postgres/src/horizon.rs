//! Lag and what holds the horizon back.

use chrono::{DateTime, Utc};
use eventsource_core::{Position, StoreError};
use sqlx::{PgPool, Row};

use crate::errors::backend;
use crate::rows::position_from;
use crate::sql::Sql;
use crate::xid::Xid8;

/// How far readers are behind writers, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct PgLag {
    /// Readers pass every event below this position; events at or above it wait.
    pub horizon: Position,
    /// The oldest transaction id still running in the cluster (`pg_snapshot_xmin`).
    pub xmin: u64,
    /// The next transaction id the cluster will assign (`pg_snapshot_xmax`).
    pub next_xid: u64,
    /// The newest committed event, readable or not ([`Position::ZERO`] if none).
    pub newest_committed: Position,
    /// How many committed events wait behind the horizon.
    pub events_behind: u64,
    /// Sessions with a running write transaction, oldest first: the first holds the horizon.
    pub holders: Vec<PgHorizonHolder>,
    /// Prepared (two-phase) transactions, oldest first: they hold the horizon even across a
    /// server restart until committed or rolled back.
    pub prepared: Vec<PgPreparedXact>,
}

/// A session whose running transaction holds the horizon (from `pg_stat_activity`).
#[derive(Clone, Debug, PartialEq)]
pub struct PgHorizonHolder {
    /// The backend's process id (`pg_terminate_backend(pid)` ends it).
    pub pid: i32,
    /// Its database.
    pub database: Option<String>,
    /// Its user.
    pub user: Option<String>,
    /// Its application name.
    pub application: Option<String>,
    /// Its state (`active`, `idle in transaction`, ...).
    pub state: Option<String>,
    /// When its transaction began.
    pub xact_start: Option<DateTime<Utc>>,
    /// How long its transaction has been running, in seconds.
    pub age_seconds: f64,
    /// Its current or last query (may be hidden without `pg_read_all_stats`).
    pub query: Option<String>,
}

/// A prepared transaction (from `pg_prepared_xacts`).
#[derive(Clone, Debug, PartialEq)]
pub struct PgPreparedXact {
    /// Its global id (`COMMIT PREPARED 'gid'` ends it).
    pub gid: String,
    /// When it was prepared.
    pub prepared_at: DateTime<Utc>,
    /// Its owner.
    pub owner: Option<String>,
    /// Its database.
    pub database: Option<String>,
}

/// The lag of the store whose statements are `sql`, measured on `pool`
/// ([`PgStore::lag`](crate::PgStore::lag)).
pub(crate) async fn lag(pool: &PgPool, sql: &Sql) -> Result<PgLag, StoreError> {
    let row = sqlx::query(&sql.lag)
        .fetch_one(pool)
        .await
        .map_err(|e| backend("measuring the lag", e))?;
    let get = |e| backend("measuring the lag", e);
    let era: i64 = row.try_get(0).map_err(get)?;
    let xmin: Xid8 = row.try_get(1).map_err(get)?;
    let next_xid: Xid8 = row.try_get(2).map_err(get)?;
    let newest_commit: Option<i64> = row.try_get(3).map_err(get)?;
    let newest_seq: Option<i64> = row.try_get(4).map_err(get)?;
    let behind: i64 = row.try_get(5).map_err(get)?;
    let horizon_commit = (u64::try_from(era).unwrap_or(0) << 48) | xmin.0;
    let holders = sqlx::query(
        "SELECT pid, datname::text, usename::text, application_name, state, xact_start, \
           coalesce(extract(epoch FROM now() - xact_start), 0)::float8, query \
         FROM pg_stat_activity \
         WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() \
         ORDER BY age(backend_xid) DESC LIMIT 20",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| backend("listing what holds the horizon", e))?
    .iter()
    .map(|r| {
        Ok(PgHorizonHolder {
            pid: r.try_get(0)?,
            database: r.try_get(1)?,
            user: r.try_get(2)?,
            application: r.try_get(3)?,
            state: r.try_get(4)?,
            xact_start: r.try_get(5)?,
            age_seconds: r.try_get(6)?,
            query: r.try_get(7)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(|e| backend("listing what holds the horizon", e))?;
    let prepared = sqlx::query(
        "SELECT gid, prepared, owner::text, database::text FROM pg_prepared_xacts \
         ORDER BY age(transaction) DESC",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| backend("listing prepared transactions", e))?
    .iter()
    .map(|r| {
        Ok(PgPreparedXact {
            gid: r.try_get(0)?,
            prepared_at: r.try_get(1)?,
            owner: r.try_get(2)?,
            database: r.try_get(3)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()
    .map_err(|e| backend("listing prepared transactions", e))?;
    Ok(PgLag {
        horizon: Position::new(horizon_commit, 0),
        xmin: xmin.0,
        next_xid: next_xid.0,
        newest_committed: newest_commit
            .zip(newest_seq)
            .and_then(|(c, s)| position_from(c, s))
            .unwrap_or(Position::ZERO),
        events_behind: u64::try_from(behind).unwrap_or(0),
        holders,
        prepared,
    })
}
