//! The opt-in per-stream lock for hot streams.

use std::sync::Arc;

use eventsource_core::{StoreError, StreamId};

use crate::conns::{Conns, Kept};
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
/// connection, which releases the lock as well.
///
/// Dropping [`PgStore::lock_stream`]'s future while it waits (a timeout, say) leaves the
/// server waiting: it grants the lock to that session once free. A background task then
/// waits for that reply on the same connection, releases the lock at once and hands the
/// connection back to the pool. (Handing it back as it was would keep the lock in the pool
/// for good; closing it would leave the server's session waiting, since a session blocked
/// on a lock does not notice its client is gone: one more server session for every wait
/// given up, beyond the pool's size.) Until the lock is free, each wait given up so holds
/// one of the pool's connections.
pub struct PgStreamLock {
    conn: Option<Kept>,
    key: String,
    conns: Arc<Conns>,
    /// The server answered the lock statement: the lock is held.
    granted: bool,
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
        // statement fails, the lock's drop sees to the connection.
        let mut lock = PgStreamLock {
            conn: Some(conn),
            key,
            conns: conns.clone(),
            granted: false,
        };
        if let Some(conn) = lock.conn.as_mut() {
            sqlx::query(LOCK_SQL)
                .bind(&lock.key)
                .execute(&mut *conn.conn)
                .await
                .map_err(|e| backend("taking a stream lock", e))?;
        }
        lock.granted = true;
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
            .execute(&mut *conn.conn)
            .await
        {
            Ok(_) => {
                self.conns.put(conn);
                Ok(())
            }
            Err(e) => {
                // The lock state of this connection is unknown: never reuse it.
                drop(conn.conn.detach());
                Err(backend("releasing a stream lock", e))
            }
        }
    }
}

impl Drop for PgStreamLock {
    fn drop(&mut self) {
        let Some(Kept { mut conn, .. }) = self.conn.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current();
        match runtime {
            Ok(runtime) if !self.granted => {
                // The lock statement is still waiting (see the type's docs): the next
                // statement on the connection first reads its reply, so the unlock runs once
                // the lock is granted, and releases it.
                let key = std::mem::take(&mut self.key);
                runtime.spawn(async move {
                    match sqlx::query(UNLOCK_SQL).bind(&key).execute(&mut *conn).await {
                        Ok(_) => drop(conn),
                        Err(error) => {
                            tracing::warn!(%error, "releasing a stream lock given up while waiting");
                            drop(conn.detach());
                        }
                    }
                });
            }
            // Closing the session releases its advisory locks at once; a pooled connection
            // would keep them.
            _ => drop(conn.detach()),
        }
    }
}
