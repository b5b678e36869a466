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
//!
//! A handler's failure goes through the projection's [`FailurePolicy`]: an error marked
//! [`Transient`](super::Transient) is tried again (the batch handled again from the durable
//! checkpoint, with backoff) up to its number of attempts; then, or at once for any other
//! error, the policy stops the runner, or passes the event by into dead letters (skip), or
//! parks its stream (its later events become dead letters too, in order). Passing an event
//! by never keeps the handlers' writes of a batch that failed: the batch is abandoned (or,
//! where batches are not atomic, committed up to the event), and handled again with the
//! failed event written as a dead letter instead, in the batch that passes it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use std::collections::{BTreeMap, HashMap};

use super::backend::{BackendError, RunnerBackend};
use super::error::{HandlerFailure, guarded};
use super::feed::LogFeed;
use super::handle::{Control, DeadLetterSelect, ProjectionStatus, Retried};
use super::policy::{FailurePolicy, OnFailure, Transient};
use super::{Projection, ProjectionError};
use crate::envelope::RecordedEvent;
use crate::ids::{EventId, Position, StreamId};
use crate::store::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, DeadLetterReason, EventStore, LogPage,
    ResolutionKind, input,
};

/// Which events of the log an instance of a projection takes (beside its types).
pub(crate) type EventFilter = Arc<dyn Fn(&RecordedEvent) -> bool + Send + Sync>;

/// How many dead letters one read of them takes.
const LETTER_PAGE: usize = 256;

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
    /// A batch failed on an event the policy passes by: go on at once from the durable
    /// checkpoint (the event is written as a dead letter this time).
    Again,
    /// What retrying cannot fix: the runner stops with it.
    Fatal(ProjectionError),
    /// A rebuild emptied the read model but could not move the checkpoint to zero (a
    /// backend whose batches are not atomic): the runner stops, whatever asked for it.
    Broken(ProjectionError),
}

/// The loop's state: the projection, its store and backend, and where it stands.
pub(crate) struct Engine<P, S, B> {
    /// The name it runs under: its checkpoint's and its dead letters' key.
    pub(crate) name: Arc<str>,
    pub(crate) policy: FailurePolicy,
    pub(crate) filter: Option<EventFilter>,
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
    /// The pending dead letters, as loaded when leading and changed since.
    pending: Pending,
    /// Events a batch failed on that the policy passes by: the batch is handled again with
    /// these written as dead letters (the reason, the error's text).
    condemned: HashMap<EventId, Condemned>,
    /// The events a [`Transient`] error was met on (with their positions), and how many
    /// times: forgotten once a batch commits past them.
    transient: HashMap<EventId, (Position, u32)>,
    /// Whether the rebuild default of the policy applies (from a reset until caught up).
    rebuilding: bool,
}

/// An event the policy passes by, to be written as a dead letter when its batch is handled
/// again.
#[derive(Debug)]
struct Condemned {
    position: Position,
    reason: DeadLetterReason,
    error: String,
}

/// A projection's pending dead letters: their positions (with their streams), and how many
/// each stream has (a stream with one is parked while the policy parks streams).
#[derive(Debug, Default)]
struct Pending {
    positions: BTreeMap<Position, StreamId>,
    streams: HashMap<StreamId, usize>,
}

impl Pending {
    fn add(&mut self, position: Position, stream: &StreamId) {
        if self.positions.insert(position, stream.clone()).is_none() {
            *self.streams.entry(stream.clone()).or_default() += 1;
        }
    }

    fn remove(&mut self, position: Position) {
        if let Some(stream) = self.positions.remove(&position)
            && let Some(n) = self.streams.get_mut(&stream)
        {
            *n -= 1;
            if *n == 0 {
                self.streams.remove(&stream);
            }
        }
    }

    fn has(&self, stream: &StreamId) -> bool {
        self.streams.contains_key(stream)
    }
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
            name: Arc::from(P::NAME),
            policy: FailurePolicy::default(),
            filter: None,
            pending: Pending::default(),
            condemned: HashMap::new(),
            transient: HashMap::new(),
            rebuilding: false,
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

    fn store_error(&self, e: crate::error::StoreError) -> ProjectionError {
        ProjectionError::Store {
            projection: Arc::clone(&self.name),
            source: e,
        }
    }

    fn lease_lost(&self) -> ProjectionError {
        ProjectionError::LeaseLost {
            projection: Arc::clone(&self.name),
        }
    }

    fn halt(&self, e: BackendError) -> Halt {
        match e {
            BackendError::Store(e) if e.is_retryable() => Halt::Fault(self.store_error(e)),
            BackendError::Store(e) => Halt::Fatal(self.store_error(e)),
            BackendError::LeaseLost => Halt::LeaseLost,
        }
    }

    /// What the policy says now.
    fn on_failure(&self) -> OnFailure {
        self.policy.on_failure(self.rebuilding)
    }

    /// The pause before the next try after a fault, doubling up to [`BACKOFF_MAX`].
    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// Tries to lead once: the durable checkpoint when this process leads now.
    async fn try_lead(&mut self) -> Result<Option<Position>, Halt> {
        match self.backend.lead(&self.name).await {
            Ok(Some(checkpoint)) => {
                self.has_led = true;
                self.load_pending().await?;
                Ok(Some(checkpoint))
            }
            Ok(None) => Ok(None),
            Err(BackendError::LeaseLost) => Ok(None),
            Err(e) => Err(self.halt(e)),
        }
    }

    /// Reads the pending dead letters (what a runner that held the projection before left),
    /// a page at a time.
    async fn load_pending(&mut self) -> Result<(), Halt> {
        let mut pending = Pending::default();
        self.each_pending(|letter| pending.add(letter.event.position, &letter.event.stream))
            .await?;
        // What this runner condemned stays condemned across its own faults (a batch it
        // handles again writes the same letters); another runner's progress prunes it at
        // the next commit, and a lease lost clears it.
        self.pending = pending;
        Ok(())
    }

    /// Hands each pending dead letter to `f`, in position order, reading them a page at a
    /// time.
    async fn each_pending(&mut self, mut f: impl FnMut(&DeadLetter) + Send) -> Result<(), Halt> {
        let mut query = DeadLetterQuery::pending().limit(LETTER_PAGE);
        loop {
            let page = self.letters(&query).await?;
            page.iter().for_each(&mut f);
            match page.last() {
                Some(last) if page.len() >= LETTER_PAGE => {
                    query = query.after(last.event.position);
                }
                _ => return Ok(()),
            }
        }
    }

    async fn letters(&mut self, query: &DeadLetterQuery) -> Result<Vec<DeadLetter>, Halt> {
        let read = self.store.dead_letters(&self.name, query).await;
        read.map_err(|e| self.halt(BackendError::Store(e)))
    }

    /// Takes the changes a batch made durable into the pending letters.
    fn note(&mut self, letters: &[DeadLetterChange]) {
        for change in letters {
            match change {
                DeadLetterChange::Failed { event, .. } => {
                    self.pending.add(event.position, &event.stream);
                }
                DeadLetterChange::Resolved { .. } => {}
            }
        }
    }

    /// Handles a page as one batch and makes it durable with the checkpoint at its end and
    /// the dead letters it wrote. A handler's failure: see [`Engine::failed`].
    async fn process(&mut self, page: LogPage) -> Result<(), Halt> {
        // A runner that lost its lease runs no handler: another runner may be applying the
        // same events (its commit would be refused anyway, but its handlers would meet the
        // other's writes).
        if self.known_lost() {
            return Err(Halt::LeaseLost);
        }
        let span = tracing::debug_span!(
            "projection_batch",
            projection = %self.name,
            from = %self.checkpoint,
            to = %page.scanned_to,
            events = page.events.len()
        );
        tracing::Instrument::instrument(
            async {
                let mut ctx = self.backend.begin().await.map_err(|e| self.halt(e))?;
                let mut handled_to = self.checkpoint;
                let mut letters = Vec::new();
                // Streams this batch parks (they are parked once it commits).
                let mut parking: Vec<StreamId> = Vec::new();
                let parks = self.on_failure() == OnFailure::ParkStream;
                for event in &page.events {
                    if self.filter.as_ref().is_some_and(|keep| !keep(event)) {
                        handled_to = event.position;
                        continue;
                    }
                    if parks && (self.pending.has(&event.stream) || parking.contains(&event.stream))
                    {
                        handled_to = event.position;
                        if self.pending.positions.contains_key(&event.position) {
                            // Its own letter is pending already (written before a fault the
                            // batch is handled again after): it keeps its reason and error.
                            continue;
                        }
                        letters.push(DeadLetterChange::Failed {
                            event: event.clone(),
                            reason: DeadLetterReason::Parked,
                            error: format!(
                                "stream `{}` is parked behind an earlier dead letter",
                                event.stream
                            ),
                        });
                        continue;
                    }
                    if let Some(condemned) = self.condemned.get(&event.id) {
                        letters.push(DeadLetterChange::Failed {
                            event: event.clone(),
                            reason: condemned.reason,
                            error: condemned.error.clone(),
                        });
                        if parks {
                            parking.push(event.stream.clone());
                        }
                        handled_to = event.position;
                        if !B::ATOMIC {
                            // No handler runs past a letter until it is durable: the batch
                            // ends at it.
                            return self.commit(ctx, handled_to, letters).await;
                        }
                        continue;
                    }
                    if let Err(failure) =
                        guarded(self.projection.handle_event(event, &mut ctx)).await
                    {
                        return Err(self.failed(ctx, handled_to, letters, failure, event).await);
                    }
                    handled_to = event.position;
                }
                let to = page.scanned_to.max(handled_to);
                self.commit(ctx, to, letters).await
            },
            span,
        )
        .await
    }

    /// Makes a batch durable at `to` with `letters`, and takes what it did into the runner's
    /// state.
    async fn commit(
        &mut self,
        ctx: B::Context,
        to: Position,
        letters: Vec<DeadLetterChange>,
    ) -> Result<(), Halt> {
        self.backend
            .commit(ctx, &self.name, to, &letters)
            .await
            .map_err(|e| self.halt(e))?;
        self.note(&letters);
        self.checkpoint = to;
        self.condemned.retain(|_, c| c.position > to);
        self.transient.retain(|_, (at, _)| *at > to);
        if !letters.is_empty() {
            tracing::warn!(
                letters = letters.len(),
                "passed events by into dead letters (the failure policy)"
            );
        }
        Ok(())
    }

    /// After a handler failed on `event` (`handled_to`, `letters`: what the batch did
    /// before it). A panic stops the runner. A transient fault of the store (the batch's
    /// connection died) is waited out. An error marked [`Transient`] is tried again from the
    /// durable checkpoint, with backoff, up to the policy's attempts. Any other error, or one
    /// still failing, goes to the policy: stop, or condemn the event and go on at once, so
    /// that the batch is handled again with the event as a dead letter. An atomic batch is
    /// abandoned first; one that is not keeps what its handlers did before the event and
    /// commits its checkpoint (and letters) just before it.
    async fn failed(
        &mut self,
        ctx: B::Context,
        handled_to: Position,
        letters: Vec<DeadLetterChange>,
        failure: HandlerFailure,
        event: &RecordedEvent,
    ) -> Halt {
        let error = match failure {
            HandlerFailure::Panic(message) => {
                // The projection's own state may be half-updated: stop, whatever the policy.
                let panicked = HandlerFailure::Panic(message).on(&self.name, event);
                return match self.keep_before(ctx, handled_to, letters).await {
                    Ok(()) => Halt::Fatal(panicked),
                    Err(halt) => halt,
                };
            }
            HandlerFailure::Error(error) => error,
        };
        let marked = Transient::marks(&*error);
        if B::ATOMIC {
            let sound = self.backend.abandon(ctx).await;
            if !sound || self.backend.is_transient(&*error) {
                return Halt::Fault(ProjectionError::handler(&self.name, event, error));
            }
        } else if let Err(halt) = self.commit(ctx, handled_to, letters).await {
            return halt;
        }
        if marked {
            let tries = self.transient.get(&event.id).map_or(1, |(_, n)| n + 1);
            if tries < self.policy.attempts() {
                self.transient.insert(event.id, (event.position, tries));
                return Halt::Fault(ProjectionError::handler(&self.name, event, error));
            }
        }
        self.transient.remove(&event.id);
        let text = input::error_text(&error.to_string());
        let error = ProjectionError::handler(&self.name, event, error);
        match self.on_failure() {
            OnFailure::Stop => {
                if !B::ATOMIC {
                    return Halt::Fatal(error);
                }
                // A handler's own failure, unless this runner no longer leads: then it may
                // have met the writes of the runner that does (a unique key, say), and
                // stands by.
                match self.backend.lead(&self.name).await {
                    Ok(Some(_)) => Halt::Fatal(error),
                    Ok(None) | Err(BackendError::LeaseLost) => Halt::LeaseLost,
                    Err(e) => self.halt(e),
                }
            }
            OnFailure::Skip | OnFailure::ParkStream => {
                tracing::warn!(%error, "passing the event by into dead letters");
                self.condemned.insert(
                    event.id,
                    Condemned {
                        position: event.position,
                        reason: DeadLetterReason::Failed,
                        error: text,
                    },
                );
                Halt::Again
            }
        }
    }

    /// Ends a failed batch before the runner stops: an atomic one is abandoned; one that is
    /// not commits what it did before the failed event.
    async fn keep_before(
        &mut self,
        ctx: B::Context,
        handled_to: Position,
        letters: Vec<DeadLetterChange>,
    ) -> Result<(), Halt> {
        if B::ATOMIC {
            self.backend.abandon(ctx).await;
            Ok(())
        } else {
            self.commit(ctx, handled_to, letters).await
        }
    }

    /// Empties the read model and sets the checkpoint to zero, in one batch, which also
    /// resolves the pending dead letters as discarded (the replay meets their events again,
    /// under the rebuild's policy).
    async fn reset(&mut self) -> Result<(), Halt> {
        tracing::info!("rebuilding from zero");
        // The letters to resolve are read before the read model is emptied: nothing that
        // can fault runs between the projection's reset and the batch's commit but the
        // commit itself.
        let mut letters = Vec::new();
        self.each_pending(|l| {
            letters.push(DeadLetterChange::Resolved {
                event_id: l.event.id,
                kind: ResolutionKind::Discarded,
            });
        })
        .await?;
        let mut ctx = self.backend.begin().await.map_err(|e| self.halt(e))?;
        if let Err(failure) = guarded(self.projection.reset(&mut ctx)).await {
            self.backend.abandon(ctx).await;
            return Err(Halt::Fatal(ProjectionError::Reset {
                projection: Arc::clone(&self.name),
                source: failure.into_shared(),
            }));
        }
        match self.commit(ctx, Position::ZERO, letters).await {
            Ok(()) => {}
            // Where batches are not atomic the read model is empty now while the durable
            // checkpoint is not zero: going on from it would leave out everything before it.
            // Stop, whatever the error: a rebuild run again starts over.
            Err(Halt::Fault(error) | Halt::Fatal(error)) if !B::ATOMIC => {
                return Err(Halt::Broken(error));
            }
            Err(halt) => return Err(halt),
        }
        self.pending = Pending::default();
        self.condemned.clear();
        self.transient.clear();
        self.rebuilding = true;
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
                    .map_err(|e| self.halt(BackendError::Store(e)))?;
                if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                    return Ok(true);
                }
                self.process(page).await.map(|()| false)
            };
            match step.await {
                Ok(true) => {
                    self.rebuilding = false;
                    return Ok(self.checkpoint);
                }
                Ok(false) => self.backoff = BACKOFF_START,
                Err(Halt::Again) => {}
                Err(Halt::Fault(error)) => {
                    feed.stop();
                    leading = false;
                    let wait = self.next_backoff();
                    tracing::warn!(%error, ?wait, "transient fault: retrying from the durable checkpoint");
                    tokio::time::sleep(wait).await;
                }
                Err(Halt::LeaseLost) => {
                    self.backend.step_down().await;
                    return Err(self.lease_lost());
                }
                Err(Halt::Fatal(error) | Halt::Broken(error)) => return Err(error),
            }
        }
    }

    /// Empties the read model and the checkpoint, then catches up from zero.
    pub(crate) async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        loop {
            match self.try_lead().await {
                Ok(Some(_)) => break,
                Ok(None) => tokio::time::sleep(self.backend.standby_poll()).await,
                Err(Halt::Fault(_) | Halt::Again) => {
                    tokio::time::sleep(self.next_backoff()).await;
                }
                Err(Halt::LeaseLost) => return Err(self.lease_lost()),
                Err(Halt::Fatal(e) | Halt::Broken(e)) => return Err(e),
            }
        }
        match self.reset().await {
            Ok(()) => {}
            Err(Halt::Fatal(e) | Halt::Fault(e) | Halt::Broken(e)) => return Err(e),
            Err(Halt::LeaseLost | Halt::Again) => return Err(self.lease_lost()),
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
                Halt::Fatal(error) | Halt::Broken(error) => return Err(error),
                // `step` goes on by itself after these.
                Halt::Again => {}
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
    async fn lead(
        &mut self,
        control: &mut mpsc::Receiver<Control>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, ProjectionError> {
        loop {
            match self.try_lead().await {
                Ok(Some(checkpoint)) => {
                    self.checkpoint = checkpoint;
                    let letters = self.pending_positions();
                    status.send_modify(|s| {
                        s.leader = true;
                        s.checkpoint = checkpoint;
                        s.dead_letters = letters;
                    });
                    return Ok(Flow::Go);
                }
                Ok(None) | Err(Halt::LeaseLost | Halt::Again) => {
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
            Ok(request) => return self.answer(request, status).await,
            Err(mpsc::error::TryRecvError::Empty) => {}
        }
        let page = feed
            .page(self.checkpoint)
            .await
            .map_err(|e| self.halt(BackendError::Store(e)))?;
        if page.events.is_empty() && page.scanned_to <= self.checkpoint {
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
            tokio::select! {
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

    /// The positions of the pending dead letters, for the status.
    fn pending_positions(&self) -> Arc<std::collections::BTreeSet<Position>> {
        Arc::new(self.pending.positions.keys().copied().collect())
    }

    /// Answers a retry or a discard of dead letters, between batches. The status shows what
    /// it changed before the caller hears back, so a `wait_for` after it sees its letters.
    async fn answer(
        &mut self,
        request: Control,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<Flow, Halt> {
        match request {
            Control::Retry(select, ack) => {
                let done = self.retry(&select).await;
                self.publish_letters(status);
                let (reply, flow) = split(done, self.lease_lost());
                let _ = ack.send(reply);
                flow
            }
            Control::Discard(select, ack) => {
                let done = self.discard(&select).await;
                self.publish_letters(status);
                let (reply, flow) = split(done, self.lease_lost());
                let _ = ack.send(reply);
                flow
            }
            Control::Rebuild(ack) => self.rebuild_now(ack, status).await,
            Control::Shutdown => Ok(Flow::Stop),
        }
    }

    /// Shows the pending letters in the status.
    fn publish_letters(&self, status: &watch::Sender<ProjectionStatus>) {
        let positions = self.pending_positions();
        status.send_modify(|s| s.dead_letters = positions);
    }

    /// The pending letters `select` takes, in position order, a page after `after`, and
    /// where the next page starts if there may be more.
    async fn selected(
        &mut self,
        select: &DeadLetterSelect,
        after: Position,
    ) -> Result<(Vec<DeadLetter>, Option<Position>), Halt> {
        let query = DeadLetterQuery::pending().limit(LETTER_PAGE).after(after);
        let (mut page, upto) = match select {
            DeadLetterSelect::All => (self.letters(&query).await?, None),
            DeadLetterSelect::Stream(stream) => {
                (self.letters(&query.stream(stream.clone())).await?, None)
            }
            DeadLetterSelect::Event(id) => {
                let found = self.store.event_by_id(*id).await;
                let event = found.map_err(|e| self.halt(BackendError::Store(e)))?;
                let Some(event) = event else {
                    return Ok((Vec::new(), None));
                };
                let page = self.letters(&query.stream(event.stream.clone())).await?;
                (page, Some(event.position))
            }
        };
        let next = match page.last() {
            Some(last) if page.len() >= LETTER_PAGE => Some(last.event.position),
            _ => None,
        };
        if let Some(upto) = upto {
            page.retain(|l| l.event.position <= upto);
            // The letters of its stream after the event are not taken: no page after them.
            return Ok((page, next.filter(|n| *n < upto)));
        }
        Ok((page, next))
    }

    /// Hands the selected letters to the handler again, each in a batch of its own, in
    /// position order; a stream's first letter that fails again stops its stream.
    async fn retry(&mut self, select: &DeadLetterSelect) -> Result<Retried, Halt> {
        let mut done = Retried::default();
        let mut blocked: Vec<StreamId> = Vec::new();
        let mut after = Position::ZERO;
        loop {
            let (page, next) = self.selected(select, after).await?;
            for letter in page {
                let event = &letter.event;
                if blocked.contains(&event.stream) {
                    continue;
                }
                if self.known_lost() {
                    return Err(Halt::LeaseLost);
                }
                let mut ctx = self.backend.begin().await.map_err(|e| self.halt(e))?;
                let change = match guarded(self.projection.handle_event(event, &mut ctx)).await {
                    Ok(()) => {
                        done.handled.push(event.id);
                        DeadLetterChange::Resolved {
                            event_id: event.id,
                            kind: ResolutionKind::Retried,
                        }
                    }
                    Err(HandlerFailure::Panic(message)) => {
                        self.backend.abandon(ctx).await;
                        return Err(Halt::Fatal(
                            HandlerFailure::Panic(message).on(&self.name, event),
                        ));
                    }
                    Err(HandlerFailure::Error(error)) => {
                        if !self.backend.abandon(ctx).await || self.backend.is_transient(&*error) {
                            return Err(Halt::Fault(ProjectionError::handler(
                                &self.name, event, error,
                            )));
                        }
                        ctx = self.backend.begin().await.map_err(|e| self.halt(e))?;
                        done.failed.push(event.id);
                        blocked.push(event.stream.clone());
                        DeadLetterChange::Failed {
                            event: event.clone(),
                            reason: DeadLetterReason::Failed,
                            error: input::error_text(&error.to_string()),
                        }
                    }
                };
                let resolved = matches!(change, DeadLetterChange::Resolved { .. });
                self.commit(ctx, self.checkpoint, vec![change]).await?;
                if resolved {
                    self.pending.remove(event.position);
                }
            }
            match next {
                Some(next) => after = next,
                None => return Ok(done),
            }
        }
    }

    /// Resolves the selected letters as discarded, a page per batch.
    async fn discard(&mut self, select: &DeadLetterSelect) -> Result<usize, Halt> {
        let mut discarded = 0;
        let mut after = Position::ZERO;
        loop {
            let (mut page, next) = self.selected(select, after).await?;
            if let DeadLetterSelect::Event(id) = select {
                page.retain(|l| l.event.id == *id);
            }
            let changes: Vec<DeadLetterChange> = page
                .iter()
                .map(|l| DeadLetterChange::Resolved {
                    event_id: l.event.id,
                    kind: ResolutionKind::Discarded,
                })
                .collect();
            if !changes.is_empty() {
                if self.known_lost() {
                    return Err(Halt::LeaseLost);
                }
                let ctx = self.backend.begin().await.map_err(|e| self.halt(e))?;
                self.commit(ctx, self.checkpoint, changes).await?;
            }
            for letter in &page {
                self.pending.remove(letter.event.position);
            }
            discarded += page.len();
            match next {
                Some(next) => after = next,
                None => return Ok(discarded),
            }
        }
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

    fn not_leading(&self) -> ProjectionError {
        ProjectionError::NotLeading {
            projection: Arc::clone(&self.name),
        }
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

/// A request's answer, and how the loop goes on: a fault or a lost lease (answered as an
/// error) pauses it as any other; what retrying cannot fix (a handler's panic) stops it.
fn split<T>(
    done: Result<T, Halt>,
    lost: ProjectionError,
) -> (Result<T, ProjectionError>, Result<Flow, Halt>) {
    match done {
        Ok(value) => (Ok(value), Ok(Flow::Go)),
        Err(Halt::Fault(e)) => (Err(e.clone()), Err(Halt::Fault(e))),
        Err(Halt::Fatal(e) | Halt::Broken(e)) => (Err(e.clone()), Err(Halt::Fatal(e))),
        Err(halt @ (Halt::LeaseLost | Halt::Again)) => (Err(lost), Err(halt)),
    }
}
