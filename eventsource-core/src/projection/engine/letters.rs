//! A runner's dead letters: the pending ones it knows of (what parks a stream, what
//! `wait_for` reports), read when it leads and kept as its batches change them, and the
//! retries and discards its handle asks for, answered between batches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::watch;

use super::{Engine, Flow, Halt, LETTER_PAGE};
use crate::ids::{Position, StreamId};
use crate::projection::backend::{BackendError, RunnerBackend};
use crate::projection::error::{HandlerFailure, guarded};
use crate::projection::handle::{Control, DeadLetterSelect, ProjectionStatus, Retried};
use crate::projection::{Projection, ProjectionError};
use crate::store::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, DeadLetterReason, EventStore, ResolutionKind,
    input,
};

/// A projection's pending dead letters: their positions (with their streams), and how many
/// each stream has (a stream with one is parked while the policy parks streams).
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) positions: BTreeMap<Position, StreamId>,
    pub(super) streams: HashMap<StreamId, usize>,
}

impl Pending {
    pub(super) fn add(&mut self, position: Position, stream: &StreamId) {
        if self.positions.insert(position, stream.clone()).is_none() {
            *self.streams.entry(stream.clone()).or_default() += 1;
        }
    }

    pub(super) fn remove(&mut self, position: Position) {
        if let Some(stream) = self.positions.remove(&position)
            && let Some(n) = self.streams.get_mut(&stream)
        {
            *n -= 1;
            if *n == 0 {
                self.streams.remove(&stream);
            }
        }
    }

    pub(super) fn has(&self, stream: &StreamId) -> bool {
        self.streams.contains_key(stream)
    }
}

impl<P, S, B> Engine<P, S, B>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
    /// Reads the pending dead letters (what a runner that held the projection before left),
    /// a page at a time.
    pub(super) async fn load_pending(&mut self) -> Result<(), Halt> {
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
    pub(super) async fn each_pending(
        &mut self,
        mut f: impl FnMut(&DeadLetter) + Send,
    ) -> Result<(), Halt> {
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

    pub(super) async fn letters(
        &mut self,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, Halt> {
        let read = self.store.dead_letters(&self.name, query).await;
        read.map_err(|e| self.halt(BackendError::Store(e)))
    }

    /// Takes the changes a batch made durable into the pending letters.
    pub(super) fn note(&mut self, letters: &[DeadLetterChange]) {
        for change in letters {
            match change {
                DeadLetterChange::Failed { event, .. } => {
                    self.pending.add(event.position, &event.stream);
                }
                DeadLetterChange::Resolved { .. } => {}
            }
        }
    }

    /// The positions of the pending dead letters, for the status.
    pub(super) fn pending_positions(&self) -> Arc<std::collections::BTreeSet<Position>> {
        Arc::new(self.pending.positions.keys().copied().collect())
    }

    /// Answers a retry or a discard of dead letters, between batches. The status shows what
    /// it changed before the caller hears back, so a `wait_for` after it sees its letters.
    pub(super) async fn answer(
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
    pub(super) fn publish_letters(&self, status: &watch::Sender<ProjectionStatus>) {
        let positions = self.pending_positions();
        status.send_modify(|s| s.dead_letters = positions);
    }

    /// The pending letters `select` takes, in position order, a page after `after`, and
    /// where the next page starts if there may be more.
    pub(super) async fn selected(
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
    pub(super) async fn retry(&mut self, select: &DeadLetterSelect) -> Result<Retried, Halt> {
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
    pub(super) async fn discard(&mut self, select: &DeadLetterSelect) -> Result<usize, Halt> {
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
        Err(halt @ (Halt::LeaseLost | Halt::Again | Halt::Relead | Halt::Superseded(_))) => {
            (Err(lost), Err(halt))
        }
    }
}
