//! A command's writes and what follows them: encoding the decided events, finding the commit
//! an idempotency key already made, and, after a commit, the cached state and the snapshot.

use tracing::Instrument;

use super::{CommandOptions, Loaded, Repository};
use crate::aggregate::Aggregate;
use crate::envelope::{Commit, CommittedStream, NewEvent, Snapshot, StreamWrite};
use crate::error::{DecodeError, Error};
use crate::event::EventSet;
use crate::ids::{EventId, ExpectedVersion, Position, StreamId, Version};
use crate::store::EventStore;

impl<A: Aggregate, S: EventStore> Repository<A, S> {
    /// The writes of a decision: each stream's events at the version its state was loaded at,
    /// with ids derived from the idempotency key when there is one.
    pub(super) fn encode(
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
                    None => EventId::new_time_ordered(),
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
    pub(super) async fn find_commit(&self, key: &str) -> Result<Option<Commit>, Error> {
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

    /// Whether what follows a commit needs the writes (to fold into the states): with the
    /// cache, or when the commit makes a snapshot due.
    pub(super) fn keeps_writes(&self, loaded: &[Loaded<A>], writes: &[StreamWrite]) -> bool {
        self.cache.is_some()
            || loaded
                .iter()
                .zip(writes)
                .any(|(l, w)| snapshot_due::<A>(l.version, l.version.get() + w.events.len() as u64))
    }

    /// After a commit, for each stream written: folds what was written into its loaded state,
    /// which is then the state at the committed version; caches it, and writes a snapshot of
    /// it when the new version crossed a multiple of `A::SNAPSHOT_EVERY`. The events folded
    /// are decoded back from the payloads written, so the state is the one a reload would
    /// give even where an event's encoding drops something. Failures are logged and dropped:
    /// the command has committed.
    pub(super) async fn after_commit(
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
            if let Some(short) = &self.short {
                short.saw(stream, committed.last_version);
            }
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
                cache.put(stream, &loaded);
            }
            if snapshot_due {
                self.save_snapshot(committed, &loaded).await;
            }
        }
    }

    /// Writes a snapshot of `loaded`, the state at `committed`'s last version.
    async fn save_snapshot(&self, committed: &CommittedStream, loaded: &Loaded<A>) {
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
