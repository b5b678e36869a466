//! The connections the store keeps between its operations, and the check its own pool makes
//! before handing one out. Why, and the bounds that keep the pool in charge: the crate docs'
//! [Connections](crate#connections).
//!
//! Kept connections wait in a short list, newest last (the next one taken is the one used
//! last, whose statements are prepared); [`KEEP_FOR`] and [`CYCLE`] bound how long.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::task::AbortHandle;

use crate::errors::in_step;

/// How long a connection of the store's own pool, or one the store keeps, may sit idle before
/// it is checked (a ping) on its next use; see [Connections](crate#connections).
pub const IDLE_CHECK_AFTER: Duration = Duration::from_millis(50);

/// The options of the pool the store opens itself: at most `max` connections, each checked
/// before it is handed out only after [`IDLE_CHECK_AFTER`] idle (sqlx's default pings before
/// every use).
pub(crate) fn own_pool(max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_CHECK_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
}

/// About how long a connection waits in the list before it goes back to the pool.
pub(crate) const KEEP_FOR: Duration = Duration::from_millis(50);

/// How long a connection may go from one operation to the next without passing through the
/// pool.
pub(crate) const CYCLE: Duration = Duration::from_secs(1);

/// The pool and the connections kept from it.
pub(crate) struct Conns {
    pool: PgPool,
    /// At most this many are kept; 0 keeps none.
    keep: usize,
    state: Mutex<State>,
    me: Weak<Conns>,
}

#[derive(Default)]
struct State {
    /// Oldest first.
    idle: Vec<Idle>,
    /// The task handing old connections back, while there are any.
    reaper: Option<AbortHandle>,
}

/// A pooled connection and when it was taken from the pool.
pub(crate) struct Kept {
    pub(crate) conn: PoolConnection<Postgres>,
    taken: Instant,
}

struct Idle {
    kept: Kept,
    since: Instant,
}

impl Conns {
    pub(crate) fn new(pool: PgPool, keep: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            pool,
            keep,
            state: Mutex::new(State::default()),
            me: me.clone(),
        })
    }

    /// A connection: the one kept last, else one from the pool.
    pub(crate) async fn get(&self) -> Result<Lease<'_>, sqlx::Error> {
        loop {
            if self.pool.is_closed() {
                drop(std::mem::take(&mut self.lock().idle));
                break;
            }
            let Some(Idle { mut kept, since }) = self.lock().idle.pop() else {
                break;
            };
            if since.elapsed() < IDLE_CHECK_AFTER || kept.conn.ping().await.is_ok() {
                return Ok(Lease { kept, home: self });
            }
            // Dead: the pool's own check on taking it back closes it.
            drop(kept);
        }
        let kept = Kept {
            conn: self.pool.acquire().await?,
            taken: Instant::now(),
        };
        Ok(Lease { kept, home: self })
    }

    /// Runs `op` on a connection from [`Conns::get`], and keeps it again when `op` ended with
    /// it in step.
    pub(crate) async fn run<T>(
        &self,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.get().await?;
        let result = op(&mut conn).await;
        conn.keep_after(result.as_ref().err());
        result
    }

    /// Keeps `kept` for the next operation, or hands it back to the pool: when the list is
    /// full, the connection is due to pass through the pool ([`CYCLE`]), or the pool is
    /// closed.
    pub(crate) fn put(&self, kept: Kept) {
        let mut state = self.lock();
        if state.idle.len() >= self.keep || kept.taken.elapsed() >= CYCLE || self.pool.is_closed() {
            drop(state);
            drop(kept);
            return;
        }
        if state.reaper.as_ref().is_none_or(AbortHandle::is_finished) {
            // (A connection is only ever used inside a runtime: sqlx's I/O needs one.)
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                drop(state);
                drop(kept);
                return;
            };
            state.reaper = Some(runtime.spawn(reap(self.me.clone())).abort_handle());
        }
        state.idle.push(Idle {
            kept,
            since: Instant::now(),
        });
    }

    /// Closes a connection of the pool instead of handing it back (which would keep its
    /// session's state, such as an advisory lock). sqlx then spawns a task to top the pool up
    /// when it has a minimum size, and spawning needs a runtime: without one (the store is
    /// dropped after its runtime, whose I/O its connections used, is gone), such a connection
    /// is left open rather than panic.
    pub(crate) fn close(&self, conn: PoolConnection<Postgres>) {
        if tokio::runtime::Handle::try_current().is_ok()
            || self.pool.options().get_min_connections() == 0
        {
            drop(conn.detach());
        } else {
            std::mem::forget(conn);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a list and a handle: a panic elsewhere cannot leave it half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Hands connections kept for [`KEEP_FOR`] back to the pool; ends when none is kept.
async fn reap(conns: Weak<Conns>) {
    loop {
        tokio::time::sleep(KEEP_FOR / 2).await;
        let Some(conns) = conns.upgrade() else {
            return;
        };
        let (old, done) = {
            let mut state = conns.lock();
            let fresh = state
                .idle
                .iter()
                .position(|i| i.since.elapsed() < KEEP_FOR)
                .unwrap_or(state.idle.len());
            let old: Vec<Idle> = state.idle.drain(..fresh).collect();
            let done = state.idle.is_empty();
            if done {
                state.reaper = None;
            }
            (old, done)
        };
        drop(old);
        if done {
            return;
        }
    }
}

impl Drop for Conns {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.lock().idle);
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        // Handing a connection back to sqlx's pool spawns a task, which needs a runtime.
        for Idle { kept, .. } in idle {
            self.close(kept.conn);
        }
    }
}

/// A connection taken from [`Conns`]. Dropped, it goes back to the pool (which checks it);
/// [`Lease::keep`] keeps it for the store's next operation.
pub(crate) struct Lease<'a> {
    kept: Kept,
    home: &'a Conns,
}

impl Lease<'_> {
    /// Every statement run on it was seen through (its reply read, up to what sqlx reads
    /// itself before the next statement: see [`in_step`]), outside any transaction: the
    /// store's next operation may use it as it is.
    pub(crate) fn keep(self) {
        self.home.put(self.kept);
    }

    /// [`Lease::keep`] after a statement that succeeded (`error` is `None`) or failed with an
    /// error [`in_step`] says the connection may go on after; otherwise hands it back to the
    /// pool, whose check closes a dead connection.
    pub(crate) fn keep_after(self, error: Option<&sqlx::Error>) {
        if error.is_none_or(in_step) {
            self.keep();
        }
    }

    /// The connection, no longer tied to the list (give it back with [`Conns::put`]).
    pub(crate) fn into_inner(self) -> Kept {
        self.kept
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.kept.conn
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.kept.conn
    }
}
