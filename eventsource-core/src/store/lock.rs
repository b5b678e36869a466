//! The writers' lock of a set of streams ([`EventStore::lock_streams`](super::EventStore::lock_streams)):
//! while it is held, the lock's own appends are the only ones that reach those streams.
//!
//! Optimistic concurrency alone is lock-free but not starvation-free: on a hot stream a
//! writer can lose every race while others win. The [`Repository`](crate::Repository)
//! escalates a command that keeps losing to this lock, so its next attempt cannot lose.
//! Every store implements it with the same two parts:
//!
//! - an in-process queue ([`LocalLocks`]): the writers of one process wait for a stream in
//!   arrival order, without holding any resource of the store (no connection per waiter);
//! - the store's own exclusion, taken by the head of that queue only: the in-memory store
//!   marks the streams; PostgreSQL holds a session advisory lock that every append of those
//!   streams checks (so other processes are excluded too), and grants it across processes in
//!   the order they asked.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use parking_lot::Mutex;

use crate::envelope::{Commit, StreamWrite};
use crate::error::StoreError;
use crate::ids::StreamId;

/// What a store implements behind a [`StreamLock`]: the lock's appends and its release.
///
/// Dropping it without [`LockedStreams::release`] must release the lock too (at once, or
/// soon on a task of the store's own); it may not leave the streams locked.
pub trait LockedStreams: Send + 'static {
    /// Appends as [`EventStore::append`](super::EventStore::append) does, past this lock.
    fn append(&mut self, writes: Vec<StreamWrite>) -> BoxFuture<'_, Result<Commit, StoreError>>;

    /// Releases the lock.
    fn release(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// A held writers' lock on some streams, from [`EventStore::lock_streams`](super::EventStore::lock_streams).
///
/// While it is held, every other append that writes to one of its streams, from this
/// process or another, fails with [`StoreError::StreamLocked`] and writes nothing; the
/// appends made through [`StreamLock::append`] go through (and may still conflict if the
/// stream is not at the version they expect). Reads are not affected. Release it with
/// [`StreamLock::release`]; dropping it releases it too.
///
/// ```
/// # use eventsource_core::*;
/// # async fn doc(store: InMemoryStore) -> Result<(), StoreError> {
/// let stream = StreamId::new("account-42");
/// let mut lock = store.lock_streams(std::slice::from_ref(&stream)).await?;
/// let version = store.stream_version(&stream).await?;
/// lock.append(vec![StreamWrite::new(
///     stream.clone(),
///     ExpectedVersion::Exact(version),
///     vec![NewEvent::new("account.deposited", 1, &br#"{"amount_cents":5}"#[..])],
/// )])
/// .await?;
/// lock.release().await?;
/// # Ok(()) }
/// ```
pub struct StreamLock {
    streams: Vec<StreamId>,
    inner: Option<Box<dyn LockedStreams>>,
}

impl std::fmt::Debug for StreamLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLock")
            .field("streams", &self.streams)
            .finish()
    }
}

impl StreamLock {
    /// A lock on `streams` (sorted, without duplicates) held by `inner`. For stores.
    pub fn new(streams: Vec<StreamId>, inner: Box<dyn LockedStreams>) -> Self {
        Self {
            streams,
            inner: Some(inner),
        }
    }

    /// The locked streams, sorted.
    pub fn streams(&self) -> &[StreamId] {
        &self.streams
    }

    /// Appends past the lock: see [`EventStore::append`](super::EventStore::append).
    pub async fn append(&mut self, writes: Vec<StreamWrite>) -> Result<Commit, StoreError> {
        match self.inner.as_mut() {
            Some(inner) => inner.append(writes).await,
            None => Err(StoreError::Closed),
        }
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<(), StoreError> {
        match self.inner.take() {
            Some(inner) => inner.release().await,
            None => Ok(()),
        }
    }
}

/// The streams of a lock request: sorted (the one order every locker takes them in, so two
/// multi-stream locks never wait on each other in a cycle), without duplicates.
pub fn lock_order(streams: &[StreamId]) -> Vec<StreamId> {
    let mut sorted = streams.to_vec();
    sorted.sort();
    sorted.dedup();
    sorted
}

/// A fair in-process lock per stream: the queue a store puts in front of its own exclusion,
/// so the writers of one process wait in arrival order and hold nothing of the store while
/// they wait. Cheap to clone: clones share the queues.
#[derive(Clone, Default)]
pub struct LocalLocks {
    queues: Arc<Mutex<Queues>>,
}

/// The queue of each stream in use, and when to look for queues nobody uses.
#[derive(Default)]
struct Queues {
    map: HashMap<StreamId, Arc<tokio::sync::Mutex<()>>>,
    /// The size at which the map is next swept for queues nobody holds or waits in (a
    /// waiter given up, its future dropped, leaves its queue behind: a holder's guard only
    /// forgets a queue nobody else refers to).
    sweep_at: usize,
}

/// The smallest map size a sweep runs at.
const SWEEP_MIN: usize = 64;

impl Queues {
    /// The queue of `stream`, made if need be; sweeps the map first when it has grown to
    /// twice its size after the last sweep, so it holds about the streams in use.
    fn of(&mut self, stream: &StreamId) -> Arc<tokio::sync::Mutex<()>> {
        if self.map.len() >= self.sweep_at.max(SWEEP_MIN) {
            self.map.retain(|_, q| Arc::strong_count(q) > 1);
            self.sweep_at = self.map.len() * 2;
        }
        Arc::clone(self.map.entry(stream.clone()).or_default())
    }
}

impl std::fmt::Debug for LocalLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalLocks")
            .field("streams", &self.queues.lock().map.len())
            .finish()
    }
}

impl LocalLocks {
    /// Waits (first come, first served) for every stream of `streams`, taken in the order
    /// given (pass them through [`lock_order`]).
    pub async fn lock(&self, streams: &[StreamId]) -> LocalGuard {
        let mut guard = LocalGuard {
            locks: self.clone(),
            held: Vec::with_capacity(streams.len()),
        };
        for stream in streams {
            let queue = { self.queues.lock().of(stream) };
            // `tokio::sync::Mutex` grants in the order of the calls.
            let held = queue.lock_owned().await;
            guard.held.push((stream.clone(), held));
        }
        guard
    }

    /// Whether another locker of this process waits for one of `streams` (asked by the
    /// holder of their lock, before it lets go: a store may then hand its own hold on to the
    /// next locker instead of releasing and taking it again).
    pub fn awaited(&self, streams: &[StreamId]) -> bool {
        let queues = &self.queues.lock().map;
        // The map's reference and the holder's guard, plus one per waiter.
        streams
            .iter()
            .any(|s| queues.get(s).is_some_and(|q| Arc::strong_count(q) > 2))
    }
}

/// The in-process part of a held lock ([`LocalLocks::lock`]); dropping it lets the next
/// waiter of each stream in.
pub struct LocalGuard {
    locks: LocalLocks,
    held: Vec<(StreamId, tokio::sync::OwnedMutexGuard<()>)>,
}

impl std::fmt::Debug for LocalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streams: Vec<&StreamId> = self.held.iter().map(|(s, _)| s).collect();
        f.debug_struct("LocalGuard")
            .field("streams", &streams)
            .finish()
    }
}

impl Drop for LocalGuard {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.held);
        let queues = &mut self.locks.queues.lock().map;
        for (stream, guard) in held {
            drop(guard);
            // Nobody waits for or holds it (the map's is the only reference): forget it, so
            // the map holds the streams in use, not every stream ever locked.
            if queues
                .get(&stream)
                .is_some_and(|q| Arc::strong_count(q) == 1)
            {
                queues.remove(&stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_lock_in_arrival_order_and_idle_streams_are_forgotten() {
        let locks = LocalLocks::default();
        let a = vec![StreamId::new("a")];
        let first = locks.lock(&a).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for i in 0..5 {
            let (locks, a, order) = (locks.clone(), a.clone(), order.clone());
            waiters.push(tokio::spawn(async move {
                let _held = locks.lock(&a).await;
                order.lock().push(i);
            }));
            // Let each waiter queue before the next one arrives.
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(first);
        for w in waiters {
            w.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
        assert_eq!(
            locks.queues.lock().map.len(),
            0,
            "no stream is held or waited for"
        );
    }

    #[tokio::test]
    async fn waiters_given_up_leave_no_queues_behind() {
        let locks = LocalLocks::default();
        // Many streams, each held while a waiter queues; the holder lets go while the waiter
        // still refers to the queue (so its guard keeps it), then the waiter gives up (its
        // future dropped) before it runs again.
        for i in 0..1_000 {
            let stream = vec![StreamId::new(format!("s{i}"))];
            let held = locks.lock(&stream).await;
            let mut waiting = Box::pin(locks.lock(&stream));
            assert!(futures::poll!(&mut waiting).is_pending());
            drop(held);
            drop(waiting);
        }
        let left = locks.queues.lock().map.len();
        assert!(
            left <= 2 * SWEEP_MIN,
            "{left} queues kept for streams nobody uses"
        );
    }

    #[test]
    fn lock_order_sorts_and_drops_duplicates() {
        let s = |x: &str| StreamId::new(x);
        assert_eq!(lock_order(&[s("b"), s("a"), s("b")]), vec![s("a"), s("b")]);
    }
}
