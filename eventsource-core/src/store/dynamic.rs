//! A store chosen at run time: [`DynEventStore`] is the object-safe mirror of [`EventStore`],
//! and [`AnyStore`] wraps any store behind it while still being an [`EventStore`].

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;

use super::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, EventStore, LogPage, ProjectionVersions,
    ReadUntil, StreamLock, VersionStep,
};
use crate::envelope::{Commit, FoldEvent, FoldItem, RecordedEvent, Snapshot, StreamWrite};
use crate::error::StoreError;
use crate::ids::{EventId, Position, StreamId, Version};

/// The object-safe form of [`EventStore`], implemented for every store. Use it through
/// [`AnyStore`].
pub trait DynEventStore: Send + Sync + 'static {
    /// See [`EventStore::append`].
    fn append_dyn(&self, writes: Vec<StreamWrite>) -> BoxFuture<'_, Result<Commit, StoreError>>;
    /// See [`EventStore::read_stream`].
    fn read_stream_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>>;
    /// See [`EventStore::read_stream_for_fold`].
    fn read_stream_for_fold_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>>;
    /// See [`EventStore::read_stream_from_snapshot`].
    fn read_stream_from_snapshot_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldItem, StoreError>>;
    /// See [`EventStore::lock_streams`].
    fn lock_streams_dyn<'a>(
        &'a self,
        streams: &'a [StreamId],
    ) -> BoxFuture<'a, Result<StreamLock, StoreError>>;
    /// See [`EventStore::stream_version`].
    fn stream_version_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Version, StoreError>>;
    /// See [`EventStore::read_all`].
    fn read_all_dyn<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>>;
    /// See [`EventStore::read_all_pages`].
    fn read_all_pages_dyn<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxStream<'a, Result<LogPage, StoreError>>;
    /// See [`EventStore::head`].
    fn head_dyn(&self) -> BoxFuture<'_, Result<Position, StoreError>>;
    /// See [`EventStore::wait_for_events`].
    fn wait_for_events_dyn(&self, after: Position) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`EventStore::event_by_id`].
    fn event_by_id_dyn(
        &self,
        id: EventId,
    ) -> BoxFuture<'_, Result<Option<RecordedEvent>, StoreError>>;
    /// See [`EventStore::save_snapshot`].
    fn save_snapshot_dyn(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<(), StoreError>>;
    /// See [`EventStore::load_snapshot`].
    fn load_snapshot_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>>;
    /// See [`EventStore::load_checkpoint`].
    fn load_checkpoint_dyn<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Position>, StoreError>>;
    /// See [`EventStore::save_checkpoint`].
    fn save_checkpoint_dyn<'a>(
        &'a self,
        name: &'a str,
        position: Position,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`EventStore::write_dead_letters`].
    fn write_dead_letters_dyn<'a>(
        &'a self,
        projection: &'a str,
        changes: &'a [DeadLetterChange],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// See [`EventStore::dead_letters`].
    fn dead_letters_dyn<'a>(
        &'a self,
        projection: &'a str,
        query: &'a DeadLetterQuery,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>>;
    /// See [`EventStore::projection_versions`].
    fn projection_versions_dyn<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ProjectionVersions, StoreError>>;
    /// See [`EventStore::switch_version`].
    fn switch_version_dyn<'a>(
        &'a self,
        name: &'a str,
        step: VersionStep,
    ) -> BoxFuture<'a, Result<ProjectionVersions, StoreError>>;
}

impl<S: EventStore> DynEventStore for S {
    fn append_dyn(&self, writes: Vec<StreamWrite>) -> BoxFuture<'_, Result<Commit, StoreError>> {
        self.append(writes).boxed()
    }
    fn read_stream_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
        self.read_stream(stream, from, until)
    }
    fn read_stream_for_fold_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
        self.read_stream_for_fold(stream, from, until)
    }
    fn read_stream_from_snapshot_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldItem, StoreError>> {
        self.read_stream_from_snapshot(stream, schema_version, until)
    }
    fn lock_streams_dyn<'a>(
        &'a self,
        streams: &'a [StreamId],
    ) -> BoxFuture<'a, Result<StreamLock, StoreError>> {
        self.lock_streams(streams).boxed()
    }
    fn stream_version_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        self.stream_version(stream).boxed()
    }
    fn read_all_dyn<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
        self.read_all(after, limit, types).boxed()
    }
    fn read_all_pages_dyn<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxStream<'a, Result<LogPage, StoreError>> {
        self.read_all_pages(after, limit, types)
    }
    fn head_dyn(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        self.head().boxed()
    }
    fn wait_for_events_dyn(&self, after: Position) -> BoxFuture<'_, Result<(), StoreError>> {
        self.wait_for_events(after).boxed()
    }
    fn event_by_id_dyn(
        &self,
        id: EventId,
    ) -> BoxFuture<'_, Result<Option<RecordedEvent>, StoreError>> {
        self.event_by_id(id).boxed()
    }
    fn save_snapshot_dyn(&self, snapshot: Snapshot) -> BoxFuture<'_, Result<(), StoreError>> {
        self.save_snapshot(snapshot).boxed()
    }
    fn load_snapshot_dyn<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        self.load_snapshot(stream, schema_version, until).boxed()
    }
    fn load_checkpoint_dyn<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        self.load_checkpoint(name).boxed()
    }
    fn save_checkpoint_dyn<'a>(
        &'a self,
        name: &'a str,
        position: Position,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.save_checkpoint(name, position).boxed()
    }
    fn write_dead_letters_dyn<'a>(
        &'a self,
        projection: &'a str,
        changes: &'a [DeadLetterChange],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.write_dead_letters(projection, changes).boxed()
    }
    fn dead_letters_dyn<'a>(
        &'a self,
        projection: &'a str,
        query: &'a DeadLetterQuery,
    ) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        self.dead_letters(projection, query).boxed()
    }
    fn projection_versions_dyn<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<ProjectionVersions, StoreError>> {
        self.projection_versions(name).boxed()
    }
    fn switch_version_dyn<'a>(
        &'a self,
        name: &'a str,
        step: VersionStep,
    ) -> BoxFuture<'a, Result<ProjectionVersions, StoreError>> {
        self.switch_version(name, step).boxed()
    }
}

/// Any store, chosen at run time: cheap to clone, and itself an [`EventStore`].
///
/// ```
/// use eventsource_core::{AnyStore, InMemoryStore};
/// let store = AnyStore::new(InMemoryStore::new());
/// let same = store.clone();
/// # drop(same);
/// ```
#[derive(Clone)]
pub struct AnyStore(Arc<dyn DynEventStore>);

impl AnyStore {
    /// Wraps a store.
    pub fn new<S: EventStore>(store: S) -> Self {
        Self(Arc::new(store))
    }
}

impl std::fmt::Debug for AnyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnyStore")
    }
}

impl EventStore for AnyStore {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Commit, StoreError> {
        self.0.append_dyn(writes).await
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
        self.0.read_stream_dyn(stream, from, until)
    }
    fn read_stream_for_fold<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
        self.0.read_stream_for_fold_dyn(stream, from, until)
    }
    fn read_stream_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldItem, StoreError>> {
        self.0
            .read_stream_from_snapshot_dyn(stream, schema_version, until)
    }
    async fn lock_streams(&self, streams: &[StreamId]) -> Result<StreamLock, StoreError> {
        self.0.lock_streams_dyn(streams).await
    }
    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        self.0.stream_version_dyn(stream).await
    }
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        types: Option<&[&str]>,
    ) -> Result<LogPage, StoreError> {
        self.0.read_all_dyn(after, limit, types).await
    }
    fn read_all_pages<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxStream<'a, Result<LogPage, StoreError>> {
        self.0.read_all_pages_dyn(after, limit, types)
    }
    async fn head(&self) -> Result<Position, StoreError> {
        self.0.head_dyn().await
    }
    async fn wait_for_events(&self, after: Position) -> Result<(), StoreError> {
        self.0.wait_for_events_dyn(after).await
    }
    async fn event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        self.0.event_by_id_dyn(id).await
    }
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        self.0.save_snapshot_dyn(snapshot).await
    }
    async fn load_snapshot(
        &self,
        stream: &StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> Result<Option<Snapshot>, StoreError> {
        self.0
            .load_snapshot_dyn(stream, schema_version, until)
            .await
    }
    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        self.0.load_checkpoint_dyn(name).await
    }
    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        self.0.save_checkpoint_dyn(name, position).await
    }
    async fn write_dead_letters(
        &self,
        projection: &str,
        changes: &[DeadLetterChange],
    ) -> Result<(), StoreError> {
        self.0.write_dead_letters_dyn(projection, changes).await
    }
    async fn dead_letters(
        &self,
        projection: &str,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.0.dead_letters_dyn(projection, query).await
    }
    async fn projection_versions(&self, name: &str) -> Result<ProjectionVersions, StoreError> {
        self.0.projection_versions_dyn(name).await
    }
    async fn switch_version(
        &self,
        name: &str,
        step: VersionStep,
    ) -> Result<ProjectionVersions, StoreError> {
        self.0.switch_version_dyn(name, step).await
    }
}
