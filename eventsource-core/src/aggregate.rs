//! Aggregates: state folded from a stream of events, and the decisions made on it.

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};
use crate::event::EventSet;
use crate::ids::StreamId;

/// An aggregate: a consistency boundary whose state is the fold of its stream's events.
///
/// Usually derived (`#[derive(Aggregate)]`), which generates the event enum, this impl and the
/// dispatch to one [`Apply`] impl per event. `apply_event` must be a pure, infallible fold: the same
/// events always give the same state (it runs again on every load).
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The aggregate's name: the category of its streams (`"account"` gives `"account-42"`).
    ///
    /// `#[derive(Aggregate)]` takes it from `#[aggregate(name = "...")]` and accepts ASCII
    /// letters, digits, `_` and `.`, starting with a letter. A hand-written impl may use any
    /// string: [`Aggregate::stream_id`] escapes what it must, so no two aggregates share a stream.
    const NAME: &'static str;
    /// Take a snapshot every this many events (`None`: never). A repository loads a stream it
    /// last saw shorter than this (loaded to its end, or committed) without asking the store
    /// for a snapshot: none is due on it, and the lookup is most of what snapshots cost a
    /// short stream.
    const SNAPSHOT_EVERY: Option<u64> = None;
    /// The schema version of the snapshot encoding. Bump it when the state's shape or meaning
    /// changes: snapshots of another schema version are ignored, never decoded.
    const SNAPSHOT_VERSION: u32 = 1;

    /// The events this aggregate writes and folds.
    type Event: EventSet;

    /// Folds one event of the set into the state (the derive dispatches to the [`Apply`]
    /// impl of the event's type). Named apart from [`Apply::apply`], so both traits can be in
    /// scope without making `state.apply(&e)` ambiguous.
    fn apply_event(&mut self, event: &Self::Event);

    /// The stream of the aggregate instance `id`: [`StreamId::for_aggregate`] of
    /// [`Aggregate::NAME`] and `id`, so `"account"` and `"42"` give `"account-42"`. Any id is
    /// allowed: two different (aggregate name, id) pairs never give one stream.
    fn stream_id(id: &str) -> StreamId {
        StreamId::for_aggregate(Self::NAME, id)
    }

    /// Encodes the state for a snapshot. The default refuses: override it (the derive does,
    /// with `snapshot_every`) to enable snapshots.
    fn encode_snapshot(&self) -> Result<Bytes, EncodeError> {
        Err(EncodeError::SnapshotsUnsupported)
    }

    /// Decodes a snapshot written by [`Aggregate::encode_snapshot`] with the same
    /// [`Aggregate::SNAPSHOT_VERSION`].
    fn decode_snapshot(payload: &[u8]) -> Result<Self, DecodeError> {
        let _ = payload;
        Err(DecodeError::SnapshotsUnsupported)
    }
}

/// Folds one event type into an aggregate's state. `#[derive(Aggregate)]` requires one impl per
/// listed event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` lists event `{E}` but does not implement `Apply<{E}>`",
    label = "missing `impl Apply<{E}> for {Self}`",
    note = "add `impl Apply<{E}> for {Self} {{ fn apply(&mut self, event: &{E}) {{ /* fold */ }} }}`"
)]
pub trait Apply<E> {
    /// Folds `event` into the state.
    fn apply(&mut self, event: &E);
}
