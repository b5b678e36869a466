//! The embedded in-memory store: the default, with no setup. Everything lives in the process and
//! is gone when it exits; use it for tests, examples and single-process tools.
//!
//! All stream and log state sits behind one lock held only for the in-memory work of an append
//! or a batch read (no I/O, no encoding, no awaiting under it). Live readers are woken through a
//! watch channel on the log head, never by polling.

mod projections;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use super::input;
use super::lock::{LocalGuard, LocalLocks, LockedStreams, lock_order};
use super::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, EventStore, LogPage, ProjectionVersions,
    ReadUntil, StreamLock, VersionStep,
};
use crate::envelope::{Commit, CommittedStream, RecordedEvent, Snapshot, StreamWrite};
use crate::error::StoreError;
use crate::ids::{EventId, Position, StreamId, Version};
use projections::{Checkpoints, Letters};

/// How many events a stream read copies out per lock acquisition.
const READ_BATCH: usize = 256;

/// The embedded in-memory event store. Cheap to clone: clones share the same data.
///
/// ```
/// # tokio_test_block_on(async {
/// use eventsource_core::{EventStore, ExpectedVersion, InMemoryStore, NewEvent, StreamWrite};
///
/// let store = InMemoryStore::new();
/// let commit = store
///     .append(vec![StreamWrite::new(
///         "account-1",
///         ExpectedVersion::NoStream,
///         vec![NewEvent::new("account.opened", 1, &br#"{"owner":"ada"}"#[..])],
///     )])
///     .await?;
/// assert_eq!(commit.streams[0].last_version.get(), 1);
/// # Ok::<(), eventsource_core::StoreError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone, Default)]
pub struct InMemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    log: RwLock<Log>,
    /// The in-process queues of [`EventStore::lock_streams`].
    local: LocalLocks,
    /// The token of the next stream lock.
    next_lock: AtomicU64,
    head: watch::Sender<Position>,
    snapshots: Mutex<HashMap<StreamId, Vec<Snapshot>>>,
    checkpoints: Mutex<Checkpoints>,
    dead_letters: Mutex<HashMap<String, Letters>>,
}

impl Default for Inner {
    fn default() -> Self {
        Self {
            log: RwLock::default(),
            local: LocalLocks::default(),
            next_lock: AtomicU64::new(1),
            head: watch::Sender::new(Position::ZERO),
            snapshots: Mutex::default(),
            checkpoints: Mutex::default(),
            dead_letters: Mutex::default(),
        }
    }
}

#[derive(Default)]
struct Log {
    /// Every event; the event at index `i` has sequence `i + 1`.
    events: Vec<RecordedEvent>,
    /// Per stream, the log indexes of its events in version order.
    streams: HashMap<StreamId, Vec<usize>>,
    /// Event id to log index.
    ids: HashMap<EventId, usize>,
    commits: u64,
    /// The streams whose writers' lock is held, with the holder's token.
    locked: HashMap<StreamId, u64>,
}

impl Log {
    fn version(&self, stream: &StreamId) -> Version {
        Version::new(self.streams.get(stream).map_or(0, |s| s.len() as u64))
    }

    /// The index of the first event after `after`.
    fn index_after(&self, after: Position) -> usize {
        self.events.partition_point(|e| e.position <= after)
    }

    fn head(&self) -> Position {
        self.events.last().map_or(Position::ZERO, |e| e.position)
    }
}

impl std::fmt::Debug for InMemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let log = self.inner.log.read();
        f.debug_struct("InMemoryStore")
            .field("events", &log.events.len())
            .field("streams", &log.streams.len())
            .finish()
    }
}

impl InMemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates and appends `writes` as the holder of stream lock `holder` (0: none).
    fn append_as(&self, writes: Vec<StreamWrite>, holder: u64) -> Result<Commit, StoreError> {
        let writes = super::validate_writes(writes)?;
        if writes.is_empty() {
            return Ok(Commit::empty());
        }
        let commit = self.append_locked(&writes, holder)?;
        tracing::trace!(position = %commit.position, events = commit.event_count(), "appended in memory");
        Ok(commit)
    }

    /// Appends under the log lock; everything here is in-memory work.
    fn append_locked(&self, writes: &[StreamWrite], holder: u64) -> Result<Commit, StoreError> {
        let mut log = self.inner.log.write();
        // A repeat gets its first commit even while another holds the writers' lock: told
        // "locked", a repository would decide and commit the command again.
        if let Some(original) = find_original_commit(&log, writes)? {
            return Ok(original);
        }
        if let Some(w) = writes
            .iter()
            .find(|w| log.locked.get(&w.stream).is_some_and(|&t| t != holder))
        {
            return Err(StoreError::StreamLocked {
                stream: w.stream.clone(),
            });
        }
        for w in writes {
            let actual = log.version(&w.stream);
            if !w.expected.matches(actual) {
                return Err(StoreError::Conflict {
                    stream: w.stream.clone(),
                    expected: w.expected,
                    actual,
                });
            }
        }
        log.commits += 1;
        let commit_no = log.commits;
        let now = Utc::now();
        let first_position = Position::new(commit_no, log.events.len() as u64 + 1);
        let mut streams = Vec::with_capacity(writes.len());
        for w in writes {
            let first_version = log.version(&w.stream).next();
            let mut last_recorded = last_recorded_at(&log, &w.stream).map_or(now, |t| t.max(now));
            for (i, e) in w.events.iter().enumerate() {
                let index = log.events.len();
                last_recorded = last_recorded.max(now);
                log.events.push(RecordedEvent {
                    id: e.id,
                    stream: w.stream.clone(),
                    version: first_version.add(i as u64),
                    position: Position::new(commit_no, index as u64 + 1),
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    payload: e.payload.clone(),
                    metadata: e.metadata.clone(),
                    recorded_at: last_recorded,
                });
                log.ids.insert(e.id, index);
                log.streams.entry(w.stream.clone()).or_default().push(index);
            }
            let last_version = first_version.add(w.events.len() as u64 - 1);
            let last = log.events.last().map(|e| (e.position, e.recorded_at));
            let (last_position, last_recorded_at) = last.unwrap_or((Position::ZERO, now));
            streams.push(CommittedStream {
                stream: w.stream.clone(),
                first_version,
                last_version,
                last_position,
                last_recorded_at,
            });
        }
        let position = log.head();
        drop(log);
        self.inner.head.send_replace(position);
        Ok(Commit {
            streams,
            first_position,
            position,
        })
    }
}

/// A held writers' lock of the in-memory store: the streams are marked with its token, and the
/// in-process queue is held.
struct MemoryLock {
    store: InMemoryStore,
    token: u64,
    streams: Vec<StreamId>,
    /// Dropped after the marks are gone (fields drop after `Drop::drop`).
    _local: LocalGuard,
}

impl LockedStreams for MemoryLock {
    fn append(&mut self, writes: Vec<StreamWrite>) -> BoxFuture<'_, Result<Commit, StoreError>> {
        let result = self.store.append_as(writes, self.token);
        Box::pin(std::future::ready(result))
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        drop(self);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        let mut log = self.store.inner.log.write();
        for s in &self.streams {
            if log.locked.get(s) == Some(&self.token) {
                log.locked.remove(s);
            }
        }
    }
}

fn last_recorded_at(log: &Log, stream: &StreamId) -> Option<DateTime<Utc>> {
    let idx = log.streams.get(stream)?.last()?;
    Some(log.events[*idx].recorded_at)
}

/// If the request's event ids are already stored, the commit that stored them (when the
/// request repeats it exactly) or the error that says how it differs.
fn find_original_commit(log: &Log, writes: &[StreamWrite]) -> Result<Option<Commit>, StoreError> {
    let total: usize = writes.iter().map(|w| w.events.len()).sum();
    let mut found = 0;
    let mut streams = Vec::with_capacity(writes.len());
    let (mut first_position, mut position) = (None::<Position>, Position::ZERO);
    for w in writes {
        let mut committed: Option<CommittedStream> = None;
        for e in &w.events {
            let Some(&index) = log.ids.get(&e.id) else {
                continue;
            };
            found += 1;
            let stored = &log.events[index];
            let reason = if stored.stream != w.stream {
                Some("it is stored on another stream")
            } else if !e.is_same_as(stored) {
                Some("its type, schema version or payload differ")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(StoreError::EventIdReused {
                    id: e.id,
                    stored_stream: stored.stream.clone(),
                    reason: reason.into(),
                });
            }
            first_position =
                Some(first_position.map_or(stored.position, |p| p.min(stored.position)));
            position = position.max(stored.position);
            let c = committed.get_or_insert_with(|| CommittedStream {
                stream: w.stream.clone(),
                first_version: stored.version,
                last_version: stored.version,
                last_position: stored.position,
                last_recorded_at: stored.recorded_at,
            });
            if stored.version > c.last_version {
                c.last_version = stored.version;
                c.last_position = stored.position;
                c.last_recorded_at = stored.recorded_at;
            }
        }
        streams.extend(committed);
    }
    if found == 0 {
        return Ok(None);
    }
    if found < total {
        let id = writes
            .iter()
            .flat_map(|w| &w.events)
            .find(|e| log.ids.contains_key(&e.id))
            .map(|e| e.id);
        let stored_stream = id
            .and_then(|id| log.ids.get(&id))
            .map(|&i| log.events[i].stream.clone());
        if let (Some(id), Some(stored_stream)) = (id, stored_stream) {
            return Err(StoreError::EventIdReused {
                id,
                stored_stream,
                reason: "the append repeats only some events of an earlier one".into(),
            });
        }
    }
    Ok(Some(Commit {
        streams,
        first_position: first_position.unwrap_or(Position::ZERO),
        position,
    }))
}

impl EventStore for InMemoryStore {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Commit, StoreError> {
        self.append_as(writes, 0)
    }

    async fn lock_streams(&self, streams: &[StreamId]) -> Result<StreamLock, StoreError> {
        input::check_streams(streams)?;
        let streams = lock_order(streams);
        let local = self.inner.local.lock(&streams).await;
        let token = self.inner.next_lock.fetch_add(1, Ordering::Relaxed);
        {
            let mut log = self.inner.log.write();
            for s in &streams {
                log.locked.insert(s.clone(), token);
            }
        }
        let held = MemoryLock {
            store: self.clone(),
            token,
            streams: streams.clone(),
            _local: local,
        };
        Ok(StreamLock::new(streams, Box::new(held)))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
        if let Err(e) = input::check_stream(stream) {
            return stream::once(async { Err(e) }).boxed();
        }
        // Versions are 1-based: version v sits at index v - 1 of the stream's index list.
        let start = from.get().max(1) as usize - 1;
        stream::unfold(Some(start), move |next| async move {
            let next = next?;
            let batch: Vec<RecordedEvent> = {
                let log = self.inner.log.read();
                let indexes = log.streams.get(stream).map_or(&[][..], |v| v.as_slice());
                indexes
                    .iter()
                    .skip(next)
                    .take(READ_BATCH)
                    .map(|&i| &log.events[i])
                    .take_while(|e| until.admits(e))
                    .cloned()
                    .collect()
            };
            if batch.is_empty() {
                return None;
            }
            let more = batch.len() == READ_BATCH;
            let following = more.then_some(next + READ_BATCH);
            Some((stream::iter(batch.into_iter().map(Ok)), following))
        })
        .flatten()
        .boxed()
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        input::check_stream(stream)?;
        Ok(self.inner.log.read().version(stream))
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        types: Option<&[&str]>,
    ) -> Result<LogPage, StoreError> {
        input::check_types(types)?;
        let log = self.inner.log.read();
        let start = log.index_after(after);
        let mut events = Vec::with_capacity(limit.min(READ_BATCH * 4));
        let mut scanned_to = after;
        for e in &log.events[start..] {
            if events.len() >= limit {
                break;
            }
            scanned_to = e.position;
            if types.is_none_or(|t| t.contains(&e.event_type.as_str())) {
                events.push(e.clone());
            }
        }
        Ok(LogPage { events, scanned_to })
    }

    async fn head(&self) -> Result<Position, StoreError> {
        Ok(self.inner.log.read().head())
    }

    async fn wait_for_events(&self, after: Position) -> Result<(), StoreError> {
        let mut rx = self.inner.head.subscribe();
        rx.wait_for(|head| *head > after)
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(())
    }

    async fn event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        let log = self.inner.log.read();
        Ok(log.ids.get(&id).map(|&i| log.events[i].clone()))
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        input::check_stream(&snapshot.stream)?;
        let mut all = self.inner.snapshots.lock();
        let list = all.entry(snapshot.stream.clone()).or_default();
        let key = |s: &Snapshot| (s.version, s.schema_version);
        match list.binary_search_by_key(&key(&snapshot), key) {
            Ok(i) => list[i] = snapshot,
            Err(i) => list.insert(i, snapshot),
        }
        Ok(())
    }

    async fn load_snapshot(
        &self,
        stream: &StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> Result<Option<Snapshot>, StoreError> {
        input::check_stream(stream)?;
        let all = self.inner.snapshots.lock();
        let Some(list) = all.get(stream) else {
            return Ok(None);
        };
        let found = list.iter().rev().find(|s| {
            s.schema_version == schema_version
                && match until {
                    ReadUntil::End => true,
                    ReadUntil::Version(v) => s.version <= v,
                    ReadUntil::Time(t) => s.event_recorded_at <= t,
                }
        });
        Ok(found.cloned())
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        input::check_checkpoint(name)?;
        Ok(self.inner.checkpoints.lock().positions.get(name).copied())
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        input::check_checkpoint(name)?;
        self.inner.checkpoints.lock().save(name, position)
    }

    async fn projection_versions(&self, name: &str) -> Result<ProjectionVersions, StoreError> {
        input::check_checkpoint(name)?;
        Ok(self.inner.checkpoints.lock().versions(name))
    }

    async fn switch_version(
        &self,
        name: &str,
        step: VersionStep,
    ) -> Result<ProjectionVersions, StoreError> {
        input::check_version_step(name, &step)?;
        self.inner.checkpoints.lock().switch(name, step)
    }

    async fn write_dead_letters(
        &self,
        projection: &str,
        changes: &[DeadLetterChange],
    ) -> Result<(), StoreError> {
        input::check_dead_letters(projection, changes)?;
        let mut all = self.inner.dead_letters.lock();
        all.entry(projection.to_owned())
            .or_default()
            .write(projection, changes, Utc::now());
        Ok(())
    }

    async fn dead_letters(
        &self,
        projection: &str,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        input::check_dead_letter_query(projection, query)?;
        let all = self.inner.dead_letters.lock();
        Ok(all
            .get(projection)
            .map(|l| l.page(query))
            .unwrap_or_default())
    }
}
