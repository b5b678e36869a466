//! The opt-in per-stream lock for hot streams.

use std::sync::Arc;

use eventsource_core::{StoreError, StreamId};
use sqlx::Postgres;
use sqlx::pool::PoolConnection;

use crate::conns::Conns;
use crate::errors::backend;
use crate::store::PgStore;

/// A held per-stream lock (a session advisory lock on a pooled connection of its own).
///
/// On a hot stream, optimistic appends from many writers mostly conflict and retry. Holding
/// the stream's lock around load + decide + append serialises the writers instead, so none
/// of them conflicts: take it with [`PgStore::lock_stream`] and run the command (for example
/// `Repository::execute`) while holding it. It only excludes other holders of the same
/// stream's lock; appends that do not take it still work (optimistically). Session advisory
/// locks hold no transaction open, so they never hold back the log's horizon.
///
/// Release it with [`PgStreamLock::release`]. Dropping it without releasing closes its
/// connection, which releases the lock as well; so does dropping [`PgStore::lock_stream`]'s
/// future while it waits (a timeout, say): the connection that asked for the lock is closed,
/// never handed back to the pool, where it would take the lock once granted and keep it.
pub struct PgStreamLock {
    conn: Option<PoolConnection<Postgres>>,
    key: String,
    conns: Arc<Conns>,
}

impl std::fmt::Debug for PgStreamLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStreamLock")
            .field("key", &self.key)
            .finish()
    }
}

const LOCK_SQL: &str = "SELECT pg_advisory_lock(hashtextextended($1, 11))";
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock(hashtextextended($1, 11))";

impl PgStore {
    /// Waits for and takes the per-stream lock of `stream` (see [`PgStreamLock`]). It uses
    /// one pooled connection while held: size the pool for it.
    pub async fn lock_stream(&self, stream: &StreamId) -> Result<PgStreamLock, StoreError> {
        let key = format!("{}/{}", self.schema().as_str(), stream.as_str());
        let conns = self.conns();
        let conn = conns
            .get()
            .await
            .map_err(|e| backend("acquiring a connection for a stream lock", e))?
            .into_inner();
        // Held by the lock from here on: if this future is dropped while it waits, or the
        // statement fails, the lock's drop closes the connection.
        let mut lock = PgStreamLock {
            conn: Some(conn),
            key,
            conns: conns.clone(),
        };
        if let Some(conn) = lock.conn.as_mut() {
            sqlx::query(LOCK_SQL)
                .bind(&lock.key)
                .execute(&mut **conn)
                .await
                .map_err(|e| backend("taking a stream lock", e))?;
        }
        Ok(lock)
    }
}

impl PgStreamLock {
    /// Releases the lock; the store uses its connection next.
    pub async fn release(mut self) -> Result<(), StoreError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        match sqlx::query(UNLOCK_SQL)
            .bind(&self.key)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {
                self.conns.put(conn);
                Ok(())
            }
            Err(e) => {
                // The lock state of this connection is unknown: never reuse it.
                drop(conn.detach());
                Err(backend("releasing a stream lock", e))
            }
        }
    }
}

impl Drop for PgStreamLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Closing the session releases its advisory locks; a pooled connection would
            // keep them.
            drop(conn.detach());
        }
    }
}
