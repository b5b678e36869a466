//! The [`Repository`]: loads aggregates (snapshot + tail), travels in time, and runs commands
//! with optimistic concurrency: load, decide, append at the loaded version, and on a conflict
//! catch up and decide again; a command that keeps losing runs under the streams' writers'
//! lock, so it cannot lose again.
//!
//! Its steps live apart: `load` (where a load starts: the state cache, a snapshot that matches
//! its stream, or nothing), `command` (the decide/append loop), `commit` (encoding,
//! idempotency and what follows a commit: the cache, snapshots) and `retry` (the policy, and
//! the one place that counts attempts).

mod cache;
mod command;
mod commit;
mod load;
mod retry;
mod short;

use std::collections::HashSet;
use std::marker::PhantomData;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use crate::aggregate::Aggregate;
use crate::ids::{Position, StreamId, Version};
use crate::metadata::Metadata;
use crate::store::EventStore;
use crate::store::lock::LocalLocks;

use cache::StateCache;
pub use retry::{Executed, RetryPolicy};
use short::ShortStreams;

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

impl<A: Default> Loaded<A> {
    /// The state of a stream with no events.
    fn empty() -> Self {
        Self {
            state: A::default(),
            version: Version::ZERO,
            position: Position::ZERO,
        }
    }
}

/// The point in a stream's history [`Repository::load_at`] reconstructs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum At {
    /// The state after this version. Asking for a version the stream has not reached is
    /// [`Error::VersionNotFound`](crate::Error::VersionNotFound).
    Version(Version),
    /// The state after the last event recorded at or before this time.
    Time(DateTime<Utc>),
}

/// Per-command options: metadata for the recorded events and an idempotency key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandOptions {
    /// Metadata recorded with every event the command appends.
    pub metadata: Metadata,
    /// When set, event ids are derived from it ([`EventId::derived`](crate::EventId::derived))
    /// and a command whose key has already committed returns that first commit without
    /// deciding again. A first attempt that decided no events left nothing to find: a retry
    /// decides again (harmless, since nothing was written).
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
    /// The streams last seen shorter than `A::SNAPSHOT_EVERY` (with snapshots on), loaded
    /// without asking for a snapshot. Shared with clones.
    short: Option<Arc<ShortStreams>>,
    /// The snapshots already reported as not matching their streams (see `load.rs`), so each
    /// is reported once, not on every load. Shared with clones.
    reported: Arc<Mutex<HashSet<(StreamId, Version)>>>,
    /// The in-process queue of commands per stream, shared with clones.
    queue: LocalLocks,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A, S: Clone> Clone for Repository<A, S> {
    /// A repository on a clone of the store, sharing this one's state cache.
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            retry: self.retry,
            cache: self.cache.clone(),
            short: self.short.clone(),
            reported: self.reported.clone(),
            queue: self.queue.clone(),
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
            short: A::SNAPSHOT_EVERY
                .filter(|n| *n > 0)
                .map(|n| Arc::new(ShortStreams::new(n))),
            reported: Arc::default(),
            queue: LocalLocks::default(),
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
}

impl<A: Aggregate + Clone, S: EventStore> Repository<A, S> {
    /// Keeps the folded state of up to `capacity` recently used aggregates in memory (least
    /// recently used out first; zero keeps none), shared with this repository's clones. A
    /// load then starts from the cached state and reads only from its version on: on a long
    /// or hot stream, the few newest events rather than the snapshot and its tail.
    ///
    /// The store stays the authority:
    /// - Every read from a cached state starts at the cached version itself, and goes on only
    ///   when the stream still holds the event the state was folded up to (same version,
    ///   same position); a stream that does not (it was restored from an older backup) is
    ///   loaded again without the cache.
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
