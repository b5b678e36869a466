//! What every read takes: the connections the store keeps, its statements, and how long a
//! read tries again after failures that retrying may fix.

use std::future::Future;
use std::time::Duration;

use eventsource_core::StoreError;
use sqlx::PgConnection;

use crate::conns::Conns;
use crate::errors::{Retry, backend};
use crate::sql::Sql;

/// The part of a store a read needs.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    conns: &'a Conns,
    sql: &'a Sql,
    retry_for: Duration,
}

impl<'a> Reader<'a> {
    /// A reader on `conns`, running `sql`'s statements, that retries for `retry_for` (see
    /// [`PgStoreBuilder::read_retry_for`](crate::PgStoreBuilder::read_retry_for)).
    pub(crate) fn new(conns: &'a Conns, sql: &'a Sql, retry_for: Duration) -> Self {
        Self {
            conns,
            sql,
            retry_for,
        }
    }

    /// The connections reads run on.
    pub(crate) fn conns(self) -> &'a Conns {
        self.conns
    }

    /// The store's statements.
    pub(crate) fn sql(self) -> &'a Sql {
        self.sql
    }

    /// The retries of one read.
    pub(crate) fn retry(self) -> Retry {
        Retry::new(self.retry_for)
    }

    /// Runs `op` on a connection the store keeps ([`Conns::run`]), and again on a fresh
    /// connection after a failure that retrying may fix; `what` names it in errors.
    pub(crate) async fn run<T>(
        self,
        what: &str,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error> + Clone,
    ) -> Result<T, StoreError> {
        self.retrying(what, || self.conns.run(op.clone())).await
    }

    /// Runs `attempt`, and again after a failure that retrying may fix; `what` names it in
    /// errors.
    async fn retrying<T, F>(
        self,
        what: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut retry = self.retry();
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if retry.again(what, &e).await => {}
                Err(e) => return Err(backend(what, e)),
            }
        }
    }
}
