//! Appends: the attempts and their retries. An attempt runs the direct statement
//! ([`direct`]) or `append_events` ([`locked`]) on a connection the store keeps, on the
//! session of a writers' lock, or in a transaction with the inline projections. The two kinds
//! and why: the crate docs' [Appends](crate#appends).

mod direct;
mod group;
mod locked;
mod outcome;
mod request;

use std::time::Duration;

use eventsource_core::{StoreError, StreamWrite};
use sqlx::{PgConnection, PgPool};

use self::direct::Direct;
use self::group::Entry;
pub use self::group::GroupCommit;
pub(crate) use self::group::Groups;
pub(crate) use self::outcome::Outcome;
use self::request::Request;
use crate::conns::{Conns, Kept};
use crate::context::{LockTx, PgProjectionContext};
use crate::errors::{append_failed, is_append_retryable, is_connection_lost, is_stored_id};
use crate::inline::Inlines;
use crate::sql::Sql;
use crate::store::PgStore;

/// How many times an append is tried inside the store before its error is returned.
const APPEND_ATTEMPTS: u32 = 6;

/// What an append needs of the store.
pub(crate) struct Appender<'a> {
    conns: &'a Conns,
    /// Where the transactions of inline projections come from.
    pool: &'a PgPool,
    sql: &'a Sql,
    inline: &'a Inlines,
    /// The handle the inline projections' contexts carry ([`PgProjectionContext::store`]).
    store: &'a PgStore,
}

/// How an append attempt runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The direct statement (`Sql::append_one`/`append_batch`), at this expected version.
    Direct(i64),
    /// `append_events`, under the streams' locks; `check_ids`: look the event ids up first.
    Locked { check_ids: bool },
}

/// What one attempt came to.
enum Attempt {
    /// The events were written now, or had been before.
    Done(Outcome),
    /// The append fails: a conflict, a reused event id, a locked stream, a failed inline
    /// projection, a failure that trying again cannot fix.
    Failed(StoreError),
    /// Worth trying again, under the streams' locks.
    Retry {
        /// Look the event ids up first: one is stored, or the connection was lost and the
        /// append may have committed.
        check_ids: bool,
        /// The connection was lost: pause before the next attempt.
        connection_lost: bool,
        /// The failure, returned once the attempts run out.
        error: StoreError,
    },
}

/// Why an attempt stopped short of an outcome, before [`Attempt::of`] tells what follows.
enum AttemptError {
    /// The store's answer: a conflict, a reused id, a bad request or reply.
    Store(StoreError),
    /// A statement failed.
    Sql(sqlx::Error),
}

impl From<StoreError> for AttemptError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for AttemptError {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl AttemptError {
    /// The failed statement's error, if a statement failed.
    fn sql(&self) -> Option<&sqlx::Error> {
        match self {
            Self::Sql(e) => Some(e),
            Self::Store(_) => None,
        }
    }
}

impl Attempt {
    fn of(result: Result<Outcome, AttemptError>) -> Self {
        match result {
            Ok(outcome) => Self::Done(outcome),
            Err(AttemptError::Store(e)) => Self::Failed(e),
            Err(AttemptError::Sql(e)) if is_append_retryable(&e) => {
                let connection_lost = is_connection_lost(&e);
                Self::Retry {
                    check_ids: is_stored_id(&e) || connection_lost,
                    connection_lost,
                    error: append_failed(e),
                }
            }
            Err(AttemptError::Sql(e)) => Self::Failed(append_failed(e)),
        }
    }
}

impl<'a> Appender<'a> {
    pub(crate) fn new(
        conns: &'a Conns,
        pool: &'a PgPool,
        sql: &'a Sql,
        inline: &'a Inlines,
        store: &'a PgStore,
    ) -> Self {
        Self {
            conns,
            pool,
            sql,
            inline,
            store,
        }
    }

    /// Appends `writes` (validated, not empty), on the session of the writers' lock in `lock`
    /// when there is one (`None` in it once that session is gone: the append then runs as any
    /// other writer's, and meets the lock, if another session holds it now, like one).
    pub(crate) async fn append(
        &self,
        writes: &[StreamWrite],
        mut lock: Option<&mut Option<Kept>>,
    ) -> Result<Outcome, StoreError> {
        let request = Request::new(writes);
        let mut path = match direct::expected(writes) {
            Some(expected) => Path::Direct(expected),
            None => Path::Locked { check_ids: false },
        };
        // The first attempt of a direct append, outside a writers' lock and inline
        // projections, may go in a group.
        let mut entry = match (path, self.store.groups()) {
            (Path::Direct(expected), Some(groups))
                if lock.is_none() && self.inline.is_empty() && groups.on() =>
            {
                writes
                    .first()
                    .map(|w| groups.enter(self.store, w, expected))
            }
            _ => None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let tried = match entry.take() {
                None => self.once(&request, path, lock.as_deref_mut()).await,
                Some(Entry::Alone(place)) => {
                    group::hold(&mut Some(place), self.once(&request, path, None)).await
                }
                // The flusher ended without an answer (its runtime is shutting down): the
                // group may have committed.
                Some(Entry::Queued(answer)) => answer.await.unwrap_or_else(|_| Attempt::Retry {
                    check_ids: true,
                    connection_lost: false,
                    error: StoreError::backend(
                        "appending",
                        true,
                        "a group commit was not answered",
                    ),
                }),
            };
            match tried {
                Attempt::Done(outcome) => return Ok(outcome),
                Attempt::Failed(e) => return Err(e),
                Attempt::Retry { error, .. } if attempt >= APPEND_ATTEMPTS => {
                    return Err(error);
                }
                Attempt::Retry {
                    check_ids,
                    connection_lost,
                    error,
                } => {
                    tracing::debug!(%error, attempt, "append retried");
                    path = Path::Locked { check_ids };
                    if !connection_lost {
                        // A race or a deadlock: go again at once, under the locks.
                        continue;
                    }
                    if let Some(slot) = lock.as_deref_mut()
                        && let Some(dead) = slot.take()
                    {
                        // The lock's session is gone, and the lock with it.
                        self.conns.close(dead.conn);
                    }
                    let cap = 2u64.pow(attempt.min(6));
                    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=cap))).await;
                }
            }
        }
    }

    /// One attempt: on a connection the store keeps, or on the session of the writers' lock
    /// in `lock` while it lasts (its session must make the lock's appends), or, with inline
    /// projections, in a transaction that also runs them.
    async fn once(
        &self,
        request: &Request<'_>,
        path: Path,
        lock: Option<&mut Option<Kept>>,
    ) -> Attempt {
        let inline = !self.inline.is_empty();
        let result = match lock {
            Some(slot) if inline => match slot.take() {
                Some(kept) => self.in_lock_transaction(slot, kept, request, path).await,
                None => self.in_pool_transaction(request, path).await,
            },
            // The lock's connection stays in its slot while the statement runs: if this
            // future is dropped midway, the lock sees to the connection (its release, or its
            // drop, which closes it). Taken out, it would go back to the pool still holding
            // the server's lock, and whoever borrowed it next would write as the holder.
            Some(Some(kept)) => self.on(&mut kept.conn, request, path).await,
            _ if inline => self.in_pool_transaction(request, path).await,
            _ => self.on_kept(request, path).await,
        };
        Attempt::of(result)
    }

    /// The attempt on a connection the store keeps, kept again when it ends in step.
    async fn on_kept(&self, request: &Request<'_>, path: Path) -> Result<Outcome, AttemptError> {
        let mut conn = self.conns.get().await?;
        let result = self.on(&mut conn, request, path).await;
        conn.keep_after(result.as_ref().err().and_then(AttemptError::sql));
        result
    }

    /// The attempt in a transaction of the pool, with the inline projections.
    async fn in_pool_transaction(
        &self,
        request: &Request<'_>,
        path: Path,
    ) -> Result<Outcome, AttemptError> {
        let tx = self.pool.begin().await?;
        let ctx = PgProjectionContext::new(tx, self.store.clone());
        self.with_inline(ctx, request, path).await.0
    }

    /// The attempt in a transaction on the lock's connection `kept`, with the inline
    /// projections; the connection goes back to `slot` once the transaction ended.
    async fn in_lock_transaction(
        &self,
        slot: &mut Option<Kept>,
        kept: Kept,
        request: &Request<'_>,
        path: Path,
    ) -> Result<Outcome, AttemptError> {
        let ctx = PgProjectionContext::on_lock(LockTx::begin(kept).await?, self.store.clone());
        let (result, back) = self.with_inline(ctx, request, path).await;
        *slot = back;
        result
    }

    /// The append in `ctx`'s transaction, then the inline projections on what it wrote, then
    /// the commit. Also hands back the connection of a lock's transaction once it ended.
    async fn with_inline(
        &self,
        mut ctx: PgProjectionContext,
        request: &Request<'_>,
        path: Path,
    ) -> (Result<Outcome, AttemptError>, Option<Kept>) {
        let result = self.on(ctx.conn(), request, path).await;
        let Ok(Outcome::Written(_, written)) = &result else {
            // Failed, or nothing new was written: the inline read models already reflect it.
            return (result, ctx.rollback().await.ok().flatten());
        };
        let events = outcome::recorded(request.writes, written);
        if events.len() != request.writes.iter().map(|w| w.events.len()).sum::<usize>() {
            // Unreachable: in a transaction, the direct path reads every position.
            let error = StoreError::backend(
                "appending",
                false,
                "an append with inline projections came back without each event's position",
            );
            return (Err(error.into()), ctx.rollback().await.ok().flatten());
        }
        if let Err(error) = self.inline.handle_all(&events, &mut ctx).await {
            return (Err(error.into()), ctx.rollback().await.ok().flatten());
        }
        match ctx.commit().await {
            Ok(back) => (result, back),
            Err(e) => (Err(e.into()), None),
        }
    }

    /// The attempt on `conn`, along `path`.
    async fn on(
        &self,
        conn: &mut PgConnection,
        request: &Request<'_>,
        path: Path,
    ) -> Result<Outcome, AttemptError> {
        let check_ids = match path {
            Path::Direct(expected) => {
                let in_transaction = !self.inline.is_empty();
                match direct::append(conn, self.sql, request, expected, in_transaction).await? {
                    Direct::Written(outcome) => return Ok(outcome),
                    // A retried append must get its first commit, not a conflict.
                    Direct::Undecided => true,
                }
            }
            Path::Locked { check_ids } => check_ids,
        };
        locked::append(conn, self.sql, request, check_ids).await
    }
}
