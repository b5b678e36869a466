//! The failure path of a batch: what the runner does when a handler fails on an event (see
//! [`FailurePolicy`](crate::projection::FailurePolicy)): stop, try a [`Transient`] error again,
//! or condemn the event so that the batch is handled again with it as a dead letter.

use super::{Engine, Halt};
use crate::envelope::RecordedEvent;
use crate::ids::Position;
use crate::projection::backend::{BackendError, RunnerBackend};
use crate::projection::error::HandlerFailure;
use crate::projection::policy::{OnFailure, Transient};
use crate::projection::{Projection, ProjectionError};
use crate::store::{DeadLetterChange, DeadLetterReason, EventStore, input};

/// An event the policy passes by, to be written as a dead letter when its batch is handled
/// again.
#[derive(Debug)]
pub(super) struct Condemned {
    pub(super) position: Position,
    pub(super) reason: DeadLetterReason,
    pub(super) error: String,
}

impl<P, S, B> Engine<P, S, B>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
    /// After a handler failed on `event` (`handled_to`, `letters`: what the batch did
    /// before it). A panic stops the runner. A transient fault of the store (the batch's
    /// connection died) is waited out. An error marked [`Transient`] is tried again from the
    /// durable checkpoint, with backoff, up to the policy's attempts. Any other error, or one
    /// still failing, goes to the policy: stop, or condemn the event and go on at once, so
    /// that the batch is handled again with the event as a dead letter. An atomic batch is
    /// abandoned first; one that is not keeps what its handlers did before the event and
    /// commits its checkpoint (and letters) just before it.
    pub(super) async fn failed(
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
    pub(super) async fn keep_before(
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
}
