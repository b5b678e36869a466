//! The transactional projection runner, [`PgProjectionRunner`]: what it promises (exactly
//! once, a lease, fenced checkpoints) is told in the crate docs' [Projections](crate#projections).

use std::sync::Arc;
use std::time::Duration;

use eventsource_core::projection::{LogFeed, RETRY_START, guarded, pause_if_retryable};
use eventsource_core::{
    EventStore, LogPage, Position, Projection, ProjectionControl, ProjectionError,
    ProjectionHandle, ProjectionStatus, StoreError,
};
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;
use uuid::Uuid;

use crate::context::PgProjectionContext;
use crate::errors::backend;
use crate::rows::{position_from, position_params};
use crate::store::PgStore;

/// Why a batch did not commit.
enum BatchError {
    /// Another runner took the lease over.
    LeaseLost,
    /// A handler or the store failed.
    Failed(ProjectionError),
}

/// The lease: a session advisory lock on a connection of its own, and the token stamped on
/// the checkpoint row when it was taken.
struct Lease {
    conn: PgConnection,
    token: Uuid,
}

/// Runs a [`Projection`] whose context is a [`PgProjectionContext`]: each batch of events is
/// handled inside one transaction that also saves the checkpoint. While it catches up, the
/// next batches are streamed (on another pooled connection, see [`LogFeed`]) while the
/// current one is handled and commits, so it holds at most three batches.
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
    store: PgStore,
    projection: P,
    batch_size: usize,
    standby_poll: Duration,
    checkpoint: Position,
    lease: Option<Lease>,
    /// A standby's connection, kept between attempts to take the lease.
    standby: Option<PgConnection>,
}

impl<P> std::fmt::Debug for PgProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgProjectionRunner")
            .field("checkpoint", &self.checkpoint)
            .field("leader", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

fn store_error<P: Projection>(source: StoreError) -> ProjectionError {
    ProjectionError::Store {
        projection: P::NAME,
        source,
    }
}

impl<P: Projection<Context = PgProjectionContext>> PgProjectionRunner<P> {
    /// A runner for `projection` over `store`, with batches of 256 events.
    pub fn new(store: PgStore, projection: P) -> Self {
        Self {
            store,
            projection,
            batch_size: 256,
            standby_poll: Duration::from_millis(500),
            checkpoint: Position::ZERO,
            lease: None,
            standby: None,
        }
    }

    /// How many events one batch (one transaction) holds. The runner holds at most three
    /// batches in memory (one handled, two read ahead: see [`LogFeed`]).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// How often a standby runner tries to take the lease (default 500 ms).
    pub fn standby_poll(mut self, every: Duration) -> Self {
        self.standby_poll = every;
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Takes the lease (waiting while another runner holds it), catches up to the current end
    /// of the log and returns the checkpoint reached. Keeps the lease until dropped.
    pub async fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        self.wait_for_lease(None).await?;
        let mut feed = self.feed();
        loop {
            let page = feed.page(self.checkpoint).await.map_err(store_error::<P>)?;
            if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                return Ok(self.checkpoint);
            }
            match self.process(page).await {
                Ok(()) => {}
                Err(BatchError::Failed(e)) => return Err(e),
                Err(BatchError::LeaseLost) => {
                    self.lease = None;
                    return Err(lease_lost::<P>());
                }
            }
        }
    }

    /// Clears the read model (in one transaction with the checkpoint), then catches up.
    pub async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        self.wait_for_lease(None).await?;
        match self.reset().await {
            Ok(()) => self.catch_up().await,
            Err(BatchError::Failed(e)) => Err(e),
            Err(BatchError::LeaseLost) => {
                self.lease = None;
                Err(lease_lost::<P>())
            }
        }
    }

    /// Starts the runner on a tokio task: it stands by until it holds the lease, then
    /// catches up and follows the log live.
    pub fn spawn(self) -> ProjectionHandle {
        let (control_tx, control_rx) = mpsc::channel(4);
        let (status_tx, status_rx) = watch::channel(ProjectionStatus::default());
        let span = tracing::info_span!("pg_projection", projection = P::NAME);
        let task = tokio::spawn(self.run(control_rx, status_tx).instrument(span));
        ProjectionHandle::from_parts(P::NAME, status_rx, control_tx, task)
    }

    async fn run(
        mut self,
        mut control: mpsc::Receiver<ProjectionControl>,
        status: watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        let followed = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            self.follow(&mut control, &status),
        ))
        .await;
        let result = followed.unwrap_or_else(|payload| {
            Err(ProjectionError::TaskEnded {
                projection: P::NAME,
                message: format!(
                    "panicked: {}",
                    eventsource_core::projection::panic_message(&*payload)
                ),
            })
        });
        if let Some(lease) = self.lease.take() {
            // Closing the connection releases the advisory lock.
            let _ = lease.conn.close().await;
        }
        if let Some(conn) = self.standby.take() {
            let _ = conn.close().await;
        }
        status.send_modify(|s| {
            s.stopped = true;
            s.leader = false;
            if let Err(e) = &result {
                s.failed = Some(Arc::new(e.clone()));
            }
        });
        if let Err(error) = &result {
            tracing::error!(%error, "projection stopped");
        }
        result
    }

    async fn follow(
        &mut self,
        control: &mut mpsc::Receiver<ProjectionControl>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        let mut wait = RETRY_START;
        let mut feed = self.feed();
        loop {
            if self.lease.is_none() {
                feed.stop();
                status.send_modify(|s| s.leader = false);
                if !self.wait_for_lease(Some(control)).await? {
                    return Ok(());
                }
                status.send_modify(|s| {
                    s.leader = true;
                    s.checkpoint = self.checkpoint;
                });
            }
            match control.try_recv() {
                Ok(ProjectionControl::Shutdown) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Ok(());
                }
                Ok(ProjectionControl::Rebuild(ack)) => {
                    feed.stop();
                    self.rebuild_now(ack, status).await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let page = match feed.page(self.checkpoint).await.map_err(store_error::<P>) {
                Ok(page) => page,
                Err(e) => {
                    pause_if_retryable(e, &mut wait).await?;
                    continue;
                }
            };
            if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                status.send_modify(|s| s.caught_up = true);
                tokio::select! {
                    woke = self.store.wait_for_events(self.checkpoint) => {
                        if let Err(error) = woke {
                            tracing::warn!(%error, "waiting for events failed; polling");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    msg = control.recv() => match msg {
                        Some(ProjectionControl::Rebuild(ack)) => self.rebuild_now(ack, status).await,
                        Some(ProjectionControl::Shutdown) | None => return Ok(()),
                    },
                }
                continue;
            }
            let full = page.events.len() >= self.batch_size;
            match self.process(page).await {
                Ok(()) => {
                    wait = RETRY_START;
                    status.send_modify(|s| {
                        s.checkpoint = self.checkpoint;
                        s.caught_up = !full;
                    });
                }
                Err(BatchError::LeaseLost) => {
                    tracing::warn!("another runner took the lease over; standing by");
                    self.lease = None;
                }
                Err(BatchError::Failed(e)) => {
                    // Stop the read ahead now, not after the pause: its pages are not used.
                    feed.stop();
                    pause_if_retryable(e, &mut wait).await?;
                }
            }
        }
    }

    /// Waits until this runner holds the lease, then loads the checkpoint. With `control`,
    /// returns `Ok(false)` if a shutdown arrives first.
    async fn wait_for_lease(
        &mut self,
        mut control: Option<&mut mpsc::Receiver<ProjectionControl>>,
    ) -> Result<bool, ProjectionError> {
        if self.lease.is_some() {
            return Ok(true);
        }
        let mut wait = RETRY_START;
        loop {
            match self.try_take_lease().await {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => {
                    pause_if_retryable(e, &mut wait).await?;
                    continue;
                }
            }
            match control.as_deref_mut() {
                None => tokio::time::sleep(self.standby_poll).await,
                Some(control) => tokio::select! {
                    _ = tokio::time::sleep(self.standby_poll) => {}
                    msg = control.recv() => match msg {
                        Some(ProjectionControl::Rebuild(ack)) => {
                            // Only the leader rebuilds; a standby says so.
                            let _ = ack.send(Err(ProjectionError::Stopped {
                                projection: P::NAME,
                                cause: None,
                            }));
                        }
                        Some(ProjectionControl::Shutdown) | None => return Ok(false),
                    },
                },
            }
        }
    }

    async fn try_take_lease(&mut self) -> Result<bool, ProjectionError> {
        let options = self.store.pool().connect_options();
        // A standby keeps its connection between attempts.
        let mut conn = match self.standby.take() {
            Some(conn) => conn,
            None => PgConnection::connect_with(&options)
                .await
                .map_err(|e| store_error::<P>(backend("opening the lease connection", e)))?,
        };
        let key = format!("{}/{}", self.store.schema().as_str(), P::NAME);
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 13))")
            .bind(&key)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| store_error::<P>(backend("taking the projection lease", e)))?;
        if !got {
            self.standby = Some(conn);
            return Ok(false);
        }
        let token = Uuid::new_v4();
        let (c, s): (i64, i64) = sqlx::query_as(&self.store.sql().take_lease)
            .bind(P::NAME)
            .bind(token)
            .fetch_one(self.store.pool())
            .await
            .map_err(|e| store_error::<P>(backend("stamping the projection lease", e)))?;
        self.checkpoint = position_from(c, s).unwrap_or(Position::ZERO);
        self.lease = Some(Lease { conn, token });
        tracing::info!(checkpoint = %self.checkpoint, "took the projection lease");
        Ok(true)
    }

    fn feed(&self) -> LogFeed<PgStore> {
        LogFeed::new(self.store.clone(), self.batch_size, P::event_types())
    }

    fn token(&self) -> Result<Uuid, BatchError> {
        self.lease
            .as_ref()
            .map(|l| l.token)
            .ok_or(BatchError::LeaseLost)
    }

    // `&mut self`, not `&self`: the runner is `Send` but need not be `Sync`.
    async fn begin(&mut self) -> Result<PgProjectionContext, BatchError> {
        let tx =
            self.store.pool().begin().await.map_err(|e| {
                BatchError::Failed(store_error::<P>(backend("beginning a batch", e)))
            })?;
        Ok(PgProjectionContext::new(tx, self.store.clone()))
    }

    /// Saves the checkpoint in `ctx`'s transaction and commits, if this runner still holds
    /// the lease.
    async fn commit(
        &mut self,
        mut ctx: PgProjectionContext,
        to: Position,
    ) -> Result<(), BatchError> {
        let token = self.token()?;
        let (c, s) = position_params(to);
        let fail = |e| BatchError::Failed(store_error::<P>(backend("saving the checkpoint", e)));
        let saved = sqlx::query(&self.store.sql().save_checkpoint_fenced)
            .bind(P::NAME)
            .bind(c)
            .bind(s)
            .bind(token)
            .execute(ctx.conn())
            .await
            .map_err(fail)?;
        if saved.rows_affected() == 0 {
            return Err(BatchError::LeaseLost);
        }
        ctx.commit().await.map(drop).map_err(fail)
    }

    async fn process(&mut self, page: LogPage) -> Result<(), BatchError> {
        let span = tracing::debug_span!(
            "projection_batch",
            projection = P::NAME,
            from = %self.checkpoint,
            to = %page.scanned_to,
            events = page.events.len()
        );
        async {
            let mut ctx = self.begin().await?;
            let mut to = self.checkpoint;
            for event in &page.events {
                if let Err(failure) = guarded(self.projection.handle_event(event, &mut ctx)).await {
                    // Dropping the transaction rolls back the read model; the checkpoint
                    // stays where the batch began.
                    return Err(BatchError::Failed(failure.on(P::NAME, event)));
                }
                to = event.position;
            }
            let to = page.scanned_to.max(to);
            self.commit(ctx, to).await?;
            self.checkpoint = to;
            Ok(())
        }
        .instrument(span)
        .await
    }

    async fn reset(&mut self) -> Result<(), BatchError> {
        tracing::info!("rebuilding from zero");
        let mut ctx = self.begin().await?;
        guarded(self.projection.reset(&mut ctx))
            .await
            .map_err(|failure| {
                BatchError::Failed(ProjectionError::Reset {
                    projection: P::NAME,
                    source: failure.into_shared(),
                })
            })?;
        self.commit(ctx, Position::ZERO).await?;
        self.checkpoint = Position::ZERO;
        Ok(())
    }

    async fn rebuild_now(
        &mut self,
        ack: oneshot::Sender<Result<(), ProjectionError>>,
        status: &watch::Sender<ProjectionStatus>,
    ) {
        let result = match self.reset().await {
            Ok(()) => Ok(()),
            Err(BatchError::Failed(e)) => Err(e),
            Err(BatchError::LeaseLost) => {
                self.lease = None;
                Err(lease_lost::<P>())
            }
        };
        status.send_modify(|s| {
            s.checkpoint = self.checkpoint;
            s.caught_up = false;
        });
        let _ = ack.send(result);
    }
}

fn lease_lost<P: Projection>() -> ProjectionError {
    ProjectionError::LeaseLost {
        projection: P::NAME,
    }
}
