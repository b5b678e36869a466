//! The event store contract every backend implements, and the backends that live in core.
//!
//! The invariants every store keeps, the input it takes, its typed errors and the conformance
//! suite that checks them: [the store contract](crate::docs::store_contract).

pub mod dead_letters;
pub(crate) mod dynamic;
pub mod input;
pub mod lock;
pub mod memory;
pub mod versions;

use std::collections::HashSet;
use std::future::Future;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;

use crate::envelope::{Commit, FoldEvent, FoldItem, RecordedEvent, Snapshot, StreamWrite};
use crate::error::StoreError;
use crate::ids::{EventId, Position, StreamId, Version};

pub use dead_letters::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, DeadLetterReason, Resolution, ResolutionKind,
};
pub use dynamic::{AnyStore, DynEventStore};
pub use lock::StreamLock;
pub use versions::{ProjectionVersions, Switching, VersionStep, version_key};

/// Where a stream read stops (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadUntil {
    /// At the stream's current end.
    End,
    /// After this version.
    Version(Version),
    /// After the last event recorded at or before this time.
    Time(DateTime<Utc>),
}

impl ReadUntil {
    /// Whether `event` lies within this bound.
    pub fn admits(&self, event: &RecordedEvent) -> bool {
        match self {
            ReadUntil::End => true,
            ReadUntil::Version(v) => event.version <= *v,
            ReadUntil::Time(t) => event.recorded_at <= *t,
        }
    }
}

/// One page of the global log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogPage {
    /// The events, in position order.
    pub events: Vec<RecordedEvent>,
    /// How far the read got: every readable event up to and including this position was
    /// considered (events filtered out by type included). The next read continues after it;
    /// a checkpoint may be saved at it. Never below the position the read started after.
    pub scanned_to: Position,
}

/// An append-only event store.
///
/// Methods return `Send` futures so stores work from spawned tasks. To choose a store at run
/// time, wrap it in an [`AnyStore`].
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Appends events to one or more streams atomically: every [`StreamWrite`] is checked
    /// against its expected version, and all events are written or none are. Streams are
    /// numbered in request order and the events of the commit get increasing positions.
    ///
    /// Errors: [`StoreError::Conflict`] (nothing written), [`StoreError::EventIdReused`],
    /// [`StoreError::InvalidRequest`] (an empty stream id, a stream twice, an id twice).
    fn append(
        &self,
        writes: Vec<StreamWrite>,
    ) -> impl Future<Output = Result<Commit, StoreError>> + Send;

    /// Reads `stream` forward from version `from` (inclusive) up to `until`, in batches: memory
    /// holds one batch, not the stream. A missing stream reads as empty.
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>>;

    /// [`EventStore::read_stream`] with only what folding an aggregate needs
    /// ([`FoldEvent`]): what [`Repository`](crate::Repository) loads read. The default maps
    /// `read_stream`; a store that pays per field sent (a database) reads less.
    fn read_stream_for_fold<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
        use futures::{StreamExt, TryStreamExt};
        self.read_stream(stream, from, until)
            .map_ok(FoldEvent::from)
            .boxed()
    }

    /// The newest snapshot of `stream` with this schema version within `until` (as
    /// [`EventStore::load_snapshot`] finds it; one at version zero counts as none), then what
    /// a fold needs of the events from its version on (as
    /// [`EventStore::read_stream_for_fold`] reads them), as one read: [`FoldItem::Snapshot`]
    /// first, exactly once, then [`FoldItem::Event`]s from the snapshot's version (inclusive)
    /// up to `until`, or from version 1 when there is no snapshot. The snapshot is handed out
    /// as stored, never checked: whether the stream still holds the event it was folded up to
    /// is for the reader to see (the first event must have its version and position).
    ///
    /// This is what a [`Repository`](crate::Repository) load reads when its aggregate takes
    /// snapshots (but on a stream it last saw shorter than the interval, which it folds
    /// from the start: see [`Aggregate::SNAPSHOT_EVERY`](crate::Aggregate::SNAPSHOT_EVERY)).
    /// The default makes the two reads one after the other; a store that answers
    /// over a network makes them one round trip.
    fn read_stream_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldItem, StoreError>> {
        snapshot_then_events(self, stream, schema_version, until)
    }

    /// Waits for and takes the writers' lock of `streams` (see [`StreamLock`]): until it is
    /// released, only the appends made through it reach those streams; every other append
    /// to them fails with [`StoreError::StreamLocked`] and writes nothing. Lockers wait in
    /// the order they asked, within a process and across processes. A waiter queued behind
    /// another locker of its process holds nothing of the store (the store's connections go
    /// to the writers that run); the first one of a process may hold what waiting on a
    /// server takes (on PostgreSQL one connection per stream locked or waited for, beside
    /// what the holder's reads use), so a pool smaller than the number of streams locked at
    /// once makes lockers wait for connections. Several streams are taken in one fixed
    /// order, so two locks never wait on each other in a cycle.
    ///
    /// This is how a command that keeps losing races makes progress: the
    /// [`Repository`](crate::Repository) escalates to it (see
    /// [`RetryPolicy`](crate::RetryPolicy)).
    fn lock_streams(
        &self,
        streams: &[StreamId],
    ) -> impl Future<Output = Result<StreamLock, StoreError>> + Send;

    /// The current version of `stream` ([`Version::ZERO`] if it has no events).
    fn stream_version(
        &self,
        stream: &StreamId,
    ) -> impl Future<Output = Result<Version, StoreError>> + Send;

    /// Reads up to `limit` events of the global log after position `after`, in position order,
    /// keeping only `types` when given. See [`LogPage::scanned_to`].
    fn read_all(
        &self,
        after: Position,
        limit: usize,
        types: Option<&[&str]>,
    ) -> impl Future<Output = Result<LogPage, StoreError>> + Send;

    /// The log after `after` (keeping only `types` when given) as a stream of pages of up to
    /// `limit` events, each starting where the one before ended: what a catch-up reads. Every
    /// page's [`LogPage::scanned_to`] is at least its last event's position. The stream ends
    /// at the end of the log as the store sees it, or earlier (a store may end it at any
    /// page); a reader then goes on with [`EventStore::read_all`] from the last page's
    /// `scanned_to`, which misses nothing. Unlike `read_all`, it need not wait for this
    /// handle's own latest appends to become readable (read your writes): `read_all` does.
    ///
    /// The default reads page after page with `read_all`, up to the first page that is not
    /// full. A store that answers over a network streams it instead (one query sends the rows
    /// of many pages, with no round trip between them); memory still follows `limit`.
    fn read_all_pages<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxStream<'a, Result<LogPage, StoreError>> {
        use futures::StreamExt;
        let limit = limit.max(1);
        futures::stream::unfold(Some(after), move |next| async move {
            let after = next?;
            match self.read_all(after, limit, types).await {
                Ok(page) if page.events.is_empty() => None,
                Ok(page) => {
                    let more = (page.events.len() >= limit).then_some(page.scanned_to);
                    Some((Ok(page), more))
                }
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }

    /// The position of the newest event readers can see ([`Position::ZERO`] if none).
    fn head(&self) -> impl Future<Output = Result<Position, StoreError>> + Send;

    /// Resolves when events after `after` may have become readable, or after the store's
    /// polling interval. Wake-ups may be spurious; callers read and check.
    fn wait_for_events(
        &self,
        after: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The stored event with this id, if any.
    fn event_by_id(
        &self,
        id: EventId,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, StoreError>> + Send;

    /// Stores a snapshot. A snapshot of the same stream, version and schema version replaces it.
    fn save_snapshot(
        &self,
        snapshot: Snapshot,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The newest snapshot of `stream` with this schema version whose last event lies within
    /// `until` (by version, or by that event's recorded-at time).
    fn load_snapshot(
        &self,
        stream: &StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> impl Future<Output = Result<Option<Snapshot>, StoreError>> + Send;

    /// The checkpoint recorded for projection `name`, if any.
    fn load_checkpoint(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, StoreError>> + Send;

    /// Records the checkpoint of projection `name`.
    fn save_checkpoint(
        &self,
        name: &str,
        position: Position,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Applies `changes` to the dead letters of projection `projection`, all or none, in
    /// order (see [`DeadLetterChange`]): a letter is keyed by (projection, event id), so the
    /// same failure written twice (a batch handled again after a crash) is one letter with
    /// one more attempt, never two letters. A runner writes a batch's letters before (or, on
    /// a store whose batches are transactions, with) the checkpoint that passes them.
    fn write_dead_letters(
        &self,
        projection: &str,
        changes: &[DeadLetterChange],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The dead letters of projection `projection` that `query` selects, in position order,
    /// with their events as stored.
    fn dead_letters(
        &self,
        projection: &str,
        query: &DeadLetterQuery,
    ) -> impl Future<Output = Result<Vec<DeadLetter>, StoreError>> + Send;

    /// Where the versions of projection `name` stand (see [`versions`]): which one serves
    /// (1 for a projection that never switched) and the switch under way, if any. Readers
    /// of a projection that switches versions ask this to find the read model to read.
    fn projection_versions(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<ProjectionVersions, StoreError>> + Send;

    /// Takes one step of a switch between versions of projection `name`, atomically: the
    /// versions as they stand after it, or [`StoreError::SwitchRefused`] with nothing
    /// changed (see [`VersionStep`] for the rules). While a version is sealed,
    /// [`EventStore::save_checkpoint`] of its [`version_key`] (and any other way the store
    /// saves that checkpoint) is refused with [`StoreError::CheckpointSealed`].
    fn switch_version(
        &self,
        name: &str,
        step: VersionStep,
    ) -> impl Future<Output = Result<ProjectionVersions, StoreError>> + Send;
}

/// [`EventStore::read_stream_from_snapshot`] as two reads, one after the other:
/// [`EventStore::load_snapshot`], then [`EventStore::read_stream_for_fold`] from the
/// snapshot's version. The trait's default; a store that makes some of these reads one round
/// trip (for some bounds only) hands the others to it.
pub fn snapshot_then_events<'a, S: EventStore>(
    store: &'a S,
    stream: &'a StreamId,
    schema_version: u32,
    until: ReadUntil,
) -> BoxStream<'a, Result<FoldItem, StoreError>> {
    use futures::{StreamExt, TryStreamExt};
    futures::stream::once(store.load_snapshot(stream, schema_version, until))
        .flat_map(move |found| match found {
            Ok(snapshot) => {
                let snapshot = snapshot.filter(|s| s.version > Version::ZERO);
                let from = snapshot.as_ref().map_or(Version::FIRST, |s| s.version);
                futures::stream::once(async { Ok(FoldItem::Snapshot(snapshot)) })
                    .chain(
                        store
                            .read_stream_for_fold(stream, from, until)
                            .map_ok(FoldItem::Event),
                    )
                    .boxed()
            }
            Err(e) => futures::stream::once(async { Err(e) }).boxed(),
        })
        .boxed()
}

/// The request checks every store applies to an append before it looks at its data, so all
/// stores reject the same input: writes with no events are dropped (an append of nothing is a
/// no-op); a stream twice in one append, an event id twice in one append, or a string outside
/// the limits of [`input`] (an empty or over-long stream id or type name, a NUL character,
/// over-long metadata) is [`StoreError::InvalidRequest`].
pub fn validate_writes(writes: Vec<StreamWrite>) -> Result<Vec<StreamWrite>, StoreError> {
    let writes: Vec<StreamWrite> = writes
        .into_iter()
        .filter(|w| !w.events.is_empty())
        .collect();
    input::check_writes(&writes)?;
    let invalid = |what: String| Err(StoreError::InvalidRequest(what));
    let mut streams = HashSet::with_capacity(writes.len());
    let mut ids = HashSet::new();
    for w in &writes {
        if !streams.insert(&w.stream) {
            return invalid(format!("stream `{}` appears twice in one append", w.stream));
        }
        for e in &w.events {
            if !ids.insert(e.id) {
                return invalid(format!("event id {} appears twice in one append", e.id));
            }
        }
    }
    Ok(writes)
}
