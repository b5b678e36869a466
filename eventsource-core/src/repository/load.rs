//! Loading: where a load starts, and folding a stream from there.
//!
//! A load starts from a state already folded up to some version (a cached state, a snapshot)
//! only when the stream still holds the event that state was folded up to: the read starts at
//! that version itself, and its first event must have the state's version and position. A
//! state that does not match (the stream was restored from an older backup, a snapshot was
//! written by hand or for another history) is never believed: the load goes on from an older
//! snapshot, or from the start. Snapshots and the cache are optimisations only.
//!
//! With snapshots on, a stream the repository last saw (loaded to its end, or committed)
//! shorter than `A::SNAPSHOT_EVERY` is folded from the start without asking for a snapshot:
//! none is due on it (`short.rs`, `load_short`). Should it have grown elsewhere meanwhile,
//! the fold stops at the interval and the load asks for the snapshot after all.

use futures::{Stream, StreamExt, TryStreamExt};
use tracing::Instrument;
use tracing::field::Empty;

use super::{At, Loaded, Repository};
use crate::aggregate::Aggregate;
use crate::envelope::{FoldEvent, FoldItem, Snapshot};
use crate::error::{Error, StoreError};
use crate::event::EventSet;
use crate::ids::{StreamId, Version};
use crate::store::{EventStore, ReadUntil};

/// How many snapshots a load tries, newest first, before it folds from the start.
const SNAPSHOT_TRIES: usize = 3;

/// How many non-matching snapshots the repository remembers having reported.
const REPORTED_MAX: usize = 4096;

/// Why a snapshot whose stream does not hold its last event is passed over.
const NOT_HELD: &str = "the stream does not hold its last event (restored from an older backup, or written for another history?)";

/// A store handed out a snapshot after an event, or an event before the snapshot: it broke
/// the order of [`EventStore::read_stream_from_snapshot`].
fn out_of_order(stream: &StreamId, version: Version) -> StoreError {
    StoreError::Corrupt {
        stream: stream.clone(),
        version,
        reason: "read_stream_from_snapshot handed out its items out of order".into(),
    }
}

/// Whether a fold could start where it was asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fold {
    /// The stream holds the starting state's last event: the events after it were folded in.
    Folded,
    /// It does not: nothing was folded.
    Mismatch,
}

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// Loads the current state of aggregate `id`: the newest snapshot that matches its
    /// stream, then the events after it. A stream with no events loads as `A::default()` at
    /// version zero.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>, Error> {
        self.load_stream(&A::stream_id(id), ReadUntil::End).await
    }

    /// Loads aggregate `id` as it was at a version or a time (time travel). Snapshots above the
    /// target are ignored.
    pub async fn load_at(&self, id: &str, at: At) -> Result<Loaded<A>, Error> {
        let stream = A::stream_id(id);
        let until = match at {
            At::Version(v) => ReadUntil::Version(v),
            At::Time(t) => ReadUntil::Time(t),
        };
        let loaded = self.load_stream(&stream, until).await?;
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

    /// Loads `stream` up to `until`: from the cached state (when loading to the end), else
    /// from the newest matching snapshot, else from the start; then caches the result.
    pub(super) async fn load_stream(
        &self,
        stream: &StreamId,
        until: ReadUntil,
    ) -> Result<Loaded<A>, Error> {
        let span = tracing::debug_span!(
            "load",
            aggregate = A::NAME,
            %stream,
            ?until,
            cached = Empty,
            snapshot_version = Empty,
            short = Empty,
            version = Empty,
            position = Empty,
        );
        async {
            let cache = self.cache.as_deref().filter(|_| until == ReadUntil::End);
            if let Some(cache) = cache
                && let Some(mut loaded) = cache.get(stream)
            {
                tracing::Span::current().record("cached", loaded.version.get());
                let from = loaded.version;
                if self.fold_from(stream, &mut loaded, until).await? == Fold::Folded {
                    cache.put(stream, &loaded);
                    return Ok(loaded);
                }
                tracing::warn!(%stream, cached = %from, "the stream no longer holds the cached state's last event (restored from an older backup?): loading it again");
                cache.remove(stream);
            }
            let loaded = self.load_from_snapshots(stream, until).await?;
            // A load to the end tells whether the stream is short; one to a bound only that it
            // is not, once it reached the interval.
            if let Some(short) = &self.short
                && (until == ReadUntil::End || loaded.version.get() >= short.every())
            {
                short.saw(stream, loaded.version);
            }
            if let Some(cache) = cache {
                cache.put(stream, &loaded);
            }
            Ok(loaded)
        }
        .instrument(span)
        .await
    }

    /// Loads `stream` up to `until` from the newest snapshot that matches it, or from the
    /// start. The newest snapshot and the events after it come in one read
    /// ([`EventStore::read_stream_from_snapshot`]: one round trip where the store makes it
    /// one); only when that snapshot does not match does the load look further.
    async fn load_from_snapshots(
        &self,
        stream: &StreamId,
        until: ReadUntil,
    ) -> Result<Loaded<A>, Error> {
        let mut loaded = Loaded::empty();
        if A::SNAPSHOT_EVERY.is_none() {
            self.fold_from(stream, &mut loaded, until).await?;
            return Ok(loaded);
        }
        if let Some(loaded) = self.load_short(stream, until).await? {
            return Ok(loaded);
        }
        let mut items = self
            .store
            .read_stream_from_snapshot(stream, A::SNAPSHOT_VERSION, until);
        let snapshot = match items.try_next().await {
            Ok(Some(FoldItem::Snapshot(snapshot))) => {
                snapshot.filter(|s| s.version > Version::ZERO)
            }
            Ok(Some(FoldItem::Event(e))) => return Err(out_of_order(stream, e.version).into()),
            Ok(None) => None,
            // The snapshot could not be loaded (a corrupt row, a missing table): snapshots
            // are an optimisation, never a reason to fail a load, which goes on from the
            // start (as when `load_snapshot` fails: asked again, the store would answer the
            // same).
            Err(error) => {
                tracing::warn!(%stream, %error, "snapshot ignored: cannot load");
                drop(items);
                self.fold_from(stream, &mut loaded, until).await?;
                return Ok(loaded);
            }
        };
        let events = items.map(|item| match item? {
            FoldItem::Event(e) => Ok(e),
            FoldItem::Snapshot(_) => Err(out_of_order(stream, Version::ZERO)),
        });
        let Some(snapshot) = snapshot else {
            self.fold_events(stream, &mut loaded, events, false).await?;
            return Ok(loaded);
        };
        let version = snapshot.version;
        tracing::Span::current().record("snapshot_version", version.get());
        if let Some(mut loaded) = self.decoded(stream, &snapshot) {
            if self.fold_events(stream, &mut loaded, events, true).await? == Fold::Folded {
                return Ok(loaded);
            }
            self.report_once(stream, version, NOT_HELD);
        }
        let older = ReadUntil::Version(Version::new(version.get() - 1));
        self.load_from_older_snapshots(stream, until, older).await
    }

    /// The load of a stream last seen shorter than the snapshot interval `n` (`short.rs`):
    /// no snapshot is due on it, so it is folded from the start without asking for one,
    /// which spares the store the snapshot lookup (on PostgreSQL a second table in the
    /// statement, measured at a tenth of a short stream's load). The fold reads at most `n`
    /// events: one that reaches version `n` finds the stream grown meanwhile (in another
    /// process), forgets the hint and gives up (`None`), and the load asks for a snapshot
    /// after all. So a stale hint costs at most `n` events and one round trip. Time travel
    /// by time asks as before.
    async fn load_short(
        &self,
        stream: &StreamId,
        until: ReadUntil,
    ) -> Result<Option<Loaded<A>>, Error> {
        let Some(short) = self.short.as_ref().filter(|s| s.is_short(stream)) else {
            return Ok(None);
        };
        let cap = Version::new(short.every());
        let bound = match until {
            ReadUntil::End => cap,
            ReadUntil::Version(v) => v.min(cap),
            ReadUntil::Time(_) => return Ok(None),
        };
        let mut loaded = Loaded::empty();
        self.fold_from(stream, &mut loaded, ReadUntil::Version(bound))
            .await?;
        if loaded.version >= cap {
            // `load_stream` forgets the hint once the load reached the interval.
            tracing::debug!(%stream, "a stream seen short has grown: asking for its snapshot");
            return Ok(None);
        }
        tracing::Span::current().record("short", true);
        Ok(Some(loaded))
    }

    /// Loads `stream` up to `until` from the newest snapshot within `bound` that matches it
    /// (trying a few), or from the start.
    async fn load_from_older_snapshots(
        &self,
        stream: &StreamId,
        until: ReadUntil,
        mut bound: ReadUntil,
    ) -> Result<Loaded<A>, Error> {
        for _ in 1..SNAPSHOT_TRIES {
            let Some(mut loaded) = self.snapshot(stream, bound).await else {
                break;
            };
            let version = loaded.version;
            tracing::Span::current().record("snapshot_version", version.get());
            if self.fold_from(stream, &mut loaded, until).await? == Fold::Folded {
                return Ok(loaded);
            }
            self.report_once(stream, version, NOT_HELD);
            bound = ReadUntil::Version(Version::new(version.get() - 1));
        }
        let mut loaded = Loaded::empty();
        self.fold_from(stream, &mut loaded, until).await?;
        Ok(loaded)
    }

    /// The newest snapshot of `stream` within `bound`, decoded (at least version 1); `None`
    /// when there is none. A snapshot that cannot be loaded or decoded is passed over for
    /// the next older one, with a warning: snapshots are an optimisation, never a reason to
    /// fail a load.
    async fn snapshot(&self, stream: &StreamId, mut bound: ReadUntil) -> Option<Loaded<A>> {
        for _ in 0..SNAPSHOT_TRIES {
            let found = self
                .store
                .load_snapshot(stream, A::SNAPSHOT_VERSION, bound)
                .await;
            let snapshot = match found {
                Ok(Some(s)) if s.version > Version::ZERO => s,
                Ok(_) => return None,
                Err(error) => {
                    tracing::warn!(%stream, %error, "snapshot ignored: cannot load");
                    return None;
                }
            };
            if let Some(loaded) = self.decoded(stream, &snapshot) {
                return Some(loaded);
            }
            bound = ReadUntil::Version(Version::new(snapshot.version.get() - 1));
        }
        None
    }

    /// `snapshot` decoded, as a state to fold on from; `None`, reported once, when it does
    /// not decode.
    fn decoded(&self, stream: &StreamId, snapshot: &Snapshot) -> Option<Loaded<A>> {
        match A::decode_snapshot(&snapshot.payload) {
            Ok(state) => Some(Loaded {
                state,
                version: snapshot.version,
                position: snapshot.position,
            }),
            Err(error) => {
                self.report_once(stream, snapshot.version, &error.to_string());
                None
            }
        }
    }

    /// Warns that the snapshot of `stream` at `version` was passed over, once per snapshot.
    fn report_once(&self, stream: &StreamId, version: Version, why: &str) {
        let mut reported = self.reported.lock();
        if reported.len() >= REPORTED_MAX {
            reported.clear();
        }
        if reported.insert((stream.clone(), version)) {
            tracing::warn!(%stream, %version, why, "snapshot passed over");
        }
    }

    /// Folds the events of `stream` after `loaded` into it, up to `until`. A state past
    /// version zero is first checked against the stream: the read starts at its version,
    /// whose event must be the one the state was folded up to (same version and position);
    /// when it is not, nothing is folded and the answer is [`Fold::Mismatch`].
    pub(super) async fn fold_from(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        until: ReadUntil,
    ) -> Result<Fold, Error> {
        let check = loaded.version > Version::ZERO;
        let from = if check {
            loaded.version
        } else {
            Version::FIRST
        };
        let events = self.store.read_stream_for_fold(stream, from, until);
        self.fold_events(stream, loaded, events, check).await
    }

    /// Folds `events` into `loaded`. With `check`, the first event must be the one `loaded`
    /// was folded up to (same version and position), else nothing is folded and the answer
    /// is [`Fold::Mismatch`].
    async fn fold_events(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
        events: impl Stream<Item = Result<FoldEvent, StoreError>>,
        check: bool,
    ) -> Result<Fold, Error> {
        let mut events = std::pin::pin!(events);
        if check {
            match events.try_next().await? {
                Some(last)
                    if last.version == loaded.version && last.position == loaded.position => {}
                _ => return Ok(Fold::Mismatch),
            }
        }
        while let Some(stored) = events.try_next().await? {
            // Versions follow one another from 1: a store handing out a gap or a repeat
            // would make the fold a state no history has.
            if stored.version.get() != loaded.version.get() + 1 {
                return Err(StoreError::Corrupt {
                    stream: stream.clone(),
                    version: stored.version,
                    reason: format!(
                        "a stream read handed out version {} after {}",
                        stored.version, loaded.version
                    ),
                }
                .into());
            }
            apply_stored(stream, loaded, &stored)?;
        }
        let span = tracing::Span::current();
        span.record("version", loaded.version.get());
        span.record("position", tracing::field::display(loaded.position));
        Ok(Fold::Folded)
    }

    /// Brings `loaded` up to the end of `stream`: the events after it, or, when the stream
    /// no longer holds its last event, the stream loaded again. Whether it moved.
    pub(super) async fn catch_up(
        &self,
        stream: &StreamId,
        loaded: &mut Loaded<A>,
    ) -> Result<bool, Error> {
        let (version, position) = (loaded.version, loaded.position);
        let span = tracing::debug_span!(
            "catch_up",
            aggregate = A::NAME,
            %stream,
            from = version.get(),
            version = Empty,
            position = Empty,
        );
        let folded = self
            .fold_from(stream, loaded, ReadUntil::End)
            .instrument(span)
            .await?;
        if folded == Fold::Mismatch {
            tracing::warn!(%stream, %version, "the stream no longer holds the state's last event (restored from an older backup?): loading it again");
            if let Some(cache) = &self.cache {
                cache.remove(stream);
            }
            *loaded = self.load_stream(stream, ReadUntil::End).await?;
            return Ok(true);
        }
        let moved = loaded.version != version || loaded.position != position;
        if moved && let Some(cache) = &self.cache {
            cache.put(stream, loaded);
        }
        Ok(moved)
    }
}

/// Decodes a stored event of `stream` and applies it to `loaded`.
fn apply_stored<A: Aggregate>(
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
    loaded.position = stored.position;
    Ok(())
}
