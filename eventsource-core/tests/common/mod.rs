//! A store wrapper the core's tests share.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use eventsource_core::testing::fixtures::CounterEvent;
use eventsource_core::{
    Commit, EventId, EventStore, ExpectedVersion, FoldEvent, InMemoryStore, LogPage, Position,
    ReadUntil, RecordedEvent, Snapshot, StoreError, StreamId, StreamLock, StreamWrite, Version,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;

/// Appends `Added(n)` for each of `ns` to `stream` in one commit, at whatever version it is.
pub(crate) async fn add(store: &InMemoryStore, stream: &str, ns: &[i64]) -> Commit {
    let events = ns
        .iter()
        .map(|n| CounterEvent::Added(*n).to_new_event())
        .collect();
    store
        .append(vec![StreamWrite::new(stream, ExpectedVersion::Any, events)])
        .await
        .unwrap()
}

/// The in-memory store, recording where each fold read starts and the order in which log
/// reads and checkpoint saves start and end; it can also make fold reads hand out other
/// positions than the ones stored, as a stream rewritten after a restore from an older backup
/// would.
#[derive(Clone, Default)]
pub(crate) struct Watched {
    pub(crate) inner: InMemoryStore,
    folds_from: Arc<Mutex<Vec<(String, u64)>>>,
    /// Fold reads hand out positions shifted by one commit: another history.
    pub(crate) rewritten: Arc<AtomicBool>,
    /// Fold reads leave out the event at this version (0: none), as a broken store would.
    pub(crate) skip_version: Arc<std::sync::atomic::AtomicU64>,
    /// The next this many checkpoint saves fail with a retryable backend error.
    pub(crate) failing_saves: Arc<std::sync::atomic::AtomicUsize>,
    /// Dead-letter writes fail with a backend error that is not retryable, while set.
    pub(crate) failing_letters: Arc<AtomicBool>,
    /// The next this many log reads fail with a retryable backend error.
    pub(crate) failing_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// A log read after this position never returns (until it is dropped).
    pub(crate) stall_read_after: Arc<Mutex<Option<Position>>>,
    calls: Arc<Mutex<Vec<Call>>>,
}

/// Takes one from `count` if it is above zero: whether it was.
fn take_one(count: &std::sync::atomic::AtomicUsize) -> bool {
    count
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
}

/// Records its call when dropped.
struct OnDrop(Arc<Mutex<Vec<Call>>>, Call);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.lock().push(self.1);
    }
}

/// A log read or a checkpoint save, as [`Watched`] saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `read_all` called, reading after this position.
    Read(Position),
    /// A stalled read (see `Watched::stall_read_after`) was dropped before it returned.
    ReadDropped(Position),
    /// `save_checkpoint` called with this position.
    SaveStart(Position),
    /// That save returned.
    SaveEnd(Position),
}

impl Watched {
    /// Where the fold reads since the last call started: (stream, from version).
    pub(crate) fn folds(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.folds_from.lock())
    }

    /// The log reads and checkpoint saves so far, in the order they happened.
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }
}

impl EventStore for Watched {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Commit, StoreError> {
        self.inner.append(writes).await
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
        self.inner.read_stream(stream, from, until)
    }
    fn read_stream_for_fold<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
        self.folds_from
            .lock()
            .push((stream.as_str().to_owned(), from.get()));
        let rewritten = self.rewritten.load(std::sync::atomic::Ordering::SeqCst);
        let skip = self.skip_version.load(std::sync::atomic::Ordering::SeqCst);
        self.inner
            .read_stream_for_fold(stream, from, until)
            .try_filter(move |e| futures::future::ready(e.version.get() != skip))
            .map_ok(move |mut e| {
                if rewritten {
                    e.position = Position::new(e.position.commit() + 1, e.position.sequence());
                }
                e
            })
            .boxed()
    }
    async fn lock_streams(&self, streams: &[StreamId]) -> Result<StreamLock, StoreError> {
        self.inner.lock_streams(streams).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.inner.stream_version(stream).await
    }
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        types: Option<&[&str]>,
    ) -> Result<LogPage, StoreError> {
        self.calls.lock().push(Call::Read(after));
        if take_one(&self.failing_reads) {
            return Err(StoreError::backend(
                "reading the log",
                true,
                "a connection was lost",
            ));
        }
        if *self.stall_read_after.lock() == Some(after) {
            let _dropped = OnDrop(self.calls.clone(), Call::ReadDropped(after));
            std::future::pending::<()>().await;
        }
        self.inner.read_all(after, limit, types).await
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.inner.head().await
    }
    async fn wait_for_events(&self, after: Position) -> Result<(), StoreError> {
        self.inner.wait_for_events(after).await
    }
    async fn event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        self.inner.event_by_id(id).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(
        &self,
        stream: &StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.inner
            .load_snapshot(stream, schema_version, until)
            .await
    }
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        self.inner.load_checkpoint(name).await
    }
    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        if take_one(&self.failing_saves) {
            return Err(StoreError::backend(
                "saving a checkpoint",
                true,
                "a connection was lost",
            ));
        }
        self.calls.lock().push(Call::SaveStart(position));
        // A save that takes a moment, as one over the network does.
        tokio::task::yield_now().await;
        let saved = self.inner.save_checkpoint(name, position).await;
        self.calls.lock().push(Call::SaveEnd(position));
        saved
    }
    async fn write_dead_letters(
        &self,
        projection: &str,
        changes: &[eventsource_core::store::DeadLetterChange],
    ) -> Result<(), StoreError> {
        if self
            .failing_letters
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(StoreError::backend(
                "writing dead letters",
                false,
                "the dead letters' table is gone",
            ));
        }
        self.inner.write_dead_letters(projection, changes).await
    }
    async fn dead_letters(
        &self,
        projection: &str,
        query: &eventsource_core::store::DeadLetterQuery,
    ) -> Result<Vec<eventsource_core::store::DeadLetter>, StoreError> {
        self.inner.dead_letters(projection, query).await
    }
    async fn projection_versions(
        &self,
        name: &str,
    ) -> Result<eventsource_core::ProjectionVersions, StoreError> {
        self.inner.projection_versions(name).await
    }
    async fn switch_version(
        &self,
        name: &str,
        step: eventsource_core::VersionStep,
    ) -> Result<eventsource_core::ProjectionVersions, StoreError> {
        self.inner.switch_version(name, step).await
    }
}
