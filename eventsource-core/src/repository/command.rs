//! Running a command: load, decide, append at the loaded versions. After a lost race the
//! states are caught up and the command decides again, as the [`RetryPolicy`] says: after a
//! backoff, or under the streams' writers' lock, where it cannot lose again.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tracing::Instrument;
use tracing::field::Empty;

use super::retry::{Executed, Loss, Next, Tries};
use super::{CommandOptions, Loaded, Repository};
use crate::aggregate::Aggregate;
use crate::envelope::{Commit, StreamWrite};
use crate::error::{CommandError, Error, StoreError};
use crate::event::IntoEvents;
use crate::ids::StreamId;
use crate::store::lock::lock_order;
use crate::store::{EventStore, ReadUntil, StreamLock};

#[cfg(doc)]
use super::RetryPolicy;

/// Where a command's state of one stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// Read from the store by this command.
    Read,
    /// Taken from the cache and not read since: it may be behind the store.
    Cached,
}

/// A command's states, one per stream, in the order of its ids.
struct States<A> {
    loaded: Vec<Loaded<A>>,
    source: Vec<Source>,
}

/// What a command's attempts came to: the commit, the states it was decided on, and the
/// writes (when what follows the commit needs them).
struct Committed<A> {
    commit: Commit,
    loaded: Vec<Loaded<A>>,
    written: Option<Vec<StreamWrite>>,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Runs a command on aggregate `id`: loads it, calls `decide` with the state, appends the
    /// events it returns at the loaded version, and returns the [`Commit`] with what it took
    /// ([`Executed`]). After a lost race the aggregate is brought up to date and `decide` runs
    /// again (it is `FnMut`), as the [`RetryPolicy`] allows; a command that keeps losing runs
    /// under the stream's writers' lock, where it cannot lose. Bringing it up to date reads
    /// only the events from the version it was loaded at on: on a hot stream a retry costs
    /// the few events that won the race, not the whole stream again. A decision with no events
    /// commits nothing and returns [`Commit::empty`].
    ///
    /// Commands of this repository and its clones on one stream run one after another (an
    /// in-process queue, first come, first served): in one process they would only lose
    /// races to each other. (So a decision must not run another command of the same
    /// repository on the same stream: it would wait for itself.)
    pub fn execute<'a, D, E, F>(
        &'a self,
        id: &'a str,
        decide: F,
    ) -> BoxFuture<'a, Result<Executed, CommandError<E>>>
    where
        F: FnMut(&A) -> Result<D, E> + Send + 'a,
        D: IntoEvents<A::Event> + 'a,
        E: Send + 'a,
    {
        self.execute_with(id, CommandOptions::default(), decide)
    }

    /// [`Repository::execute`] with metadata and an idempotency key.
    pub fn execute_with<'a, D, E, F>(
        &'a self,
        id: &'a str,
        options: CommandOptions,
        mut decide: F,
    ) -> BoxFuture<'a, Result<Executed, CommandError<E>>>
    where
        F: FnMut(&A) -> Result<D, E> + Send + 'a,
        D: IntoEvents<A::Event> + 'a,
        E: Send + 'a,
    {
        Box::pin(async move {
            let mut decide_all = |[state]: [&A; 1]| decide(state).map(|d| [d]);
            self.run_command([id], options, &mut decide_all).await
        })
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
    pub fn execute_many<'a, const N: usize, D, E, F>(
        &'a self,
        ids: [&'a str; N],
        decide: F,
    ) -> BoxFuture<'a, Result<Executed, CommandError<E>>>
    where
        F: FnMut([&A; N]) -> Result<[D; N], E> + Send + 'a,
        D: IntoEvents<A::Event> + 'a,
        E: Send + 'a,
    {
        self.execute_many_with(ids, CommandOptions::default(), decide)
    }

    /// [`Repository::execute_many`] with metadata and an idempotency key.
    pub fn execute_many_with<'a, const N: usize, D, E, F>(
        &'a self,
        ids: [&'a str; N],
        options: CommandOptions,
        mut decide: F,
    ) -> BoxFuture<'a, Result<Executed, CommandError<E>>>
    where
        F: FnMut([&A; N]) -> Result<[D; N], E> + Send + 'a,
        D: IntoEvents<A::Event> + 'a,
        E: Send + 'a,
    {
        Box::pin(async move { self.run_command(ids, options, &mut decide).await })
    }

    /// What every `execute*` runs (behind a boxed future: the bounds on the decision are
    /// checked once, where the command is called, so a decision returning an event the
    /// aggregate does not list is one error, not one per await).
    async fn run_command<const N: usize, D, E, F>(
        &self,
        ids: [&str; N],
        options: CommandOptions,
        decide: &mut F,
    ) -> Result<Executed, CommandError<E>>
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
            conflicts = Empty,
            backoff_us = Empty,
            serialized = Empty,
            position = Empty,
        );
        async move {
            // The commands of this repository (and its clones) on one stream run one after
            // another: in one process they would only lose races to each other. Commands of
            // other processes still race; the writers' lock settles those.
            let _queued = self.queue.lock(&lock_order(&streams)).await;
            // Looked up in the queue: a repeat of a request queued behind the request itself
            // finds its commit.
            if let Some(key) = &options.idempotency_key {
                if let Some(commit) = self.find_commit(key).await? {
                    tracing::debug!(position = %commit.position, "idempotency key already committed");
                    return Ok(Executed::without_attempts(commit));
                }
            }
            let mut tries = Tries::new(self.retry);
            let mut lock = None;
            let result = self
                .attempts(&streams, &options, decide, &mut tries, &mut lock)
                .await;
            if let Some(lock) = lock {
                if let Err(error) = lock.release().await {
                    tracing::warn!(%error, "releasing the writers' lock failed (it is released when its session ends)");
                }
            }
            tries.record(&tracing::Span::current());
            let committed = result?;
            tracing::Span::current().record("position", tracing::field::display(committed.commit.position));
            if let Some(written) = committed.written {
                self.after_commit(&streams, committed.loaded, written, &committed.commit)
                    .await;
            }
            Ok(tries.executed(committed.commit))
        }
        .instrument(span)
        .await
    }

    /// Decides and appends until a decision commits, is rejected, or the attempts are spent.
    /// A lock taken on the way is left in `lock` for the caller to release.
    async fn attempts<const N: usize, D, E, F>(
        &self,
        streams: &[StreamId; N],
        options: &CommandOptions,
        decide: &mut F,
        tries: &mut Tries,
        lock: &mut Option<StreamLock>,
    ) -> Result<Committed<A>, CommandError<E>>
    where
        F: FnMut([&A; N]) -> Result<[D; N], E> + Send,
        D: IntoEvents<A::Event>,
    {
        if tries.serialize_from_start() {
            self.take_lock(streams, tries, lock).await?;
        }
        let mut states = self.start(streams).await?;
        loop {
            let decided = {
                let views: [&A; N] = std::array::from_fn(|i| &states.loaded[i].state);
                let span = tracing::debug_span!("decide", rejected = Empty, events = Empty);
                let decided = span
                    .in_scope(|| decide(views))
                    .map(|d| d.map(IntoEvents::into_events));
                span.record("rejected", decided.is_err());
                if let Ok(d) = &decided {
                    span.record("events", d.iter().map(Vec::len).sum::<usize>());
                }
                decided
            };
            // A state from the cache may be behind the store. An append checks that itself
            // (it is at the state's version); a rejection, or a stream the decision writes
            // nothing to, is checked here: when the store has newer events, decide again.
            // That is not a lost race: it does not count against the retry policy.
            if self
                .check_unwritten(streams, &mut states, decided.as_ref().ok().map(|d| &d[..]))
                .await?
            {
                tracing::debug!("a cached state was behind the store: deciding again");
                continue;
            }
            let decided = decided.map_err(CommandError::Rejected)?;
            if decided.iter().all(Vec::is_empty) {
                return Ok(Committed {
                    commit: Commit::empty(),
                    loaded: states.loaded,
                    written: None,
                });
            }
            let writes = Self::encode(streams, &states.loaded, &decided, options)?;
            let written = self
                .keeps_writes(&states.loaded, &writes)
                .then(|| writes.clone());
            let span = tracing::debug_span!(
                "append",
                stream = %streams.first().map(StreamId::as_str).unwrap_or_default(),
                expected = states.loaded.first().map_or(0, |l| l.version.get()),
                version = Empty,
                position = Empty,
            );
            tries.appending();
            let appended = match lock.as_mut() {
                Some(lock) => lock.append(writes).instrument(span.clone()).await,
                None => self.store.append(writes).instrument(span.clone()).await,
            };
            let (stream, loss) = match appended {
                Ok(commit) => {
                    if let Some(first) = commit.streams.first() {
                        span.record("version", first.last_version.get());
                    }
                    span.record("position", tracing::field::display(commit.position));
                    return Ok(Committed {
                        commit,
                        loaded: states.loaded,
                        written,
                    });
                }
                Err(StoreError::Conflict { stream, .. }) => {
                    let unread = streams
                        .iter()
                        .position(|s| *s == stream)
                        .is_some_and(|i| states.source[i] == Source::Cached);
                    (stream, if unread { Loss::Unread } else { Loss::Conflict })
                }
                Err(StoreError::StreamLocked { stream }) => (stream, Loss::Locked),
                // A repeat of this request (another process, or a client retrying) committed
                // since the lookup, and this decision, made on the state that commit left,
                // differs from it under the same ids: the request is done, with that commit.
                Err(reused @ StoreError::EventIdReused { .. }) => {
                    let Some(key) = &options.idempotency_key else {
                        return Err(reused.into());
                    };
                    let Some(commit) = self.find_commit(key).await? else {
                        return Err(reused.into());
                    };
                    tracing::debug!(position = %commit.position, "idempotency key committed by a repeat meanwhile");
                    return Ok(Committed {
                        commit,
                        loaded: states.loaded,
                        written: None,
                    });
                }
                Err(e) => return Err(e.into()),
            };
            match tries.lost(loss) {
                Next::GiveUp => {
                    tracing::debug!(%stream, "lost the race: retries exhausted");
                    return Err(CommandError::RetriesExhausted {
                        stream,
                        attempts: tries.counted(),
                    });
                }
                Next::Again => tracing::debug!(%stream, ?loss, "lost the race: catching up"),
                Next::Backoff(wait) => {
                    tracing::debug!(%stream, ?loss, ?wait, "lost the race: backing off");
                    tokio::time::sleep(wait).await;
                }
                Next::Serialize => {
                    tracing::debug!(%stream, ?loss, "lost the race: taking the writers' lock");
                    // A lock held already has lost its hold (a stream moved under it): take
                    // it again.
                    if let Some(old) = lock.take() {
                        if let Err(error) = old.release().await {
                            tracing::debug!(%error, "releasing a lock that lost its hold");
                        }
                    }
                    self.take_lock(streams, tries, lock).await?;
                }
            }
            self.catch_up_all(streams, &mut states).await?;
        }
    }

    /// The states a command starts from: cached ones as they are (unread), the others
    /// loaded.
    async fn start(&self, streams: &[StreamId]) -> Result<States<A>, Error> {
        let mut states = States {
            loaded: Vec::with_capacity(streams.len()),
            source: Vec::with_capacity(streams.len()),
        };
        for stream in streams {
            match self.cache.as_deref().and_then(|c| c.get(stream)) {
                Some(cached) => {
                    states.loaded.push(cached);
                    states.source.push(Source::Cached);
                }
                None => {
                    states
                        .loaded
                        .push(self.load_stream(stream, ReadUntil::End).await?);
                    states.source.push(Source::Read);
                }
            }
        }
        Ok(states)
    }

    /// Reads the cached, unread states the decision does not append to (all of them when it
    /// was rejected: `decided` is `None`); whether any of them was behind the store.
    async fn check_unwritten(
        &self,
        streams: &[StreamId],
        states: &mut States<A>,
        decided: Option<&[Vec<A::Event>]>,
    ) -> Result<bool, Error> {
        let mut behind = false;
        for (i, stream) in streams.iter().enumerate() {
            let appends_here = decided.is_some_and(|d| d.get(i).is_some_and(|e| !e.is_empty()));
            if states.source[i] == Source::Cached && !appends_here {
                behind |= self.catch_up(stream, &mut states.loaded[i]).await?;
                states.source[i] = Source::Read;
            }
        }
        Ok(behind)
    }

    /// Brings every state up to its stream's end.
    async fn catch_up_all(
        &self,
        streams: &[StreamId],
        states: &mut States<A>,
    ) -> Result<(), Error> {
        for (i, stream) in streams.iter().enumerate() {
            self.catch_up(stream, &mut states.loaded[i]).await?;
            states.source[i] = Source::Read;
        }
        Ok(())
    }

    /// Waits for and takes the writers' lock of `streams`.
    async fn take_lock(
        &self,
        streams: &[StreamId],
        tries: &mut Tries,
        lock: &mut Option<StreamLock>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let span = tracing::debug_span!("lock", streams = streams.len(), waited_us = Empty);
        let taken = self
            .store
            .lock_streams(streams)
            .instrument(span.clone())
            .await?;
        let waited: Duration = started.elapsed();
        span.record("waited_us", waited.as_micros() as u64);
        tries.locked(waited);
        *lock = Some(taken);
        Ok(())
    }
}
