//! The writers' lock of streams
//! ([`EventStore::lock_streams`](eventsource_core::EventStore::lock_streams)): a session
//! advisory lock per stream, on a pooled connection of the lock's own, behind the store's
//! in-process queue ([`LocalLocks`](eventsource_core::store::lock::LocalLocks)). How appends
//! check it and in what order waiters are served: the crate docs'
//! [The writers' lock](crate#the-writers-lock).

use eventsource_core::store::lock::{LocalGuard, LockedStreams};
use eventsource_core::{Commit, StoreError, StreamId, StreamLock, StreamWrite};
use futures::future::BoxFuture;

use crate::conns::Kept;
use crate::errors::{backend, in_step};
use crate::sql::WRITERS_LOCK_SEED;
use crate::store::PgStore;

/// A held writers' lock, behind the core's [`StreamLock`].
///
/// Dropping the lock's [`take`] future while it waits for the server (a timeout, say) leaves
/// the server waiting: it grants the lock to that session once free. A background task then
/// waits for that reply on the same connection, releases the lock at once and hands the
/// connection back to the pool. (Handing it back as it was would keep the lock in the pool
/// for good; closing it would leave the server's session waiting, since a session blocked
/// on a lock does not notice its client is gone: one more server session for every wait
/// given up, beyond the pool's size.) Until the lock is free, each wait given up so holds
/// one of the pool's connections.
struct PgWritersLock {
    store: PgStore,
    /// The lock's session; `None` once it is gone (and the lock with it).
    conn: Option<Kept>,
    /// The keys' texts (`<schema>/<stream>`), in lock order.
    keys: Vec<String>,
    /// The server answered the lock statement: the lock is held.
    granted: bool,
    /// The in-process queue's hold, let go after the server's lock (fields drop last).
    _local: LocalGuard,
}

fn lock_sql() -> String {
    // One statement takes every key, in the order of their values (the same order in every
    // process, so two multi-stream locks never wait on each other in a cycle): first
    // exclusively, then shared as well. The session's own appends check the lock with a
    // shared try-lock, which PostgreSQL refuses while another session waits for the key,
    // however exclusive this session's hold; one it holds in that mode already passes at
    // once. (Every exclusive lock is granted before the first shared one is asked for: the
    // join's first row needs `ex`'s.)
    format!(
        "WITH keys AS MATERIALIZED (SELECT DISTINCT hashtextextended(s, {WRITERS_LOCK_SEED}) AS k \
           FROM unnest($1::text[]) AS s ORDER BY 1), \
         ex AS MATERIALIZED (SELECT count(pg_advisory_lock(k)) AS n FROM keys) \
         SELECT count(pg_advisory_lock_shared(keys.k)) FROM keys CROSS JOIN ex"
    )
}

/// The lock's connection holds no other advisory lock.
const UNLOCK_SQL: &str = "SELECT pg_advisory_unlock_all()";

/// Waits for and takes the writers' lock of `streams` (sorted, without duplicates).
pub(crate) async fn take(
    store: &PgStore,
    streams: Vec<StreamId>,
) -> Result<StreamLock, StoreError> {
    let local = store.local_locks().lock(&streams).await;
    let schema = store.schema().as_str();
    let keys = streams
        .iter()
        .map(|s| format!("{schema}/{}", s.as_str()))
        .collect();
    let conn = store
        .conns()
        .get()
        .await
        .map_err(|e| backend("acquiring a connection for a writers' lock", e))?
        .into_inner();
    // Held by the lock from here on: if this future is dropped while it waits, or the
    // statement fails, the lock's drop sees to the connection.
    let mut lock = PgWritersLock {
        store: store.clone(),
        conn: None,
        keys,
        granted: false,
        _local: local,
    };
    let kept = lock.conn.insert(conn);
    let locked = sqlx::query(&lock_sql())
        .bind(&lock.keys)
        .execute(&mut *kept.conn)
        .await;
    match locked {
        Ok(_) => {
            lock.granted = true;
            Ok(StreamLock::new(streams, Box::new(lock)))
        }
        Err(e) => {
            if in_step(&e) {
                // The server answered (a lock timeout, a cancel): nothing is held or
                // pending, and the pool may take the connection back as it is.
                drop(lock.conn.take());
            }
            Err(backend("taking a writers' lock", e))
        }
    }
}

impl LockedStreams for PgWritersLock {
    fn append(&mut self, writes: Vec<StreamWrite>) -> BoxFuture<'_, Result<Commit, StoreError>> {
        Box::pin(self.store.append_as(writes, Some(&mut self.conn)))
    }

    fn release(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            // The connection stays with the lock until the server confirms the release: if
            // this future is dropped before that, the lock's drop closes the connection,
            // which releases the lock too.
            let Some(kept) = self.conn.as_mut() else {
                return Ok(());
            };
            let unlocked = sqlx::query(UNLOCK_SQL).execute(&mut *kept.conn).await;
            match (unlocked, self.conn.take()) {
                (Ok(_), Some(kept)) => {
                    self.store.conns().put(kept);
                    Ok(())
                }
                (Ok(_), None) => Ok(()),
                (Err(e), kept) => {
                    // The lock state of this connection is unknown: never reuse it.
                    if let Some(kept) = kept {
                        self.store.conns().close(kept.conn);
                    }
                    Err(backend("releasing a writers' lock", e))
                }
            }
        })
    }
}

impl Drop for PgWritersLock {
    fn drop(&mut self) {
        let Some(Kept { mut conn, .. }) = self.conn.take() else {
            return;
        };
        let conns = self.store.conns().clone();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if !self.granted => {
                // The lock statement may still be waiting (see the type's docs): the next
                // statement on the connection first reads what is left of its reply, so the
                // unlock runs once the lock is granted, and releases it. (A lock statement
                // that was never sent is never granted: the unlock then finds nothing.)
                runtime.spawn(async move {
                    match sqlx::query(UNLOCK_SQL).execute(&mut *conn).await {
                        Ok(_) => drop(conn),
                        Err(error) => {
                            tracing::warn!(%error, "releasing a writers' lock given up while waiting");
                            conns.close(conn);
                        }
                    }
                });
            }
            // Closing the session releases its advisory locks at once; a pooled connection
            // would keep them.
            _ => conns.close(conn),
        }
    }
}
