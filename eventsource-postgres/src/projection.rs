//! The transactional projection runner, [`PgProjectionRunner`]: the core's one runner loop
//! with this store's batches, [`PgBatches`]. What it promises (exactly once, a lease, fenced
//! checkpoints, faults ridden out) is told in the crate docs' [Projections](crate#projections).

use std::time::Duration;

use eventsource_core::projection::{BackendError, RunnerBackend};
use eventsource_core::store::{DeadLetterChange, input};
use eventsource_core::{Position, Projection, ProjectionError, ProjectionHandle, ProjectionRunner};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::context::PgProjectionContext;
use crate::dead_letters;
use crate::errors::backend;
use crate::meta::checkpoint_from;
use crate::rows::position_params;
use crate::store::PgStore;

/// How long a check of the lease's session may take before the lease counts as lost.
const LEASE_PING_LIMIT: Duration = Duration::from_secs(2);

/// The seed of the lease's advisory-lock key: `hashtextextended('<schema>/<projection>', 13)`.
const LEASE_SEED: i64 = 13;

/// The lease: a session advisory lock on a connection of its own, and the token stamped on
/// the checkpoint row when it was taken. The connection lives on a watchdog task, which
/// checks it every lease check and says at once (through `PgBatches::alive`) when it is
/// gone; dropping the lease stops the task and closes the connection, which releases the
/// lock.
struct Lease {
    token: Uuid,
    watchdog: tokio::task::JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// The PostgreSQL store's batches for the core runner
/// ([`RunnerBackend`](eventsource_core::projection::RunnerBackend)): a batch is a
/// transaction of the store's pool, handed to the handlers as a [`PgProjectionContext`], in
/// which the checkpoint is saved (fenced by the lease token) before it commits; the right to
/// run is the projection's lease.
pub struct PgBatches {
    store: PgStore,
    standby_poll: Duration,
    lease: Option<Lease>,
    /// Whether the lease is held: false the moment its session is found gone.
    alive: tokio::sync::watch::Sender<bool>,
    /// A standby's connection, kept between attempts to take the lease.
    standby: Option<PgConnection>,
}

impl std::fmt::Debug for PgBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBatches")
            .field("leader", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl PgBatches {
    fn new(store: PgStore) -> Self {
        Self {
            store,
            standby_poll: Duration::from_millis(500),
            lease: None,
            alive: tokio::sync::watch::Sender::new(false),
            standby: None,
        }
    }

    /// Hands the lease's connection to a watchdog task that checks it every
    /// `standby_poll` (bounded by [`LEASE_PING_LIMIT`]) and marks the lease lost when it
    /// does not answer.
    fn watch_lease(&mut self, mut conn: PgConnection, token: Uuid) {
        let alive = self.alive.clone();
        alive.send_replace(true);
        let every = self.standby_poll;
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let watchdog = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(every) => {}
                }
                let answered = tokio::time::timeout(LEASE_PING_LIMIT, conn.ping()).await;
                if !matches!(answered, Ok(Ok(()))) {
                    tracing::warn!(
                        "the lease's session is gone (the server ended it, or cannot be reached)"
                    );
                    alive.send_replace(false);
                    return;
                }
            }
            // Closing the connection releases the advisory lock.
            let _ = conn.close().await;
        });
        self.lease = Some(Lease {
            token,
            watchdog,
            stop: Some(stop),
        });
    }

    /// Tries to take the lease of `name`: its checkpoint when taken, `None` while another
    /// runner holds it.
    async fn take_lease(&mut self, name: &str) -> Result<Option<Position>, BackendError> {
        let options = self.store.pool().connect_options();
        // A standby keeps its connection between attempts.
        let mut conn = match self.standby.take() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&options)
                .await
                .map_err(|e| backend("opening the lease connection", e))?,
        };
        let key = format!("{}/{}", self.store.schema().as_str(), name);
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, $2))")
            .bind(&key)
            .bind(LEASE_SEED)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| backend("taking the projection lease", e))?;
        if !got {
            self.standby = Some(conn);
            return Ok(None);
        }
        let token = Uuid::new_v4();
        let (c, s): (i64, i64) = sqlx::query_as(&self.store.sql().take_lease)
            .bind(name)
            .bind(token)
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| backend("stamping the projection lease", e))?;
        let checkpoint = checkpoint_from(name, c, s)?;
        self.watch_lease(conn, token);
        tracing::info!(%checkpoint, "took the projection lease");
        Ok(Some(checkpoint))
    }

    /// The durable checkpoint of `name` if this runner's lease is whole: its session alive,
    /// its token still on the checkpoint row. `None` (and the lease dropped) otherwise.
    async fn confirm_lease(&mut self, name: &str) -> Result<Option<Position>, BackendError> {
        let Some(lease) = self.lease.as_ref() else {
            return Ok(None);
        };
        if !*self.alive.borrow() || lease.watchdog.is_finished() {
            self.drop_lease().await;
            return Ok(None);
        }
        let token = lease.token;
        let row: Option<(i64, i64)> = sqlx::query_as(&self.store.sql().load_leased_checkpoint)
            .bind(name)
            .bind(token)
            .fetch_optional(self.store.pool())
            .await
            .map_err(|e| backend("loading the checkpoint", e))?;
        match row {
            Some((c, s)) => Ok(Some(checkpoint_from(name, c, s)?)),
            None => {
                // Another runner stamped its token: it holds the projection now.
                self.drop_lease().await;
                Ok(None)
            }
        }
    }

    /// Gives the lease up: the watchdog closes its connection (which releases the lock).
    async fn drop_lease(&mut self) {
        self.alive.send_replace(false);
        if let Some(mut lease) = self.lease.take() {
            if let Some(stop) = lease.stop.take() {
                let _ = stop.send(());
            }
            let _ = lease.watchdog.await;
        }
    }
}

impl Drop for PgBatches {
    fn drop(&mut self) {
        // The watchdog closes the lease's connection, which releases the lock.
        if let Some(stop) = self.lease.as_mut().and_then(|l| l.stop.take()) {
            let _ = stop.send(());
        }
    }
}

impl RunnerBackend for PgBatches {
    type Context = PgProjectionContext;
    const ATOMIC: bool = true;

    async fn lead(&mut self, name: &str) -> Result<Option<Position>, BackendError> {
        if let Some(checkpoint) = self.confirm_lease(name).await? {
            return Ok(Some(checkpoint));
        }
        self.take_lease(name).await
    }

    fn leadership(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        Some(self.alive.subscribe())
    }

    fn standby_poll(&self) -> Duration {
        self.standby_poll
    }

    async fn begin(&mut self) -> Result<PgProjectionContext, BackendError> {
        let tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(|e| backend("beginning a batch", e))?;
        Ok(PgProjectionContext::new(tx, self.store.clone()))
    }

    async fn commit(
        &mut self,
        mut ctx: PgProjectionContext,
        name: &str,
        to: Position,
        letters: &[DeadLetterChange],
    ) -> Result<(), BackendError> {
        // Checked before any statement runs: a letter the store would refuse fails the batch
        // (its transaction rolled back) without a round trip.
        input::check_dead_letters(name, letters).map_err(BackendError::Store)?;
        let token = self
            .lease
            .as_ref()
            .map(|l| l.token)
            .ok_or(BackendError::LeaseLost)?;
        let (c, s) = position_params(to);
        let saved = sqlx::query(&self.store.sql().save_checkpoint_fenced)
            .bind(name)
            .bind(c)
            .bind(s)
            .bind(token)
            .execute(ctx.conn())
            .await
            .map_err(|e| backend("saving the checkpoint", e))?;
        if saved.rows_affected() == 0 {
            // Dropping the transaction rolls the batch back.
            return Err(BackendError::LeaseLost);
        }
        if !letters.is_empty() {
            // In the batch's transaction: the letters are written exactly when the checkpoint
            // that passes their events is, and only while this runner holds the lease.
            dead_letters::write(ctx.conn(), self.store.sql(), name, letters)
                .await
                .map_err(|e| backend("writing dead letters", e))?;
        }
        ctx.commit()
            .await
            .map(drop)
            .map_err(|e| backend("committing a batch", e).into())
    }

    async fn abandon(&mut self, ctx: PgProjectionContext) -> bool {
        ctx.rollback().await.is_ok()
    }

    async fn step_down(&mut self) {
        self.drop_lease().await;
        if let Some(conn) = self.standby.take() {
            let _ = conn.close().await;
        }
    }

    fn is_transient(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        // A handler's `?` on a statement whose connection died (the batch's own transaction
        // went with it): a fault of the store, not of the handler.
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(sqlx) = e.downcast_ref::<sqlx::Error>() {
                return crate::errors::is_retryable(sqlx);
            }
            cause = e.source();
        }
        false
    }
}

/// Runs a [`Projection`] whose context is a [`PgProjectionContext`]: the core's
/// [`ProjectionRunner`] with [`PgBatches`]. Each batch of events is handled inside one
/// transaction that also saves the checkpoint (exactly once); one runner per projection
/// holds the lease across processes, the others stand by. While it catches up, the next
/// batches are streamed on another pooled connection while the current one is handled and
/// commits, so it holds at most three batches. Faults of the server (a restart, a failover,
/// its sessions ended) are ridden out: the runner pauses, takes its lease again (or stands
/// by if another runner won it) and goes on from the durable checkpoint.
///
/// ```no_run
/// # use eventsource_postgres::*;
/// # async fn doc<P: eventsource_core::Projection<Context = PgProjectionContext>>(
/// #     store: PgStore, projection: P) -> Result<(), eventsource_core::ProjectionError> {
/// let handle = PgProjectionRunner::new(store, projection).batch_size(500).spawn();
/// # handle.shutdown().await
/// # }
/// ```
pub struct PgProjectionRunner<P> {
    runner: ProjectionRunner<P, PgStore, PgBatches>,
}

impl<P> std::fmt::Debug for PgProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgProjectionRunner")
            .field("runner", &self.runner)
            .finish()
    }
}

impl<P: Projection<Context = PgProjectionContext>> PgProjectionRunner<P> {
    /// A runner for `projection` over `store`, with batches of 256 events.
    pub fn new(store: PgStore, projection: P) -> Self {
        let batches = PgBatches::new(store.clone());
        Self {
            runner: ProjectionRunner::with_backend(store, projection, batches),
        }
    }

    /// How many events one batch (one transaction) holds. The runner holds at most three
    /// batches in memory (one handled, two read ahead).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.runner = self.runner.batch_size(n);
        self
    }

    /// Runs the projection under `name` instead of its type's (see
    /// [`ProjectionRunner::named`]): its checkpoint, lease and dead letters are keyed by it.
    pub fn named(mut self, name: &str) -> Result<Self, eventsource_core::StoreError> {
        self.runner = self.runner.named(name)?;
        Ok(self)
    }

    /// Runs `version` of the projection, beside the one that serves, and takes over once
    /// caught up (see [`ProjectionRunner::version`]): a blue/green rebuild. Its handlers
    /// write its own tables; readers find the serving version in the schema's
    /// `projection_versions` row (see the crate's docs, "Versions").
    pub fn version(mut self, version: u32) -> Result<Self, eventsource_core::StoreError> {
        self.runner = self.runner.version(version)?;
        Ok(self)
    }

    /// Hands the projection only the events `keep` keeps (see [`ProjectionRunner::filter`]).
    pub fn filter(
        mut self,
        keep: impl Fn(&eventsource_core::RecordedEvent) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.runner = self.runner.filter(keep);
        self
    }

    /// What the runner does when a handler fails on an event (see
    /// [`FailurePolicy`](eventsource_core::projection::FailurePolicy)). A dead letter is
    /// written in the transaction of the batch whose checkpoint passes it.
    pub fn on_failure(mut self, policy: eventsource_core::projection::FailurePolicy) -> Self {
        self.runner = self.runner.on_failure(policy);
        self
    }

    /// How often a standby runner tries to take the lease (default 500 ms).
    pub fn standby_poll(mut self, every: Duration) -> Self {
        self.runner.backend_mut().standby_poll = every;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        self.runner.projection()
    }

    /// Takes the lease (waiting while another runner holds it), catches up to the current end
    /// of the log and returns the checkpoint reached. Keeps the lease until dropped. A runner
    /// that held the lease and finds another runner holding it now answers
    /// [`ProjectionError::LeaseLost`].
    pub async fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        self.runner.catch_up().await
    }

    /// Clears the read model (in one transaction with the checkpoint), then catches up.
    pub async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        self.runner.rebuild().await
    }

    /// Starts the runner on a tokio task: it stands by until it holds the lease, then
    /// catches up and follows the log live.
    pub fn spawn(self) -> ProjectionHandle {
        self.runner.spawn()
    }
}
