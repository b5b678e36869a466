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
//!
//! Here: the loop's state, a batch, a reset, a one-shot catch-up and rebuild. `live.rs`: the
//! spawned runner (following live, answering its handle). `failure.rs`: what a handler's
//! failure leads to. `letters.rs`: the pending dead letters and their retries and discards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

mod failure;
mod letters;
mod live;
mod versions;

use failure::Condemned;
use letters::Pending;
use versions::Role;
pub use versions::is_replay;

use super::backend::{BackendError, RunnerBackend};
use super::error::guarded;
use super::feed::LogFeed;
use super::policy::{FailurePolicy, OnFailure};
use super::{Projection, ProjectionError};
use crate::envelope::RecordedEvent;
use crate::ids::{EventId, Position, StreamId};
use crate::store::{DeadLetterChange, DeadLetterReason, EventStore, LogPage, ResolutionKind};

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
    /// The projection's versions changed under the runner (its checkpoint was sealed, a
    /// step of its switch was refused): it leads again, which reads them anew.
    Relead,
    /// A newer version of the projection serves: this one stops.
    Superseded(u32),
}

/// The loop's state: the projection, its store and backend, and where it stands.
pub(crate) struct Engine<P, S, B> {
    /// The name it runs under: its checkpoint's and its dead letters' key (the version's
    /// key: [`version_key`](crate::store::version_key) of `base` and `version`).
    pub(crate) name: Arc<str>,
    /// The projection's name, whatever its version: the key of its versions in the store.
    pub(crate) base: Arc<str>,
    /// The version it runs as (1 unless set).
    pub(crate) version: u32,
    /// What this version is to the projection (serving, or warming up beside the one that
    /// serves), as the store said when the runner last led.
    role: Role,
    /// Events at or before this position are replays ([`is_replay`]).
    replay_until: Option<Position>,
    /// When an idle runner looks at its versions next (a switch appends no event to wake
    /// it).
    next_look: Option<tokio::time::Instant>,
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
            base: Arc::from(P::NAME),
            version: 1,
            role: Role::Serving,
            replay_until: None,
            next_look: None,
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

    fn superseded(&self, by: u32) -> ProjectionError {
        ProjectionError::Superseded {
            projection: Arc::clone(&self.name),
            by,
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
            // Its version is being switched away from: it finds out how things stand.
            BackendError::Store(crate::error::StoreError::CheckpointSealed { .. }) => Halt::Relead,
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
                let role = match self.take_role().await {
                    Ok(go) => Ok(go),
                    Err(halt) => {
                        self.backend.step_down().await;
                        Err(halt)
                    }
                };
                if !role? {
                    // A switch away from this version is under way: stand by.
                    self.backend.step_down().await;
                    return Ok(None);
                }
                self.has_led = true;
                self.load_pending().await?;
                Ok(Some(checkpoint))
            }
            Ok(None) => Ok(None),
            Err(BackendError::LeaseLost) => Ok(None),
            Err(e) => Err(self.halt(e)),
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
        // Only a runner that replays (a warm-up, a rebuild) answers `is_replay` per event;
        // the others pay for no task-local.
        let replays = self.replay_until.is_some();
        let batch = tracing::Instrument::instrument(
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
                    if replays {
                        versions::set_replay(self.is_replayed(event));
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
        );
        if replays {
            versions::replay_scope(batch).await
        } else {
            batch.await
        }
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

    /// Empties the read model and sets the checkpoint to zero, in one batch, which also
    /// resolves the pending dead letters as discarded (the replay meets their events again,
    /// under the rebuild's policy).
    async fn reset(&mut self) -> Result<(), Halt> {
        tracing::info!("rebuilding from zero");
        // A rebuild of a version that sealed the serving one for its switch gives the
        // switch up first: the serving version serves on while this one replays.
        self.abandon_switch().await;
        // A version that is sealed (switched away from) keeps its read model as it is.
        if !self.take_role().await? {
            return Err(Halt::Relead);
        }
        let before = self.checkpoint;
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
        // What the projection handled before is handled again: replays.
        self.replay_until = Some(self.replay_until.map_or(before, |r| r.max(before)));
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
                let page = self.capped(page);
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
                Err(Halt::Relead) => {
                    feed.stop();
                    leading = false;
                }
                Err(Halt::Superseded(by)) => return Err(self.superseded(by)),
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
                Err(Halt::Fault(_) | Halt::Again | Halt::Relead) => {
                    tokio::time::sleep(self.next_backoff()).await;
                }
                Err(Halt::LeaseLost) => return Err(self.lease_lost()),
                Err(Halt::Superseded(by)) => return Err(self.superseded(by)),
                Err(Halt::Fatal(e) | Halt::Broken(e)) => return Err(e),
            }
        }
        match self.reset().await {
            Ok(()) => {}
            Err(Halt::Fatal(e) | Halt::Fault(e) | Halt::Broken(e)) => return Err(e),
            Err(Halt::LeaseLost | Halt::Again | Halt::Relead) => return Err(self.lease_lost()),
            Err(Halt::Superseded(by)) => return Err(self.superseded(by)),
        }
        self.catch_up().await
    }
}
