//! The writers' lock of streams
//! ([`EventStore::lock_streams`](eventsource_core::EventStore::lock_streams)): a session
//! advisory lock per stream, on a pooled connection of the lock's own, behind the store's
//! in-process queue ([`LocalLocks`](eventsource_core::store::lock::LocalLocks)). How appends
//! check it and in what order waiters are served: the crate docs'
//! [The writers' lock](crate#the-writers-lock).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventsource_core::store::lock::{LocalGuard, LockedStreams};
use eventsource_core::{Commit, StoreError, StreamId, StreamLock, StreamWrite};
use futures::future::BoxFuture;

use crate::conns::{Conns, Kept};
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
    /// The locked streams.
    streams: Vec<StreamId>,
    /// How many times this session's hold was handed on before, and since when it holds.
    handed: u32,
    held_since: Instant,
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

/// How many times in a row a session's hold on a stream is handed on to the next locker of
/// this process, and for how long at most, before it is released for the lockers of other
/// processes (queued on the server meanwhile: they are served next).
const HANDOFF_MAX: u32 = 8;
const HANDOFF_HOLD: Duration = Duration::from_millis(50);

/// How long a handed-on hold waits for the next locker to take it before it is released.
const HANDOFF_WAIT: Duration = Duration::from_millis(5);

/// Holds handed on between lockers of this process: a locker of one stream that releases
/// while another waits for it in the in-process queue leaves its session (still holding the
/// server's lock) here, and the next one takes it without a round trip to lock or unlock.
/// On a hot stream, where every command runs under the lock, that halves the round trips
/// of each. The hold is handed on at most [`HANDOFF_MAX`] times or for [`HANDOFF_HOLD`],
/// then released, so other processes get their turn; one nobody takes within
/// [`HANDOFF_WAIT`] is released.
#[derive(Default)]
pub(crate) struct Handoffs {
    parked: Arc<std::sync::Mutex<HashMap<StreamId, Parked>>>,
    next: std::sync::atomic::AtomicU64,
}

/// A handed-on hold. Dropped untaken (the store shutting down, the runtime gone before the
/// release task ran), it closes its session, which releases the server's lock: pooled, the
/// session would keep it.
struct Parked {
    /// The session holding the lock; `None` once taken.
    kept: Option<Kept>,
    conns: Arc<Conns>,
    handed: u32,
    held_since: Instant,
    /// Which parking this is, so a late release task leaves a newer one alone.
    ticket: u64,
}

impl Handoffs {
    fn take(&self, stream: &StreamId) -> Option<Parked> {
        self.parked.lock().ok()?.remove(stream)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        if let Some(kept) = self.kept.take() {
            self.conns.close(kept.conn);
        }
    }
}

/// Waits for and takes the writers' lock of `streams` (sorted, without duplicates).
pub(crate) async fn take(
    store: &PgStore,
    streams: Vec<StreamId>,
) -> Result<StreamLock, StoreError> {
    let local = store.local_locks().lock(&streams).await;
    let schema = store.schema().as_str();
    let keys: Vec<String> = streams
        .iter()
        .map(|s| format!("{schema}/{}", s.as_str()))
        .collect();
    if let [stream] = streams.as_slice()
        && let Some(mut parked) = store.handoffs().take(stream)
        && let Some(kept) = parked.kept.take()
    {
        // Handed on by the locker before: the session holds the server's lock already.
        let lock = PgWritersLock {
            store: store.clone(),
            streams: streams.clone(),
            handed: parked.handed + 1,
            held_since: parked.held_since,
            conn: Some(kept),
            keys,
            granted: true,
            _local: local,
        };
        return Ok(StreamLock::new(streams, Box::new(lock)));
    }
    // A hold parked for one of these streams (handed on to this process's next locker of it
    // alone) would keep this lock waiting on the server until its release task ran: let it
    // go now (dropped, it closes its session, which releases it).
    if streams.len() > 1 {
        for stream in &streams {
            drop(store.handoffs().take(stream));
        }
    }
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
        streams: streams.clone(),
        handed: 0,
        // Set when the server grants the lock.
        held_since: Instant::now(),
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
            lock.held_since = Instant::now();
            Ok(StreamLock::new(streams, Box::new(lock)))
        }
        Err(e) => {
            if in_step(&e)
                && let Some(kept) = lock.conn.take()
            {
                // The server answered (a lock timeout, a cancel): nothing is pending, but
                // the keys granted before the failure stay held (session advisory locks
                // ignore the rollback). Closing the session releases them; pooled, it
                // would keep them.
                store.conns().close(kept.conn);
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
            if self.hand_on() {
                return Ok(());
            }
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

impl PgWritersLock {
    /// Hands the session's hold on to the next locker of this process, if one waits for this
    /// (single) stream and the hold may go on; whether it did.
    fn hand_on(&mut self) -> bool {
        let [stream] = self.streams.as_slice() else {
            return false;
        };
        if self.handed >= HANDOFF_MAX
            || self.held_since.elapsed() >= HANDOFF_HOLD
            || !self.store.local_locks().awaited(&self.streams)
        {
            return false;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return false;
        };
        let Some(kept) = self.conn.take() else {
            return false;
        };
        let handoffs = self.store.handoffs();
        let ticket = handoffs
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let parked = Parked {
            kept: Some(kept),
            conns: self.store.conns().clone(),
            handed: self.handed,
            held_since: self.held_since,
            ticket,
        };
        match handoffs.parked.lock() {
            Ok(mut map) => {
                map.insert(stream.clone(), parked);
            }
            Err(_) => return false,
        }
        // Released if the next locker does not come for it (it gave up waiting).
        let (map, stream, conns) = (
            Arc::clone(&handoffs.parked),
            stream.clone(),
            self.store.conns().clone(),
        );
        runtime.spawn(async move {
            tokio::time::sleep(HANDOFF_WAIT).await;
            let left = map.lock().ok().and_then(|mut m| {
                let mine = m.get(&stream).is_some_and(|p| p.ticket == ticket);
                if mine { m.remove(&stream) } else { None }
            });
            if let Some(mut kept) = left.and_then(|mut parked| parked.kept.take()) {
                match sqlx::query(UNLOCK_SQL).execute(&mut *kept.conn).await {
                    Ok(_) => conns.put(kept),
                    Err(_) => conns.close(kept.conn),
                }
            }
        });
        true
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
