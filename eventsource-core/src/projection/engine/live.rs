//! The spawned runner: it leads (standing by, or waiting out faults, meanwhile), follows the
//! log live once caught up, and answers its handle (rebuilds, dead-letter requests,
//! shutdown) between batches.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::{BACKOFF_START, Engine, Flow, Halt, Role};
use crate::projection::backend::{BackendError, RunnerBackend};
use crate::projection::feed::LogFeed;
use crate::projection::handle::{Control, ProjectionStatus};
use crate::projection::{Projection, ProjectionError};
use crate::store::EventStore;

impl<P, S, B> Engine<P, S, B>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
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
        // Stopped between sealing the serving version and taking over from it: the serving
        // version serves on.
        self.abandon_switch().await;
        self.backend.step_down().await;
        result
    }

    pub(super) async fn follow(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        let mut feed = self.feed();
        loop {
            // Lead: from the durable checkpoint.
            feed.stop();
            self.forget_switch();
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
                Halt::Fatal(error) | Halt::Broken(error) => return Err(error),
                // `step` goes on by itself after these; leading again reads the versions.
                Halt::Again | Halt::Relead => {}
                Halt::Superseded(by) => {
                    self.retire(by, status);
                    return Ok(());
                }
                Halt::LeaseLost => {
                    tracing::warn!("another runner leads the projection now: standing by");
                    self.condemned.clear();
                    self.transient.clear();
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
    pub(super) async fn lead(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, ProjectionError> {
        loop {
            match self.try_lead().await {
                Ok(Some(checkpoint)) => {
                    self.checkpoint = checkpoint;
                    let letters = self.pending_positions();
                    let serving = self.role == Role::Serving;
                    let version = self.version;
                    status.send_modify(|s| {
                        s.leader = true;
                        s.checkpoint = checkpoint;
                        s.dead_letters = letters;
                        s.version = version;
                        s.serving = serving;
                    });
                    return Ok(Flow::Go);
                }
                Err(Halt::Superseded(by)) => {
                    self.retire(by, status);
                    return Ok(Flow::Stop);
                }
                Ok(None) | Err(Halt::LeaseLost | Halt::Again | Halt::Relead) => {
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
                Err(Halt::Fatal(error) | Halt::Broken(error)) => return Err(error),
            }
        }
    }

    /// One step while leading: a control message, a batch, or a wait for new events.
    pub(super) async fn step(
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
            Ok(request) => return self.answer(request, status).await,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let page = feed
            .page(self.checkpoint)
            .await
            .map_err(|e| self.halt(BackendError::Store(e)))?;
        let page = self.capped(page);
        if page.events.is_empty() && page.scanned_to <= self.checkpoint {
            if let Role::Warming { cap, .. } = self.role
                && self.checkpoint >= cap
            {
                // Caught up with the serving version: chase it, seal it, or take over.
                feed.stop();
                if self.at_cap().await? {
                    status.send_modify(|s| s.serving = true);
                }
                return Ok(Flow::Go);
            }
            self.rebuilding = false;
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
            // A switch of versions appends nothing: an idle runner looks at the versions
            // now and then, so a version switched away from stops (or stands by while
            // sealed) without waiting for the next event.
            let look = *self.next_look.get_or_insert_with(|| {
                tokio::time::Instant::now() + self.backend.standby_poll() * 4
            });
            tokio::select! {
                () = tokio::time::sleep_until(look) => {
                    self.next_look = None;
                    if !self.still_serving().await? {
                        return Err(Halt::Relead);
                    }
                }
                woke = self.store.wait_for_events(self.checkpoint) => {
                    if let Err(e) = woke {
                        return Err(self.halt(BackendError::Store(e)));
                    }
                }
                () = lost => {
                    tracing::warn!("the right to run the projection is gone: leading again");
                    return Err(Halt::LeaseLost);
                }
                msg = control.recv() => match msg {
                    Some(Control::Rebuild(ack)) => return self.rebuild_now(ack, status).await,
                    Some(Control::Shutdown) | None => return Ok(Flow::Stop),
                    Some(request) => return self.answer(request, status).await,
                },
            }
            return Ok(Flow::Go);
        }
        let full = page.events.len() >= self.batch_size;
        let letters = self.pending.positions.len();
        match self.process(page).await {
            Ok(()) => {}
            // The batch is handled again at once, with the failed event as a dead letter.
            Err(Halt::Again) => return Ok(Flow::Go),
            Err(halt) => return Err(halt),
        }
        self.backoff = BACKOFF_START;
        let checkpoint = self.checkpoint;
        let positions = (self.pending.positions.len() != letters).then(|| self.pending_positions());
        status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.caught_up = !full;
            s.retrying = None;
            if let Some(positions) = positions {
                s.dead_letters = positions;
            }
        });
        Ok(Flow::Go)
    }

    /// Runs a rebuild asked for through the handle, and answers it. A failed reset is
    /// answered with its error and the runner goes on; a fault pauses as any other.
    pub(super) async fn rebuild_now(
        &mut self,
        ack: tokio::sync::oneshot::Sender<Result<(), ProjectionError>>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, Halt> {
        let result = self.reset().await;
        let checkpoint = self.checkpoint;
        let positions = self.pending_positions();
        status.send_modify(|s| {
            s.checkpoint = checkpoint;
            s.caught_up = false;
            s.dead_letters = positions;
        });
        match result {
            Ok(()) => {
                // The caller may have stopped waiting; the rebuild stands either way.
                let _ = ack.send(Ok(()));
                Ok(Flow::Go)
            }
            // The read model was emptied but the checkpoint is not at zero: stop.
            Err(Halt::Broken(error)) => {
                let _ = ack.send(Err(error.clone()));
                Err(Halt::Fatal(error))
            }
            Err(Halt::Fatal(error)) => {
                let _ = ack.send(Err(error));
                Ok(Flow::Go)
            }
            Err(Halt::Fault(error)) => {
                let _ = ack.send(Err(error.clone()));
                Err(Halt::Fault(error))
            }
            Err(Halt::LeaseLost | Halt::Again) => {
                let _ = ack.send(Err(self.lease_lost()));
                Err(Halt::LeaseLost)
            }
            Err(Halt::Relead) => {
                let _ = ack.send(Err(self.not_leading()));
                Err(Halt::Relead)
            }
            Err(Halt::Superseded(by)) => {
                let _ = ack.send(Err(self.superseded(by)));
                Err(Halt::Superseded(by))
            }
        }
    }

    /// Waits out a fault (the status says why), answering the handle meanwhile; whether a
    /// shutdown came.
    pub(super) async fn pause(
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

    /// Stops as a version that a newer one replaced (the status says by which).
    fn retire(&self, by: u32, status: &watch::Sender<ProjectionStatus>) {
        tracing::info!(
            by,
            "a newer version of the projection serves: this one stops"
        );
        status.send_modify(|s| {
            s.leader = false;
            s.serving = false;
            s.superseded_by = Some(by);
        });
    }

    pub(super) fn not_leading(&self) -> ProjectionError {
        ProjectionError::NotLeading {
            projection: Arc::clone(&self.name),
        }
    }

    /// Sleeps `wait`, answering the handle meanwhile (a rebuild is refused: this runner does
    /// not lead now); whether a shutdown came.
    pub(super) async fn wait_or_answer(
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
                        let _ = ack.send(Err(self.not_leading()));
                    }
                    Some(Control::Retry(_, ack)) => {
                        let _ = ack.send(Err(self.not_leading()));
                    }
                    Some(Control::Discard(_, ack)) => {
                        let _ = ack.send(Err(self.not_leading()));
                    }
                    Some(Control::Shutdown) | None => return true,
                },
            }
        }
    }
}
