//! A command that meets a conflict catches its aggregate up from the version it had loaded,
//! reading only the newer events, and decides again on the state the stream has now.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use eventsource_core::testing::fixtures::{CounterEvent, Tally};
use eventsource_core::{
    Commit, EventId, EventStore, ExpectedVersion, FoldEvent, InMemoryStore, LogPage, Position,
    ReadUntil, RecordedEvent, Repository, Snapshot, StoreError, StreamId, StreamWrite, Version,
};
use futures::stream::BoxStream;
use parking_lot::Mutex;

/// The in-memory store, recording where each fold read starts; it can also answer its next
/// append with a conflict whose stream is *behind* the expected version (as after a restore
/// from an older backup), without writing.
#[derive(Clone, Default)]
struct Watched {
    inner: InMemoryStore,
    folds_from: Arc<Mutex<Vec<(String, u64)>>>,
    rewind_next_append: Arc<AtomicBool>,
}

impl Watched {
    fn folds(&self) -> Vec<(String, u64)> {
        std::mem::take(&mut *self.folds_from.lock())
    }
}

impl EventStore for Watched {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Commit, StoreError> {
        if self.rewind_next_append.swap(false, Ordering::SeqCst) {
            let w = &writes[0];
            return Err(StoreError::Conflict {
                stream: w.stream.clone(),
                expected: w.expected,
                actual: Version::new(1),
            });
        }
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
        self.inner.read_stream_for_fold(stream, from, until)
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
        self.inner.save_checkpoint(name, position).await
    }
}

/// Appends `n` to `stream` behind the command's back, from inside `decide` (the in-memory
/// store's append completes without waiting).
fn sneak(store: &InMemoryStore, stream: &str, n: i64) {
    futures::executor::block_on(store.append(vec![StreamWrite::new(
        stream,
        ExpectedVersion::Any,
        vec![CounterEvent::Added(n).to_new_event()],
    )]))
    .expect("a concurrent append");
}

#[tokio::test]
async fn a_retry_folds_only_the_events_after_the_loaded_version() {
    let store = Watched::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    for _ in 0..3 {
        repo.execute("t", |t| t.0.add(1)).await.unwrap();
    }
    store.folds();

    let mut seen = Vec::new();
    let commit = repo
        .execute("t", |t| {
            seen.push((t.0.applied, t.0.value));
            if seen.len() == 1 {
                sneak(&store.inner, "tally-t", 10);
            }
            t.0.add(1)
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        [(3, 3), (4, 13)],
        "the second decision sees the concurrent event"
    );
    assert_eq!(
        store.folds(),
        [("tally-t".to_owned(), 1), ("tally-t".to_owned(), 4)],
        "the retry reads from the version after the one loaded, not from the start"
    );
    assert_eq!(commit.streams[0].first_version, Version::new(5));
    let loaded = repo.load("t").await.unwrap();
    assert_eq!((loaded.version.get(), loaded.state.0.value), (5, 14));
    assert_eq!(loaded.position, commit.position);
}

#[tokio::test]
async fn a_multi_aggregate_retry_catches_every_aggregate_up() {
    let store = Watched::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    repo.execute("a", |t| t.0.add(1)).await.unwrap();
    repo.execute("b", |t| t.0.add(2)).await.unwrap();
    store.folds();

    let mut seen = Vec::new();
    repo.execute_many(["a", "b"], |[a, b]| {
        seen.push((a.0.value, b.0.value));
        if seen.len() == 1 {
            sneak(&store.inner, "tally-b", 5);
        }
        Ok::<_, std::convert::Infallible>([
            vec![CounterEvent::Added(1)],
            vec![CounterEvent::Added(1)],
        ])
    })
    .await
    .unwrap();
    assert_eq!(seen, [(1, 2), (1, 7)]);
    let folds = store.folds();
    assert_eq!(
        folds,
        [
            ("tally-a".to_owned(), 1),
            ("tally-b".to_owned(), 1),
            ("tally-a".to_owned(), 2),
            ("tally-b".to_owned(), 2),
        ]
    );
    let b = repo.load("b").await.unwrap();
    assert_eq!((b.version.get(), b.state.0.value), (3, 8));
}

#[tokio::test]
async fn a_stream_found_behind_what_was_loaded_is_loaded_again_from_the_start() {
    let store = Watched::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    for _ in 0..3 {
        repo.execute("t", |t| t.0.add(1)).await.unwrap();
    }
    store.folds();
    store.rewind_next_append.store(true, Ordering::SeqCst);
    let commit = repo.execute("t", |t| t.0.add(1)).await.unwrap();
    assert_eq!(
        store.folds(),
        [("tally-t".to_owned(), 1), ("tally-t".to_owned(), 1)],
        "a conflict reporting version 1 below the loaded 3 reloads from the start"
    );
    assert_eq!(commit.streams[0].first_version, Version::new(4));
}
