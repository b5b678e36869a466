//! The connections the store keeps between its operations.
//!
//! sqlx's pool checks every connection handed back to it with a round trip (a `Sync` message
//! and its `ReadyForQuery`: the check covers a caller that dropped a query midway), so every
//! statement run on the pool costs two round trips. Measured on W1's command (load + append,
//! 8 tasks, 2 cores; `benches/pool_check.rs`), the same statements on connections the tasks
//! held gave 1.3 times the commands per second for 0.72 of the CPU. The store needs that
//! check only when it did not see its statements through. So it keeps the connections its
//! statements finished on ([`Lease::keep`]) in a short list of its own and takes the next
//! one from there; a connection whose statement was dropped midway or failed other than with
//! a database error goes back to the pool, which checks it as before.
//!
//! The list holds at most
//! [`PgStoreBuilder::reuse_connections`](crate::PgStoreBuilder::reuse_connections)
//! connections, newest last (the next one taken is the one used last, whose statements are
//! prepared), each for at most [`KEEP_FOR`]: a background task hands the older ones back to
//! the pool, so a pool shared with other code never waits on connections the store is not
//! using for longer than that. A connection kept longer than
//! [`IDLE_CHECK_AFTER`](crate::IDLE_CHECK_AFTER) is pinged before it is used again, as the
//! store's own pool does.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgConnection, PgPool, Postgres};
use tokio::task::AbortHandle;

use crate::store::IDLE_CHECK_AFTER;

/// How long a connection waits in the list before it goes back to the pool.
pub(crate) const KEEP_FOR: Duration = Duration::from_millis(50);

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

struct Idle {
    conn: PoolConnection<Postgres>,
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
            let Some(Idle { mut conn, since }) = self.lock().idle.pop() else {
                break;
            };
            if since.elapsed() < IDLE_CHECK_AFTER || conn.ping().await.is_ok() {
                return Ok(Lease::new(self, conn));
            }
            // Dead: the pool's own check on taking it back closes it.
            drop(conn);
        }
        let conn = self.pool.acquire().await?;
        Ok(Lease::new(self, conn))
    }

    /// Keeps `conn` for the next operation, or hands it back to the pool when the list is full
    /// (or there is no runtime to hand it back later).
    pub(crate) fn put(&self, conn: PoolConnection<Postgres>) {
        let mut state = self.lock();
        if state.idle.len() >= self.keep {
            drop(state);
            drop(conn);
            return;
        }
        if state.reaper.as_ref().is_none_or(AbortHandle::is_finished) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                drop(state);
                drop(conn);
                return;
            };
            state.reaper = Some(runtime.spawn(reap(self.me.clone())).abort_handle());
        }
        state.idle.push(Idle {
            conn,
            since: Instant::now(),
        });
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
        for Idle { conn, .. } in idle {
            if self.pool.options().get_min_connections() == 0 {
                drop(conn.detach());
            } else {
                // Even a detached connection spawns (to top the pool up): leave it open
                // rather than panic.
                std::mem::forget(conn);
            }
        }
    }
}

/// A connection taken from [`Conns`]. Dropped, it goes back to the pool (which checks it);
/// [`Lease::keep`] keeps it for the store's next operation.
pub(crate) struct Lease<'a> {
    conn: PoolConnection<Postgres>,
    home: &'a Conns,
}

impl<'a> Lease<'a> {
    fn new(home: &'a Conns, conn: PoolConnection<Postgres>) -> Self {
        Self { conn, home }
    }

    /// Every statement run on it was seen through (its last reply read), outside any
    /// transaction: the store's next operation may use it as it is.
    pub(crate) fn keep(self) {
        let Lease { conn, home } = self;
        home.put(conn);
    }

    /// [`Lease::keep`] when `result` is a success or a database error (the server answered
    /// and the connection is in step); otherwise hands it back to the pool.
    pub(crate) fn keep_if<T>(self, result: &Result<T, sqlx::Error>) {
        if matches!(result, Ok(_) | Err(sqlx::Error::Database(_))) {
            self.keep();
        }
    }

    /// The pooled connection itself, no longer tied to the list.
    pub(crate) fn into_inner(self) -> PoolConnection<Postgres> {
        self.conn
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.conn
    }
}
