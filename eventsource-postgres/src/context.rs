//! [`PgProjectionContext`]: the open transaction a transactional or inline projection's
//! handlers write their read model in.

use sqlx::{PgConnection, Postgres, Transaction};

use crate::conns::Kept;
use crate::store::PgStore;

/// What a transactional projection's handlers get: the open transaction in which the
/// projection's checkpoint will commit after the batch (or, for an inline projection, the
/// append's own transaction). Write the read model through [`PgProjectionContext::conn`]; if
/// any handler of the batch fails, nothing of the batch commits.
pub struct PgProjectionContext {
    tx: Tx,
    store: PgStore,
}

/// The transaction: one of the pool's, or one begun on the connection of a writers' lock
/// (whose session holds the lock, so the append it commits must run on it).
enum Tx {
    Pool(Transaction<'static, Postgres>),
    Lock(LockTx),
}

impl std::fmt::Debug for PgProjectionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgProjectionContext")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl PgProjectionContext {
    pub(crate) fn new(tx: Transaction<'static, Postgres>, store: PgStore) -> Self {
        Self {
            tx: Tx::Pool(tx),
            store,
        }
    }

    /// A context whose transaction runs on a writers' lock's connection.
    pub(crate) fn on_lock(tx: LockTx, store: PgStore) -> Self {
        Self {
            tx: Tx::Lock(tx),
            store,
        }
    }

    /// The connection of the open transaction: run read-model statements on it.
    pub fn conn(&mut self) -> &mut PgConnection {
        match &mut self.tx {
            Tx::Pool(tx) => tx,
            Tx::Lock(tx) => &mut tx.kept.conn,
        }
    }

    /// The store the events come from.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// Commits the transaction; a lock's connection comes back.
    pub(crate) async fn commit(self) -> Result<Option<Kept>, sqlx::Error> {
        match self.tx {
            Tx::Pool(tx) => tx.commit().await.map(|()| None),
            Tx::Lock(tx) => tx.end("COMMIT").await.map(Some),
        }
    }

    /// Rolls the transaction back; a lock's connection comes back.
    pub(crate) async fn rollback(self) -> Result<Option<Kept>, sqlx::Error> {
        match self.tx {
            Tx::Pool(tx) => tx.rollback().await.map(|()| None),
            Tx::Lock(tx) => tx.end("ROLLBACK").await.map(Some),
        }
    }
}

/// A transaction begun with `BEGIN` on a writers' lock's connection. The connection is
/// marked to close when dropped from here on: dropped before the transaction ends (a future
/// given up midway), the session's end rolls the transaction back and releases the lock
/// (handed back to the pool, the connection would keep both). Once ended, the connection
/// serves the lock on, and is closed, not pooled, when it is let go.
pub(crate) struct LockTx {
    kept: Kept,
}

impl LockTx {
    /// Begins a transaction on `kept`. On failure the connection is closed.
    pub(crate) async fn begin(mut kept: Kept) -> Result<Self, sqlx::Error> {
        kept.conn.close_on_drop();
        sqlx::query("BEGIN").execute(&mut *kept.conn).await?;
        Ok(Self { kept })
    }

    /// Ends the transaction with `statement`; on failure the connection is closed.
    async fn end(mut self, statement: &'static str) -> Result<Kept, sqlx::Error> {
        sqlx::query(statement).execute(&mut *self.kept.conn).await?;
        Ok(self.kept)
    }
}
