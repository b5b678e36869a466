//! The [`Repository`]: loads aggregates (snapshot + tail), travels in time, and runs commands
//! with optimistic concurrency: load, decide, append at the loaded version, and on a conflict
//! reload and decide again.

mod cache;

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use tracing::Instrument;
use tracing::field::Empty;

use crate::aggregate::Aggregate;
use crate::envelope::{Commit, CommittedStream, FoldEvent, NewEvent, Snapshot, StreamWrite};
use crate::error::{CommandError, DecodeError, Error, StoreError};
use crate::event::{EventSet, IntoEvents};
use crate::ids::{EventId, ExpectedVersion, Position, StreamId, Version};
use crate::metadata::Metadata;
use crate::store::{EventStore, ReadUntil};

use cache::{Cached, StateCache};

/// An aggregate's state as loaded, with the version and position it reflects.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The version of the last event folded in ([`Version::ZERO`] for a new aggregate).
    pub version: Version,
    /// The position of the last event folded in ([`Position::ZERO`] for a new aggregate).
    pub position: Position,
}

/// The point in a stream's history [`Repository::load_at`] reconstructs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The state after this version. Asking for a version the stream has not reached is
    /// [`Error::VersionNotFound`].
    Version(Version),
    /// The state after the last event recorded at or before this time.
    Time(DateTime<Utc>),
}

/// How [`Repository::execute`] retries after a conflict: bounded attempts, exponential backoff
/// with full jitter (each wait is random between zero and the current cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// The cap of the first backoff.
    pub base_delay: Duration,
    /// The largest cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 16,
            base_delay: Duration::from_micros(500),
            max_delay: Duration::from_millis(50),
        }
    }
}

impl RetryPolicy {
    /// Never retry: the first conflict is returned as [`CommandError::RetriesExhausted`].
    pub fn no_retry() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max_delay);
        cap.mul_f64(fastrand::f64())
    }
}

/// Per-command options: metadata for the recorded events and an idempotency key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Metadata recorded with every event the command appends.
    pub metadata: Metadata,
    /// When set, event ids are derived from it ([`EventId::derived`]) and a command whose key
    /// has already committed returns that first commit without deciding again. A first attempt
    /// that decided no events left nothing to find: a retry decides again (harmless, since
    /// nothing was written).
    pub idempotency_key: Option<String>,
}

impl CommandOptions {
    /// Options with only metadata.
    pub fn with_metadata(metadata: Metadata) -> Self {
        Self {
            metadata,
            idempotency_key: None,
        }
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Loads aggregates of type `A` from store `S` and runs commands on them.
///
/// ```
/// # use eventsource_core::*;
/// # fn doc<A: Aggregate>() {
/// let repo: Repository<A, InMemoryStore> = Repository::new(InMemoryStore::new());
/// # }
/// ```
pub struct Repository<A, S> {
    store: S,
    retry: RetryPolicy,
    cache: Option<Arc<StateCache<A>>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for Repository<A, S> {
    /// A repository on a clone of the store, sharing this one's state cache.
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retry: self.retry,
            cache: self.cache.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A, S: std::fmt::Debug> std::fmt::Debug for Repository<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("retry", &self.retry)
            .field("cached", &self.cache.as_ref().map(|c| c.len()))
            .finish()
    }
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// A repository over `store` with the default [`RetryPolicy`].
    pub fn new(store: S) -> Self {
        Self {
            store,
            retry: RetryPolicy::default(),
            cache: None,
            _aggregate: PhantomData,
        }
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Forgets every state the cache holds (see [`Repository::with_cache`]); a repository
    /// without a cache has nothing to forget.
    pub fn clear_cache(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
        }
    }

    /// Loads the current state of aggregate `id`: the newest usable snapshot, then the events
    /// after it. A stream with no events loads as `A::default()` at version zero.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, Error> {
        let stream = A::stream_id(id);
        self.load_stream(&stream, ReadUntil::End, true).await
    }

    /// Loads aggregate `id` as it was at a version or a time (time travel). Snapshots above the
    /// target are ignored.
    pub async fn load_at(&self, id: &str, at: At) -> Result<Loaded<A>, Error> {
        let stream = A::stream_id(id);
        let until = match at {
            At::Version(v) => ReadUntil::Version(v),
            At::Time(t) => ReadUntil::Time(t),
        };
        let loaded = self.load_stream(&stream, until, true).await?;
        if let At::Version(v) = at {
            if loaded.version < v {
                return Err(Error::VersionNotFound {
                    stream,
                    requested: v,
                    actual: loaded.version,
                });
            }
        }
        Ok(loaded)
    }

    /// Loads `stream` up to `until`: the snapshot, then the events after it. With
    /// `with_position`, also finds the position of the last event folded, which a command
    /// never needs: the tail after a snapshot is then read with positions (full events);
    /// a fold from the start (lean fold reads carry no positions) is followed by a read of
    /// its last event.
    async fn load_stream(
        &self,
        stream: &StreamId,
        until: ReadUntil,
        with_position: bool,
    ) -> Result<Loaded<A>, Error> {
        let span = tracing::debug_span!(
            "load",
            aggregate = A::NAME,
            %stream,
            ?until,
            cached = Empty,
            snapshot_version = Empty,
            version = Empty,
            position = Empty,
        );
        async {
            let cache = self.cache.as_deref().filter(|_| until == ReadUntil::End);
            let cached = cache.and_then(|c| c.get(stream));
            tracing::Span::current().record("cached", cached.as_ref().map(|c| c.version.get()));
            // The state, and whether `loaded.position` is its version's position.
            let mut folded = None;
            if let Some((mut loaded, known)) = cached.map(Cached::into_loaded) {
                let from = loaded.version;
                if self.fold_stream(stream, &mut loaded, until, true).await? {
                    let known = known && loaded.version == from;
                    folded = Some((loaded, known));
                } else if let Some(cache) = cache {
                    tracing::warn!(%stream, cached = %from, "the stream no longer holds the cached version (restored from an older backup?): loading it from the start");
                    cache.remove(stream);
                }
            }
            let (mut loaded, mut position_known) = match folded {
                Some(folded) => folded,
                None => {
                    // A snapshot's position is its version's.
                    let mut loaded = self.load_snapshot(stream, until).await;
                    if with_position && loaded.version > Version::ZERO {
                        self.fold_after_with_position(stream, &mut loaded, until)
                            .await?;
                        (loaded, true)
                    } else {
                        let from = loaded.version;
                        self.fold_after(stream, &mut loaded, until).await?;
                        let known = loaded.version == from;
                        (loaded, known)
                    }
                }
            };
            if with_position {
                if !position_known {
                    loaded.position = match loaded.version {
                        Version::ZERO => Position::ZERO,
                        version => self.position_of(stream, version).await?,
                    };
                    position_known = true;
                }
                tracing::Span::current()
                    .record("position", tracing::field::display(loaded.position));
            }
            if let Some(cache) = cache {
                cache.put(stream, &loaded, position_known);
            }
            Ok(loaded)
        }
        .instrument(span)
        .await
    }

    /// The position of the event at `version` of `stream`, which a fold has just read.
    async fn position_of(&self, stream: &StreamId, version: Version) -> Result<Position, Error> {
        let mut events = self
            .store
            .read_stream(stream, version, ReadUntil::Version(version));
        match events.try_next().await? {
            Some(e) if e.version == version => Ok(e.position),
            _ => Err(Error::Store(StoreError::Corrupt {
                stream: stream.clone(),
                version,
                reason: "the event a load folded last is no longer stored".into(),
            })),
        }
    }

    /// Folds the events after `loaded.version` into `loaded`, up to `until`. The position is
    /// left as it was (see [`Repository::load_stream`]).
    async fn fold_after(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        until: ReadUntil,
    ) -> Result<(), Error> {
        self.fold_stream(stream, loaded, until, false)
            .await
            .map(drop)
    }

    /// [`Repository::fold_after`]; with `check` (for a state from the cache), the same read
    /// also starts one event earlier to see that the stream still holds `loaded.version`,
    /// and answers `false`, folding nothing, when it does not (it was restored from an
    /// older backup).
    async fn fold_stream(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        until: ReadUntil,
        check: bool,
    ) -> Result<bool, Error> {
        let check = check && loaded.version > Version::ZERO;
        let from = if check {
            loaded.version
        } else {
            loaded.version.next()
        };
        let mut events = self.store.read_stream_for_fold(stream, from, until);
        if check {
            match events.try_next().await? {
                Some(last) if last.version == loaded.version => {}
                _ => return Ok(false),
            }
        }
        while let Some(recorded) = events.try_next().await? {
            Self::apply_stored(stream, loaded, &recorded)?;
        }
        tracing::Span::current().record("version", loaded.version.get());
        Ok(true)
    }

    /// [`Repository::fold_after`] through the full read, whose events carry their positions,
    /// so `loaded.position` ends at the last event folded (it stays the snapshot's if there
    /// is none). For the tail after a snapshot, a few full events cost less than the lean
    /// fold read followed by a second round trip for the last event's position.
    async fn fold_after_with_position(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        until: ReadUntil,
    ) -> Result<(), Error> {
        let mut events = self.store.read_stream(stream, loaded.version.next(), until);
        while let Some(recorded) = events.try_next().await? {
            let position = recorded.position;
            Self::apply_stored(stream, loaded, &FoldEvent::from(recorded))?;
            loaded.position = position;
        }
        tracing::Span::current().record("version", loaded.version.get());
        Ok(())
    }

    /// Decodes a stored event of `stream` and applies it to `loaded`.
    fn apply_stored(
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        stored: &FoldEvent,
    ) -> Result<(), Error> {
        let event = A::Event::decode(&stored.event_type, stored.schema_version, &stored.payload)
            .map_err(|source| Error::Decode {
                stream: stream.clone(),
                version: stored.version,
                event_type: stored.event_type.clone(),
                schema_version: stored.schema_version,
                source,
            })?;
        loaded.state.apply_event(&event);
        loaded.version = stored.version;
        Ok(())
    }

    /// After a conflict: brings each loaded aggregate up to its stream's end by folding only
    /// the events after the version it was loaded at. Streams are append-only, so the state
    /// at version `v` followed by the events after `v` is the state now; a conflicting
    /// stream found *behind* what was loaded (restored from an older backup) is loaded again
    /// from its start.
    async fn reload_after_conflict(
        &self,
        streams: &[StreamId],
        loaded: &mut [Loaded<A>],
        conflict: (&StreamId, Version),
    ) -> Result<(), Error> {
        for (stream, loaded) in streams.iter().zip(loaded.iter_mut()) {
            if stream == conflict.0 && conflict.1 < loaded.version {
                tracing::warn!(%stream, loaded = %loaded.version, actual = %conflict.1, "stream is behind what was loaded: loading it again");
                if let Some(cache) = &self.cache {
                    cache.remove(stream);
                }
                *loaded = self.load_stream(stream, ReadUntil::End, false).await?;
                continue;
            }
            let span = tracing::debug_span!(
                "reload",
                aggregate = A::NAME,
                %stream,
                from = loaded.version.get(),
                version = Empty,
            );
            self.fold_after(stream, loaded, ReadUntil::End)
                .instrument(span)
                .await?;
        }
        Ok(())
    }

    /// Folds the newer events of the streams at `which` into their states (from the cache,
    /// unread) and caches what they are now; whether any of them had newer events.
    async fn catch_up(
        &self,
        streams: &[StreamId],
        loaded: &mut [Loaded<A>],
        which: &[usize],
    ) -> Result<bool, Error> {
        let mut moved = false;
        for &i in which {
            let (stream, loaded) = (&streams[i], &mut loaded[i]);
            let before = loaded.version;
            let span = tracing::debug_span!(
                "check",
                aggregate = A::NAME,
                %stream,
                from = before.get(),
                version = Empty,
            );
            if !self
                .fold_stream(stream, loaded, ReadUntil::End, true)
                .instrument(span)
                .await?
            {
                tracing::warn!(%stream, cached = %before, "the stream no longer holds the cached version (restored from an older backup?): loading it from the start");
                if let Some(cache) = &self.cache {
                    cache.remove(stream);
                }
                *loaded = self.load_stream(stream, ReadUntil::End, false).await?;
                moved = true;
                continue;
            }
            if loaded.version != before {
                moved = true;
                if let Some(cache) = &self.cache {
                    cache.put(stream, loaded, false);
                }
            }
        }
        Ok(moved)
    }

    /// The newest usable snapshot, or the empty state. A snapshot that cannot be read is
    /// skipped with a warning: snapshots are an optimisation, never a reason to fail a load.
    async fn load_snapshot(&self, stream: &StreamId, until: ReadUntil) -> Loaded<A> {
        let empty = || Loaded {
            state: A::default(),
            version: Version::ZERO,
            position: Position::ZERO,
        };
        if A::SNAPSHOT_EVERY.is_none() {
            return empty();
        }
        match self
            .store
            .load_snapshot(stream, A::SNAPSHOT_VERSION, until)
            .await
        {
            Ok(Some(snapshot)) => match A::decode_snapshot(&snapshot.payload) {
                Ok(state) => {
                    tracing::Span::current().record("snapshot_version", snapshot.version.get());
                    Loaded {
                        state,
                        version: snapshot.version,
                        position: snapshot.position,
                    }
                }
                Err(error) => {
                    tracing::warn!(%stream, version = %snapshot.version, %error, "snapshot ignored: cannot decode");
                    empty()
                }
            },
            Ok(None) => empty(),
            Err(error) => {
                tracing::warn!(%stream, %error, "snapshot ignored: cannot load");
                empty()
            }
        }
    }

    /// Runs a command on aggregate `id`: loads it, calls `decide` with the state, appends the
    /// events it returns at the loaded version, and returns the [`Commit`]. On a conflict the
    /// aggregate is brought up to date and `decide` runs again (it is `FnMut`), as the
    /// [`RetryPolicy`] allows. Bringing it up to date reads only the events after the version
    /// it was loaded at: on a hot stream a retry costs the few events that won the race, not
    /// the whole stream again. A decision with no events commits nothing and returns [`Commit::empty`].
    pub async fn execute<D, E, F>(&self, id: &str, decide: F) -> Result<Commit, CommandError<E>>
    where
        F: FnMut(&A) -> Result<D, E> + Send,
        D: IntoEvents<A::Event>,
    {
        self.execute_with(id, CommandOptions::default(), decide)
            .await
    }

    /// [`Repository::execute`] with metadata and an idempotency key.
    pub async fn execute_with<D, E, F>(
        &self,
        id: &str,
        options: CommandOptions,
        mut decide: F,
    ) -> Result<Commit, CommandError<E>>
    where
        F: FnMut(&A) -> Result<D, E> + Send,
        D: IntoEvents<A::Event>,
    {
        let mut decide_all = |[state]: [&A; 1]| decide(state).map(|d| [d]);
        self.execute_many_with([id], options, &mut decide_all).await
    }

    /// Runs one command over several aggregates of this type, committing atomically: either
    /// every aggregate's events are appended or none. `decide` gets the states in the order of
    /// `ids` and returns the events for each, in the same order.
    ///
    /// ```
    /// # use eventsource_core::*;
    /// # async fn doc<A: Aggregate>(repo: Repository<A, InMemoryStore>) {
    /// // a transfer: one withdrawal and one deposit, or neither
    /// let _ = repo.execute_many(["from", "to"], |[_from, _to]| {
    ///     Ok::<_, std::convert::Infallible>([Vec::<A::Event>::new(), Vec::new()])
    /// }).await;
    /// # }
    /// ```
    pub async fn execute_many<const N: usize, D, E, F>(
        &self,
        ids: [&str; N],
        decide: F,
    ) -> Result<Commit, CommandError<E>>
    where
        F: FnMut([&A; N]) -> Result<[D; N], E> + Send,
        D: IntoEvents<A::Event>,
    {
        self.execute_many_with(ids, CommandOptions::default(), decide)
            .await
    }

    /// [`Repository::execute_many`] with metadata and an idempotency key.
    pub async fn execute_many_with<const N: usize, D, E, F>(
        &self,
        ids: [&str; N],
        options: CommandOptions,
        mut decide: F,
    ) -> Result<Commit, CommandError<E>>
    where
        F: FnMut([&A; N]) -> Result<[D; N], E> + Send,
        D: IntoEvents<A::Event>,
    {
        let streams: [StreamId; N] = ids.map(A::stream_id);
        let span = tracing::debug_span!(
            "execute",
            aggregate = A::NAME,
            stream = %streams.first().map(StreamId::as_str).unwrap_or_default(),
            streams = N,
            attempts = Empty,
            position = Empty,
        );
        async move {
            if let Some(key) = &options.idempotency_key {
                if let Some(commit) = self.find_commit(key).await? {
                    tracing::debug!(position = %commit.position, "idempotency key already committed");
                    return Ok(commit);
                }
            }
            let mut loaded = Vec::with_capacity(N);
            // Which states came from the cache without reading the store (`with_cache`).
            let mut unread = [false; N];
            for (s, unread) in streams.iter().zip(&mut unread) {
                match self.cache.as_deref().and_then(|c| c.get(s)) {
                    Some(cached) => {
                        loaded.push(cached.into_loaded().0);
                        *unread = true;
                    }
                    None => loaded.push(self.load_stream(s, ReadUntil::End, false).await?),
                }
            }
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let states: [&A; N] = std::array::from_fn(|i| &loaded[i].state);
                let decide_span = tracing::debug_span!("decide", attempt, rejected = Empty, events = Empty);
                let decided = decide_span
                    .in_scope(|| decide(states))
                    .map(|d| d.map(IntoEvents::into_events));
                // A state from the cache may be behind the store. An append checks that itself
                // (it is at the state's version); a rejection, or a stream the decision writes
                // nothing to, is checked here: when the store has newer events, decide again.
                let unchecked: Vec<usize> = (0..N)
                    .filter(|&i| unread[i] && decided.as_ref().map_or(true, |d| d[i].is_empty()))
                    .collect();
                let behind = !unchecked.is_empty()
                    && self.catch_up(&streams, &mut loaded, &unchecked).await?;
                for i in unchecked {
                    unread[i] = false;
                }
                if behind {
                    // Not a conflict: it does not count against the retry policy.
                    tracing::debug!("a cached state was behind the store: deciding again");
                    attempt -= 1;
                    continue;
                }
                decide_span.record("rejected", decided.is_err());
                let decided = decided.map_err(CommandError::Rejected)?;
                decide_span.record("events", decided.iter().map(Vec::len).sum::<usize>());
                let writes = self.encode(&streams, &loaded, &decided, &options)?;
                // What was written, to fold into the states after the commit: for the cache,
                // or a snapshot the commit makes due.
                let snapshot_due = loaded
                    .iter()
                    .zip(&decided)
                    .any(|(l, d)| snapshot_due::<A>(l.version, l.version.get() + d.len() as u64));
                let written = (self.cache.is_some() || snapshot_due).then(|| writes.clone());
                let append_span = tracing::debug_span!(
                    "append",
                    stream = %streams.first().map(StreamId::as_str).unwrap_or_default(),
                    expected = loaded.first().map_or(0, |l| l.version.get()),
                    version = Empty,
                    position = Empty,
                );
                let appended = self.store.append(writes).instrument(append_span.clone()).await;
                tracing::Span::current().record("attempts", attempt);
                match appended {
                    Ok(commit) => {
                        if let Some(first) = commit.streams.first() {
                            append_span.record("version", first.last_version.get());
                        }
                        append_span.record("position", tracing::field::display(commit.position));
                        tracing::Span::current().record("position", tracing::field::display(commit.position));
                        if let Some(written) = written {
                            self.after_commit(&streams, loaded, written, &commit).await;
                        }
                        return Ok(commit);
                    }
                    Err(StoreError::Conflict { stream, actual, .. }) => {
                        // A state from the cache that was behind the store is caught up
                        // at once, and that attempt is not counted: the command never read
                        // the stream, so it did not lose a race on it.
                        let unread_lost = streams
                            .iter()
                            .position(|s| *s == stream)
                            .is_some_and(|i| unread[i]);
                        if unread_lost {
                            tracing::debug!(%stream, "conflict on a cached state: catching up");
                            attempt -= 1;
                        } else if attempt >= self.retry.max_attempts.max(1) {
                            tracing::debug!(%stream, attempt, "conflict: retries exhausted");
                            return Err(CommandError::RetriesExhausted { stream, attempts: attempt });
                        } else {
                            let wait = self.retry.backoff(attempt);
                            tracing::debug!(%stream, attempt, ?wait, "conflict: reloading");
                            tokio::time::sleep(wait).await;
                        }
                        self.reload_after_conflict(&streams, &mut loaded, (&stream, actual))
                            .await?;
                        unread = [false; N];
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        .instrument(span)
        .await
    }

    fn encode(
        &self,
        streams: &[StreamId],
        loaded: &[Loaded<A>],
        decided: &[Vec<A::Event>],
        options: &CommandOptions,
    ) -> Result<Vec<StreamWrite>, Error> {
        let mut index = 0u32;
        let mut writes = Vec::with_capacity(streams.len());
        for ((stream, loaded), events) in streams.iter().zip(loaded).zip(decided) {
            let mut new_events = Vec::with_capacity(events.len());
            for event in events {
                let id = match &options.idempotency_key {
                    Some(key) => EventId::derived(key, index),
                    None => EventId::new_random(),
                };
                index += 1;
                new_events.push(NewEvent {
                    id,
                    event_type: event.event_type().to_owned(),
                    schema_version: event.schema_version(),
                    payload: event.encode()?,
                    metadata: options.metadata.clone(),
                });
            }
            writes.push(StreamWrite {
                stream: stream.clone(),
                expected: ExpectedVersion::Exact(loaded.version),
                events: new_events,
            });
        }
        Ok(writes)
    }

    /// The commit an idempotency key already produced: its events carry ids derived from the
    /// key, numbered from 0.
    async fn find_commit(&self, key: &str) -> Result<Option<Commit>, Error> {
        let mut streams: Vec<CommittedStream> = Vec::new();
        let (mut first, mut last) = (Position::ZERO, Position::ZERO);
        let mut index = 0;
        while let Some(e) = self.store.event_by_id(EventId::derived(key, index)).await? {
            if index == 0 {
                first = e.position;
            }
            last = last.max(e.position);
            match streams.iter_mut().find(|s| s.stream == e.stream) {
                Some(s) => {
                    s.last_version = e.version;
                    s.last_position = e.position;
                    s.last_recorded_at = e.recorded_at;
                }
                None => streams.push(CommittedStream {
                    stream: e.stream.clone(),
                    first_version: e.version,
                    last_version: e.version,
                    last_position: e.position,
                    last_recorded_at: e.recorded_at,
                }),
            }
            index += 1;
        }
        Ok((!streams.is_empty()).then_some(Commit {
            streams,
            first_position: first,
            position: last,
        }))
    }

    /// After a commit, for each stream written: folds what was written into its loaded state,
    /// which is then the state at the committed version; caches it, and writes a snapshot of
    /// it when the new version crossed a multiple of `A::SNAPSHOT_EVERY`. The events folded
    /// are decoded back from the payloads written, so the state is the one a reload would
    /// give even where an event's encoding drops something. Failures are logged and dropped:
    /// the command has committed.
    async fn after_commit(
        &self,
        streams: &[StreamId],
        loaded: Vec<Loaded<A>>,
        written: Vec<StreamWrite>,
        commit: &Commit,
    ) {
        for ((stream, mut loaded), write) in streams.iter().zip(loaded).zip(written) {
            // An idempotent repeat returns an earlier commit: its versions are not ours to fold.
            let Some(committed) = commit
                .streams
                .iter()
                .find(|s| &s.stream == stream && s.first_version == loaded.version.next())
                .filter(|s| {
                    s.last_version.get() - loaded.version.get() == write.events.len() as u64
                })
            else {
                continue;
            };
            let snapshot_due = snapshot_due::<A>(loaded.version, committed.last_version.get());
            if !snapshot_due && self.cache.is_none() {
                continue;
            }
            if let Err(error) = fold_written(&mut loaded.state, &write.events) {
                tracing::warn!(%stream, %error, "state after the commit not kept: an event written does not decode");
                if let Some(cache) = &self.cache {
                    cache.remove(stream);
                }
                continue;
            }
            loaded.version = committed.last_version;
            loaded.position = committed.last_position;
            if let Some(cache) = &self.cache {
                cache.put(stream, &loaded, true);
            }
            if !snapshot_due {
                continue;
            }
            let span = tracing::debug_span!(
                "snapshot",
                stream = %committed.stream,
                version = committed.last_version.get(),
                position = %committed.last_position,
            );
            let result = async {
                let payload = loaded.state.encode_snapshot()?;
                let snapshot = Snapshot {
                    stream: committed.stream.clone(),
                    version: committed.last_version,
                    position: committed.last_position,
                    event_recorded_at: committed.last_recorded_at,
                    schema_version: A::SNAPSHOT_VERSION,
                    payload,
                };
                self.store.save_snapshot(snapshot).await?;
                Ok::<_, Error>(())
            }
            .instrument(span)
            .await;
            if let Err(error) = result {
                tracing::warn!(stream = %committed.stream, %error, "snapshot not written");
            }
        }
    }
}

impl<A: Aggregate + Clone, S: EventStore> Repository<A, S> {
    /// Keeps the folded state of up to `capacity` recently used aggregates in memory (least
    /// recently used out first; zero keeps none), shared with this repository's clones. A
    /// load then starts from the cached state and reads only from its version on: on a long
    /// or hot stream, the few newest events rather than the snapshot and its tail.
    ///
    /// The store stays the authority:
    /// - Every read from a cached state starts at the cached version itself, so a stream
    ///   that no longer holds it (the store was restored from an older backup) is seen and
    ///   loaded again from its start.
    /// - A command on a cached state decides at once, without reading, and appends at that
    ///   state's version: a command on a state this process keeps is one round trip. When
    ///   another process wrote first, the append conflicts, and the command catches up and
    ///   decides again; that conflict does not count against the [`RetryPolicy`], since
    ///   the command lost no race on a stream it had read.
    /// - What an append does not check is checked before the command returns or appends: a
    ///   rejection, or a stream the decision writes nothing to, is read from its cached
    ///   version on, and decided again when the store has more. So a command is as current
    ///   as one that read the store first. (A stream a command only reads can still change
    ///   between that read and the append, with or without the cache.)
    /// - A command's own events are folded into the cached state as decoded back from what
    ///   was written, so it is the state a reload gives.
    ///
    /// One case stays unseen: a stream restored from an older backup and written up to the
    /// cached version again by others. Call [`Repository::clear_cache`] after a restore.
    /// Time travel ([`Repository::load_at`]) never uses the cache.
    ///
    /// ```
    /// # use eventsource_core::*;
    /// # fn doc<A: Aggregate + Clone>() {
    /// let repo: Repository<A, InMemoryStore> =
    ///     Repository::new(InMemoryStore::new()).with_cache(10_000);
    /// # }
    /// ```
    pub fn with_cache(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| Arc::new(StateCache::new(capacity, A::clone)));
        self
    }
}

/// Whether a stream going from version `from` to `to` crosses a multiple of
/// `A::SNAPSHOT_EVERY` (a snapshot is then due at `to`).
fn snapshot_due<A: Aggregate>(from: Version, to: u64) -> bool {
    A::SNAPSHOT_EVERY
        .filter(|n| *n > 0)
        .is_some_and(|n| from.get() / n != to / n)
}

/// Folds `events`, as written, into `state`.
fn fold_written<A: Aggregate>(state: &mut A, events: &[NewEvent]) -> Result<(), DecodeError> {
    for e in events {
        state.apply_event(&A::Event::decode(
            &e.event_type,
            e.schema_version,
            &e.payload,
        )?);
    }
    Ok(())
}
