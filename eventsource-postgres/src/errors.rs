//! What a failed sqlx call means, in one place: whether retrying may fix it, whether its
//! connection may go on, which constraint an append met, and the core's typed [`StoreError`]
//! for it. By SQLSTATE code and constraint name, never by message text.

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
    /// A sealed checkpoint would have moved (migration 0008's trigger; the checkpoint's
    /// name in the error's detail).
    pub(crate) const CHECKPOINT_SEALED: &str = "ES001";
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

/// Whether a connection whose statement failed with `e` may run the next one as it is: an
/// error the server answered for the statement alone (sqlx reads the rest of that reply
/// before the next statement). Not after an I/O or protocol error, a decoding error (rows may
/// be left unread), or the server ending the session (a FATAL error, such as
/// `pg_terminate_backend`'s, or a connection failure code).
pub(crate) fn in_step(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            !is_connection_lost(e)
                && db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some_and(|pg| {
                        !matches!(
                            pg.severity(),
                            sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                        )
                    })
        }
        _ => false,
    }
}

/// Whether `e` is a unique violation on the constraint `name`.
fn violates(e: &sqlx::Error, name: &str) -> bool {
    code(e).as_deref() == Some(sqlstate::UNIQUE_VIOLATION)
        && e.as_database_error().and_then(|d| d.constraint()) == Some(name)
}

/// Whether `e` is a direct append losing a race on the primary key: another writer
/// committed the version first.
pub(crate) fn is_version_taken(e: &sqlx::Error) -> bool {
    violates(e, "events_stream_version")
}

/// Whether `e` says a function the statement calls does not exist (a schema not migrated
/// far enough).
pub(crate) fn is_undefined_function(e: &sqlx::Error) -> bool {
    code(e).as_deref() == Some(sqlstate::UNDEFINED_FUNCTION)
}

/// Whether `e` says that an event id of the append is already stored.
pub(crate) fn is_stored_id(e: &sqlx::Error) -> bool {
    violates(e, "events_event_id")
}

/// Whether `e` is the not-null violation a direct append (`Sql::append_one`/`append_batch`)
/// provokes when the transaction's xid8 does not fit the 48 bits a position gives it (nothing
/// was written). `append_events` reports that case as a row instead.
pub(crate) fn is_xid_too_large(e: &sqlx::Error) -> bool {
    code(e).as_deref() == Some(sqlstate::NOT_NULL_VIOLATION)
        && e.as_database_error()
            .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
            .and_then(|d| d.column())
            == Some("commit_id")
}

/// Whether an append that failed with `e` should be tried again inside the store: deadlocks,
/// serialization failures, a concurrent writer of the same event ids (the retry then reports
/// the original commit or the reuse), a direct append that lost the race for its version,
/// and lost connections (the event ids make a retry of a commit that did go through return
/// that commit).
pub(crate) fn is_append_retryable(e: &sqlx::Error) -> bool {
    is_connection_lost(e)
        || matches!(
            code(e).as_deref(),
            Some(sqlstate::DEADLOCK_DETECTED | sqlstate::SERIALIZATION_FAILURE)
        )
        || is_stored_id(e)
        || is_version_taken(e)
}

/// The store error for an append that failed with `e` and is not tried again.
pub(crate) fn append_failed(e: sqlx::Error) -> StoreError {
    if is_xid_too_large(&e) {
        return StoreError::Config(
            "the cluster's xid8 exceeds 2^48 and no longer fits a position".into(),
        );
    }
    backend("appending", e)
}

/// The store error for a failed sqlx call made while doing `context`.
pub(crate) fn backend(context: &str, e: sqlx::Error) -> StoreError {
    match code(&e).as_deref() {
        Some(sqlstate::CHECKPOINT_SEALED) => StoreError::CheckpointSealed {
            name: match &e {
                sqlx::Error::Database(db) => db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.detail())
                    .unwrap_or_default()
                    .to_owned(),
                _ => String::new(),
            },
        },
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
