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
/// one of the pool's connections, which the lock's holder may need for its own command:
/// size the pool for the waits you give up, or take locks through a store on a pool of
/// their own.
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
            conn: None,
            key,
            conns: conns.clone(),
            granted: false,
        };
        let kept = lock.conn.insert(conn);
        let locked = sqlx::query(LOCK_SQL)
            .bind(&lock.key)
            .execute(&mut *kept.conn)
            .await;
        let answered = crate::conns::in_step(&locked);
        match locked {
            Ok(_) => {
                lock.granted = true;
                Ok(lock)
            }
            Err(e) => {
                if answered {
                    // The server answered (a lock timeout, a cancel): nothing is held or
                    // pending, and the pool may take the connection back as it is.
                    drop(lock.conn.take());
                }
                Err(backend("taking a stream lock", e))
            }
        }
    }
}

impl PgStreamLock {
    /// Releases the lock; the store uses its connection next.
    ///
    /// The connection stays with the lock until the server confirms the release: if this
    /// future is dropped before that, the lock's drop closes the connection, which releases
    /// the lock too.
    pub async fn release(mut self) -> Result<(), StoreError> {
        let Some(kept) = self.conn.as_mut() else {
            return Ok(());
        };
        let unlocked = sqlx::query(UNLOCK_SQL)
            .bind(&self.key)
            .execute(&mut *kept.conn)
            .await;
        match (unlocked, self.conn.take()) {
            (Ok(_), Some(kept)) => {
                self.conns.put(kept);
                Ok(())
            }
            (Ok(_), None) => Ok(()),
            (Err(e), kept) => {
                // The lock state of this connection is unknown: never reuse it.
                if let Some(kept) = kept {
                    self.conns.close(kept.conn);
                }
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
                // The lock statement may still be waiting (see the type's docs): the next
                // statement on the connection first sends what is left of it and reads its
                // reply, so the unlock runs once the lock is granted, and releases it. (A lock
                // statement that was never sent is never granted: the unlock then finds
                // nothing to release.)
                let key = std::mem::take(&mut self.key);
                let conns = self.conns.clone();
                runtime.spawn(async move {
                    match sqlx::query(UNLOCK_SQL).bind(&key).execute(&mut *conn).await {
                        Ok(_) => drop(conn),
                        Err(error) => {
                            tracing::warn!(%error, "releasing a stream lock given up while waiting");
                            conns.close(conn);
                        }
                    }
                });
            }
            // Closing the session releases its advisory locks at once; a pooled connection
            // would keep them.
            _ => self.conns.close(conn),
        }
    }
}
