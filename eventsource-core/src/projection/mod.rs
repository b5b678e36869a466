//! Projections: read models fed from the global log, with checkpoints.
//!
//! A [`Projection`] sees every event of the types it names, in log order, exactly as stored
//! (with its [`RecordedEvent`] envelope). The [`ProjectionRunner`] reads from the projection's
//! checkpoint, catches up in batches, then follows the log live; it records the checkpoint after
//! each batch. Handlers are therefore called *at least once* per event: a crash between a
//! handler and the checkpoint save replays that batch, and the event id (`envelope.id`) is what
//! a handler deduplicates on. A store that keeps the read model in its own database can commit
//! handler and checkpoint together (see the PostgreSQL store), making it effectively exactly once.

mod backend;
mod engine;
mod error;
mod feed;
mod handle;
mod policy;
mod runner;

use std::future::Future;

use crate::envelope::RecordedEvent;
use crate::error::BoxError;

pub use backend::{BackendError, Checkpoints, RunnerBackend};
pub use engine::is_replay;
pub use error::{HandlerFailure, ProjectionError, guarded, panic_message};
pub use handle::{DeadLetterSelect, ProjectionHandle, ProjectionStatus, Reached, Retried};
pub use policy::{FailurePolicy, OnFailure, Transient};
pub use runner::ProjectionRunner;

/// The error type handlers return: any error, boxed.
pub type HandlerError = BoxError;

/// A read model fed from the event log.
///
/// Usually derived (`#[derive(Projection)]`), which generates the type filter, the selective
/// decoding and the dispatch to one [`Handle`] impl per listed event.
pub trait Projection: Send + 'static {
    /// The projection's name: the key of its checkpoint and its dead letters, unless the
    /// runner is given another ([`ProjectionRunner::named`], to run one type several times).
    /// Renaming it rebuilds it from zero.
    const NAME: &'static str;

    /// What the store hands each handler call. `()` for projections run by the core
    /// [`ProjectionRunner`]; a store may run projections whose context is, say, the database
    /// transaction the checkpoint commits in.
    type Context: Send;

    /// The stored type names (aliases included) this projection handles; `None` for all.
    /// The store filters on them, so other events are not even read.
    fn event_types() -> Option<&'static [&'static str]> {
        None
    }

    /// Handles one event. Events whose type is not in [`Projection::event_types`] never
    /// arrive. An error goes to the runner's [`FailurePolicy`] (by default it stops the
    /// projection before its checkpoint passes this event); mark one [`Transient`] to have
    /// the event tried again first.
    fn handle_event(
        &mut self,
        event: &RecordedEvent,
        ctx: &mut Self::Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Clears the read model before a rebuild from position zero. The default does nothing.
    fn reset(
        &mut self,
        ctx: &mut Self::Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }
}

/// Marks `E` as one of the events projection `Self` lists, so that its [`Handle<E>`] impl runs:
/// `Handle<E>` requires it, and a handler for an event the projection does not list (it would
/// never be called, leaving the read model silently wrong) is a compile error.
///
/// `#[derive(Projection)]` implements it for each event in `events(...)`. A generic handler
/// says it covers listed events only (`impl<E> Handle<E> for P where Self: ListsEvent<E>, ..`).
/// A hand-written [`Projection`] dispatches in its own [`Projection::handle_event`] and needs
/// no `Handle` impls; one that implements `Handle<E>` anyway implements this too
/// (`impl ListsEvent<E> for P {}`), once its `event_types` and `handle_event` cover `E`.
#[diagnostic::on_unimplemented(
    message = "projection `{Self}` implements `Handle<{E}>` but does not list `{E}` in `events(..)`",
    label = "this handler would never be called",
    note = "add `{E}` to `#[projection(events(..))]` of `{Self}`, or remove this impl"
)]
pub trait ListsEvent<E> {}

/// Handles one event type. `#[derive(Projection)]` requires one impl per listed event, and
/// calls it with the decoded (and upcast) event; an impl for an event the projection does not
/// list is a compile error (see [`ListsEvent`]).
#[diagnostic::on_unimplemented(
    message = "projection `{Self}` lists event `{E}` but does not implement `Handle<{E}>`",
    label = "missing `impl Handle<{E}> for {Self}`",
    note = "add `impl Handle<{E}> for {Self} {{ async fn handle(&mut self, event: {E}, envelope: &RecordedEvent, ctx: &mut Self::Context) -> Result<(), HandlerError> {{ .. }} }}`"
)]
pub trait Handle<E>: Projection + ListsEvent<E> {
    /// Handles `event`; `envelope` carries its stream, version, position, id and metadata.
    fn handle(
        &mut self,
        event: E,
        envelope: &RecordedEvent,
        ctx: &mut Self::Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}
