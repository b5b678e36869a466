//! The one projection loop, for every store: lead (the backend says whether this process may
//! run the projection, and from which durable checkpoint), read pages from the checkpoint,
//! hand each event to the projection, make each batch durable through the backend, follow
//! the log live once caught up, rebuild on request, and ride out transient faults.
//!
//! Faults are weather: a transient store error anywhere (reading, beginning or committing a
//! batch, the lease's own connection, a handler's batch whose connection died) pauses the
//! loop with bounded exponential backoff, and the loop goes on from the durable checkpoint
//! the backend hands back when it leads again: nothing is skipped, and a batch that did not
//! commit is handled again (exactly once where the backend's batches are atomic). What stops
//! the loop is only what retrying cannot fix: a handler's own failure or panic (the event is
//! named), a store error that is not transient. A lease another runner took over makes this
//! one stand by.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::backend::{BackendError, RunnerBackend};
use super::error::{HandlerFailure, guarded};
use super::feed::LogFeed;
use super::handle::{Control, ProjectionStatus};
use super::{Projection, ProjectionError};
use crate::ids::Position;
use crate::store::{EventStore, LogPage};

/// The first pause after a fault.
const BACKOFF_START: Duration = Duration::from_millis(50);
/// The longest pause.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What stopped a batch or a step.
#[derive(Debug)]
pub(crate) enum Halt {
    /// A transient fault: wait it out, then go on from the durable checkpoint.
    Fault(ProjectionError),
    /// Another runner leads the projection now.
    LeaseLost,
    /// What retrying cannot fix: the runner stops with it.
    Fatal(ProjectionError),
}

/// The loop's state: the projection, its store and backend, and where it stands.
pub(crate) struct Engine<P, S, B> {
    pub(crate) store: S,
    pub(crate) projection: P,
    pub(crate) backend: B,
    pub(crate) batch_size: usize,
    checkpoint: Position,
    backoff: Duration,
    /// Whether this runner has led the projection before (a one-shot catch-up that finds
    /// another runner leading now says so, rather than wait).
    has_led: bool,
    /// The backend's right to run, where it can be lost ([`RunnerBackend::leadership`]).
    leadership: Option<watch::Receiver<bool>>,
}

/// Whether the loop goes on after a step.
enum Flow {
    Go,
    Stop,
}

impl<P, S, B> Engine<P, S, B>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
    pub(crate) fn new(store: S, projection: P, backend: B) -> Self {
        let leadership = backend.leadership();
        Self {
            leadership,
            store,
            projection,
            backend,
            batch_size: 256,
            checkpoint: Position::ZERO,
            backoff: BACKOFF_START,
            has_led: false,
        }
    }

    /// Whether the right to run is known to be lost (no I/O: what the backend last saw).
    fn known_lost(&self) -> bool {
        self.leadership.as_ref().is_some_and(|rx| !*rx.borrow())
    }

    fn feed(&self) -> LogFeed<S> {
        LogFeed::new(self.store.clone(), self.batch_size, P::event_types())
    }

    fn store_error(e: crate::error::StoreError) -> ProjectionError {
        ProjectionError::Store {
            projection: P::NAME,
            source: e,
        }
    }

    fn halt(e: BackendError) -> Halt {
        match e {
            BackendError::Store(e) if e.is_retryable() => Halt::Fault(Self::store_error(e)),
            BackendError::Store(e) => Halt::Fatal(Self::store_error(e)),
            BackendError::LeaseLost => Halt::LeaseLost,
        }
    }

    /// The pause before the next try after a fault, doubling up to [`BACKOFF_MAX`].
    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// Tries to lead once: the durable checkpoint when this process leads now.
    async fn try_lead(&mut self) -> Result<Option<Position>, Halt> {
        match self.backend.lead(P::NAME).await {
            Ok(Some(checkpoint)) => {
                self.has_led = true;
                Ok(Some(checkpoint))
            }
            Ok(None) => Ok(None),
            Err(BackendError::LeaseLost) => Ok(None),
            Err(e) => Err(Self::halt(e)),
        }
    }

    /// Handles a page as one batch and makes it durable with the checkpoint at its end. A
    /// handler's failure: an atomic batch is abandoned; otherwise the events before it stand
    /// and the checkpoint is saved just before it.
    async fn process(&mut self, page: LogPage) -> Result<(), Halt> {
        // A runner that lost its lease runs no handler: another runner may be applying the
        // same events (its commit would be refused anyway, but its handlers would meet the
        // other's writes).
        if self.known_lost() {
            return Err(Halt::LeaseLost);
        }
        let span = tracing::debug_span!(
            "projection_batch",
            projection = P::NAME,
            from = %self.checkpoint,
            to = %page.scanned_to,
            events = page.events.len()
        );
        tracing::Instrument::instrument(
            async {
                let mut ctx = self.backend.begin().await.map_err(Self::halt)?;
                let mut handled_to = self.checkpoint;
                for event in &page.events {
                    if let Err(failure) =
                        guarded(self.projection.handle_event(event, &mut ctx)).await
                    {
                        return Err(self.failed(ctx, handled_to, failure, event).await);
                    }
                    handled_to = event.position;
                }
                let to = page.scanned_to.max(handled_to);
                self.backend
                    .commit(ctx, P::NAME, to)
                    .await
                    .map_err(Self::halt)?;
                self.checkpoint = to;
                Ok(())
            },
            span,
        )
        .await
    }

    /// After a handler failed on `event` (`handled_to`: the events before it in the batch).
    async fn failed(
        &mut self,
        ctx: B::Context,
        handled_to: Position,
        failure: HandlerFailure,
        event: &crate::envelope::RecordedEvent,
    ) -> Halt {
        if B::ATOMIC {
            let sound = self.backend.abandon(ctx).await;
            let transient = match &failure {
                HandlerFailure::Error(e) => !sound || self.backend.is_transient(&**e),
                // A panic stops the runner whatever the store: the projection's own state
                // may be half-updated.
                HandlerFailure::Panic(_) => false,
            };
            let error = failure.on(P::NAME, event);
            if transient {
                return Halt::Fault(error);
            }
            // A handler's own failure, unless this runner no longer leads: then it may have
            // met the writes of the runner that does (a unique key, say), and stands by.
            return match self.backend.lead(P::NAME).await {
                Ok(Some(_)) => Halt::Fatal(error),
                Ok(None) | Err(BackendError::LeaseLost) => Halt::LeaseLost,
                Err(e) => Self::halt(e),
            };
        }
        if let Err(e) = self.backend.commit(ctx, P::NAME, handled_to).await {
            return Self::halt(e);
        }
        self.checkpoint = handled_to;
        Halt::Fatal(failure.on(P::NAME, event))
    }

    /// Empties the read model and sets the checkpoint to zero, in one batch.
    async fn reset(&mut self) -> Result<(), Halt> {
        tracing::info!("rebuilding from zero");
        let mut ctx = self.backend.begin().await.map_err(Self::halt)?;
        if let Err(failure) = guarded(self.projection.reset(&mut ctx)).await {
            self.backend.abandon(ctx).await;
            return Err(Halt::Fatal(ProjectionError::Reset {
                projection: P::NAME,
                source: failure.into_shared(),
            }));
        }
        self.backend
            .commit(ctx, P::NAME, Position::ZERO)
            .await
            .map_err(Self::halt)?;
        self.checkpoint = Position::ZERO;
        Ok(())
    }

    /// Catches up from the durable checkpoint to the end of the log as this process reads
    /// it, riding out transient faults; returns the checkpoint reached. A runner that does
    /// not lead waits until it does.
    pub(crate) async fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        let mut feed = self.feed();
        let mut leading = false;
        loop {
            let step = async {
                if !leading {
                    match self.try_lead().await? {
                        Some(checkpoint) => {
                            self.checkpoint = checkpoint;
                            leading = true;
                        }
                        None if self.has_led => return Err(Halt::LeaseLost),
                        None => {
                            tokio::time::sleep(self.backend.standby_poll()).await;
                            return Ok(false);
                        }
                    }
                }
                let page = feed
                    .page(self.checkpoint)
                    .await
                    .map_err(|e| Self::halt(BackendError::Store(e)))?;
                if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                    return Ok(true);
                }
                self.process(page).await.map(|()| false)
            };
            match step.await {
                Ok(true) => return Ok(self.checkpoint),
                Ok(false) => self.backoff = BACKOFF_START,
                Err(Halt::Fault(error)) => {
                    feed.stop();
                    leading = false;
                    let wait = self.next_backoff();
                    tracing::warn!(%error, ?wait, "transient fault: retrying from the durable checkpoint");
                    tokio::time::sleep(wait).await;
                }
                Err(Halt::LeaseLost) => {
                    self.backend.step_down().await;
                    return Err(ProjectionError::LeaseLost {
                        projection: P::NAME,
                    });
                }
                Err(Halt::Fatal(error)) => return Err(error),
            }
        }
    }

    /// Empties the read model and the checkpoint, then catches up from zero.
    pub(crate) async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        loop {
            match self.try_lead().await {
                Ok(Some(_)) => break,
                Ok(None) => tokio::time::sleep(self.backend.standby_poll()).await,
                Err(Halt::Fault(_)) => tokio::time::sleep(self.next_backoff()).await,
                Err(Halt::LeaseLost) => {
                    return Err(ProjectionError::LeaseLost {
                        projection: P::NAME,
                    });
                }
                Err(Halt::Fatal(e)) => return Err(e),
            }
        }
        match self.reset().await {
            Ok(()) => {}
            Err(Halt::Fatal(e) | Halt::Fault(e)) => return Err(e),
            Err(Halt::LeaseLost) => {
                return Err(ProjectionError::LeaseLost {
                    projection: P::NAME,
                });
            }
        }
        self.catch_up().await
    }

    /// The spawned runner: leads, follows the log live, answers its handle, until it is shut
    /// down or meets what retrying cannot fix.
    pub(crate) async fn run(
        mut self,
        mut control: mpsc::Receiver<Control>,
        status: watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        // The status says at once when the right to run is lost, whatever the loop is
        // doing (a read riding out the fault that took the lease, say).
        let leadership = self.backend.leadership();
        let mirror = async {
            match leadership {
                Some(mut rx) => {
                    while rx.changed().await.is_ok() {
                        if !*rx.borrow_and_update() {
                            status.send_modify(|s| s.leader = false);
                        }
                    }
                    std::future::pending::<()>().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let result = tokio::select! {
            result = self.follow(&mut control, &status) => result,
            () = mirror => Ok(()),
        };
        self.backend.step_down().await;
        result
    }

    async fn follow(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        let mut feed = self.feed();
        loop {
            // Lead: from the durable checkpoint.
            feed.stop();
            status.send_modify(|s| s.leader = false);
            match self.lead(control, status).await? {
                Flow::Go => {}
                Flow::Stop => return Ok(()),
            }
            // Follow while leading.
            let halt = loop {
                match self.step(&mut feed, control, status).await {
                    Ok(Flow::Go) => {}
                    Ok(Flow::Stop) => return Ok(()),
                    Err(halt) => break halt,
                }
            };
            feed.stop();
            match halt {
                Halt::Fatal(error) => return Err(error),
                Halt::LeaseLost => {
                    tracing::warn!("another runner leads the projection now: standing by");
                    self.backend.step_down().await;
                }
                Halt::Fault(error) => {
                    if self.pause(error, control, status).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Waits until this process leads (standing by, or waiting out faults meanwhile), then
    /// says so in the status; `Flow::Stop` if a shutdown came first.
    async fn lead(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, ProjectionError> {
        loop {
            match self.try_lead().await {
                Ok(Some(checkpoint)) => {
                    self.checkpoint = checkpoint;
                    status.send_modify(|s| {
                        s.leader = true;
                        s.checkpoint = checkpoint;
                    });
                    return Ok(Flow::Go);
                }
                Ok(None) | Err(Halt::LeaseLost) => {
                    let poll = self.backend.standby_poll();
                    if self.wait_or_answer(poll, control).await {
                        return Ok(Flow::Stop);
                    }
                }
                Err(Halt::Fault(error)) => {
                    if self.pause(error, control, status).await {
                        return Ok(Flow::Stop);
                    }
                }
                Err(Halt::Fatal(error)) => return Err(error),
            }
        }
    }

    /// One step while leading: a control message, a batch, or a wait for new events.
    async fn step(
        &mut self,
        feed: &mut LogFeed<S>,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, Halt> {
        match control.try_recv() {
            Ok(Control::Shutdown) | Err(mpsc::error::TryRecvError::Disconnected) => {
                return Ok(Flow::Stop);
            }
            Ok(Control::Rebuild(ack)) => {
                feed.stop();
                return self.rebuild_now(ack, status).await;
            }
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let page = feed
            .page(self.checkpoint)
            .await
            .map_err(|e| Self::halt(BackendError::Store(e)))?;
        if page.events.is_empty() && page.scanned_to <= self.checkpoint {
            status.send_modify(|s| {
                s.caught_up = true;
                s.retrying = None;
            });
            self.backoff = BACKOFF_START;
            // Wake for new events, a request, or the right to run lost.
            let mut leadership = self.backend.leadership();
            let lost = async {
                match leadership.as_mut() {
                    Some(rx) => drop(rx.wait_for(|leads| !*leads).await),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                woke = self.store.wait_for_events(self.checkpoint) => {
                    if let Err(e) = woke {
                        return Err(Self::halt(BackendError::Store(e)));
                    }
                }
                () = lost => {
                    tracing::warn!("the right to run the projection is gone: leading again");
                    return Err(Halt::LeaseLost);
                }
                msg = control.recv() => match msg {
                    Some(Control::Rebuild(ack)) => return self.rebuild_now(ack, status).await,
                    Some(Control::Shutdown) | None => return Ok(Flow::Stop),
                },
            }
            return Ok(Flow::Go);
        }
        let full = page.events.len() >= self.batch_size;
        self.process(page).await?;
        self.backoff = BACKOFF_START;
        let checkpoint = self.checkpoint;
        status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.caught_up = !full;
            s.retrying = None;
        });
        Ok(Flow::Go)
    }

    /// Runs a rebuild asked for through the handle, and answers it. A failed reset is
    /// answered with its error and the runner goes on; a fault pauses as any other.
    async fn rebuild_now(
        &mut self,
        ack: tokio::sync::oneshot::Sender<Result<(), ProjectionError>>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, Halt> {
        let result = self.reset().await;
        let checkpoint = self.checkpoint;
        status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.caught_up = false;
        });
        match result {
            Ok(()) => {
                // The caller may have stopped waiting; the rebuild stands either way.
                let _ = ack.send(Ok(()));
                Ok(Flow::Go)
            }
            Err(Halt::Fatal(error)) => {
                let _ = ack.send(Err(error));
                Ok(Flow::Go)
            }
            Err(Halt::Fault(error)) => {
                let _ = ack.send(Err(error.clone()));
                Err(Halt::Fault(error))
            }
            Err(Halt::LeaseLost) => {
                let _ = ack.send(Err(ProjectionError::LeaseLost {
                    projection: P::NAME,
                }));
                Err(Halt::LeaseLost)
            }
        }
    }

    /// Waits out a fault (the status says why), answering the handle meanwhile; whether a
    /// shutdown came.
    async fn pause(
        &mut self,
        error: ProjectionError,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> bool {
        let wait = self.next_backoff();
        tracing::warn!(%error, ?wait, "transient fault: retrying from the durable checkpoint");
        status.send_modify(|s| {
            s.leader = false;
            s.retrying = Some(Arc::new(error));
        });
        self.wait_or_answer(wait, control).await
    }

    /// Sleeps `wait`, answering the handle meanwhile (a rebuild is refused: this runner does
    /// not lead now); whether a shutdown came.
    async fn wait_or_answer(
        &mut self,
        wait: Duration,
        control: &mut mpsc::Receiver<Control>,
    ) -> bool {
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return false,
                msg = control.recv() => match msg {
                    Some(Control::Rebuild(ack)) => {
                        let _ = ack.send(Err(ProjectionError::Stopped {
                            projection: P::NAME,
                            cause: None,
                        }));
                    }
                    Some(Control::Shutdown) | None => return true,
                },
            }
        }
    }
}
