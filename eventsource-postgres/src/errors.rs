//! Turning sqlx errors into the core's typed [`StoreError`], by SQLSTATE code, never by text.

use std::time::{Duration, Instant};

use eventsource_core::StoreError;

/// SQLSTATE codes the store acts on.
pub(crate) mod sqlstate {
    /// A NOT NULL column was given a null.
    pub(crate) const NOT_NULL_VIOLATION: &str = "23502";
    /// A unique index rejected a row.
    pub(crate) const UNIQUE_VIOLATION: &str = "23505";
    /// Serializable isolation gave up on this transaction.
    pub(crate) const SERIALIZATION_FAILURE: &str = "40001";
    /// The deadlock detector chose this transaction.
    pub(crate) const DEADLOCK_DETECTED: &str = "40P01";
    /// A table the store needs does not exist.
    pub(crate) const UNDEFINED_TABLE: &str = "42P01";
    /// A function the store needs does not exist.
    pub(crate) const UNDEFINED_FUNCTION: &str = "42883";
}

/// The SQLSTATE of a database error, if `e` is one.
pub(crate) fn code(e: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    match e {
        sqlx::Error::Database(db) => db.code(),
        _ => None,
    }
}

/// Whether trying the same call again may succeed.
pub(crate) fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 40: transaction rollback; 53: insufficient resources;
            // 57P0x: the server is shutting down or the backend was terminated; 55P03: lock
            // not available.
            c.starts_with("08")
                || c.starts_with("40")
                || c.starts_with("53")
                || c.starts_with("57P0")
                || c == "55P03"
        }),
        _ => false,
    }
}

/// Whether the connection the error came from is gone (so a fresh one may work).
pub(crate) fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

/// The store error for a failed sqlx call made while doing `context`.
pub(crate) fn backend(context: &str, e: sqlx::Error) -> StoreError {
    match code(&e).as_deref() {
        Some(sqlstate::UNDEFINED_TABLE | sqlstate::UNDEFINED_FUNCTION) => {
            StoreError::Config(format!(
                "{context}: the store's schema is missing or incomplete ({e}); run the migrations (PgStore::migrate)"
            ))
        }
        _ => {
            let retryable = is_retryable(&e);
            StoreError::backend(context, retryable, e)
        }
    }
}

/// The default of how long a read keeps trying after failures that retrying may fix (see
/// [`PgStoreBuilder::read_retry_for`](crate::PgStoreBuilder::read_retry_for)).
pub(crate) const READ_RETRY_FOR: Duration = Duration::from_secs(10);

/// The retries of one read: a retryable failure (a connection the server ended, a server
/// restarting or failing over) is tried again on a fresh connection, with backoff, until
/// `for` has passed since the first failure; then it surfaces.
pub(crate) struct Retry {
    bound: Duration,
    first_failure: Option<Instant>,
    wait: Duration,
}

impl Retry {
    pub(crate) fn new(bound: Duration) -> Self {
        Self {
            bound,
            first_failure: None,
            wait: Duration::from_millis(10),
        }
    }

    /// Whether to try again after `e` (having paused first): it is retryable, and the bound
    /// has not passed.
    pub(crate) async fn again(&mut self, what: &str, e: &sqlx::Error) -> bool {
        if !is_retryable(e) {
            return false;
        }
        let first = *self.first_failure.get_or_insert_with(Instant::now);
        if first.elapsed() >= self.bound {
            tracing::warn!(error = %e, what, "giving up after retrying for {:?}", self.bound);
            return false;
        }
        tracing::debug!(error = %e, what, wait = ?self.wait, "read failed; retrying on a fresh connection");
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(Duration::from_millis(500));
        true
    }
}
