//! The envelopes events travel in: what a writer hands the store ([`NewEvent`],
//! [`StreamWrite`]), what the store hands back ([`RecordedEvent`], [`Commit`]), and snapshots.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{EventId, ExpectedVersion, Position, StreamId, Version};
use crate::metadata::Metadata;

/// An event as it is stored: its payload plus everything the store recorded about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The event's unique id.
    pub id: EventId,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream (1, 2, 3, ... without gaps).
    pub version: Version,
    /// Its place in the global log.
    pub position: Position,
    /// The stable stored type name (for example `"account.deposited"`).
    pub event_type: String,
    /// The schema version of the payload, as it was written.
    pub schema_version: u32,
    /// The payload: UTF-8 JSON as it was written.
    pub payload: Bytes,
    /// Correlation and causation ids, headers.
    pub metadata: Metadata,
    /// When the store recorded it.
    pub recorded_at: DateTime<Utc>,
}

/// What folding a stream into an aggregate needs of each event: the fields of a
/// [`RecordedEvent`] that [`Repository`](crate::Repository) loads read, and no others, so a
/// store can send less per event ([`EventStore::read_stream_for_fold`](crate::EventStore::read_stream_for_fold)).
/// The position tells a load that a state it starts from (a snapshot, a cached state) is
/// still the stream's: the event at the state's version must be the one it was folded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldEvent {
    /// Its version within the stream.
    pub version: Version,
    /// Its place in the global log.
    pub position: Position,
    /// The stable stored type name.
    pub event_type: String,
    /// The schema version of the payload, as it was written.
    pub schema_version: u32,
    /// The payload, as it was written.
    pub payload: Bytes,
}

/// What [`EventStore::read_stream_from_snapshot`](crate::EventStore::read_stream_from_snapshot)
/// hands out: first, exactly once, the snapshot the read starts from (or `None`), then the
/// events a fold needs from that snapshot's version on (inclusive: the first event is the one
/// the snapshot must have been folded up to), or from version 1 when there is no snapshot.
#[derive(Clone, Debug, PartialEq)]
pub enum FoldItem {
    /// The newest snapshot within the read's bound, or `None`: always the first item.
    Snapshot(Option<Snapshot>),
    /// An event of the stream, in version order.
    Event(FoldEvent),
}

impl From<RecordedEvent> for FoldEvent {
    fn from(e: RecordedEvent) -> Self {
        Self {
            version: e.version,
            position: e.position,
            event_type: e.event_type,
            schema_version: e.schema_version,
            payload: e.payload,
        }
    }
}

/// An event to append: the encoded payload and its identity, before the store numbers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// The event's id; appending the same id again is idempotent.
    pub id: EventId,
    /// The stable stored type name.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The payload: UTF-8 JSON.
    pub payload: Bytes,
    /// Correlation and causation ids, headers.
    pub metadata: Metadata,
}

impl NewEvent {
    /// An event with a fresh, time-ordered id ([`EventId::new_time_ordered`]) and empty metadata.
    pub fn new(
        event_type: impl Into<String>,
        schema_version: u32,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            id: EventId::new_time_ordered(),
            event_type: event_type.into(),
            schema_version,
            payload: payload.into(),
            metadata: Metadata::default(),
        }
    }

    /// Sets the event id.
    pub fn with_id(mut self, id: EventId) -> Self {
        self.id = id;
        self
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Whether `recorded` is this event, as an idempotent retry would write it again: same id,
    /// type, schema version and payload. Metadata is not compared (a retry may carry new
    /// headers, a new trace id).
    pub fn is_same_as(&self, recorded: &RecordedEvent) -> bool {
        self.id == recorded.id
            && self.event_type == recorded.event_type
            && self.schema_version == recorded.schema_version
            && self.payload == recorded.payload
    }
}

/// The events to append to one stream, with the version the stream is expected to be at.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamWrite {
    /// The stream to append to.
    pub stream: StreamId,
    /// The version the stream must be at for the append to succeed.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

impl StreamWrite {
    /// A write of `events` to `stream`, expecting `expected`.
    pub fn new(
        stream: impl Into<StreamId>,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Self {
        Self {
            stream: stream.into(),
            expected,
            events,
        }
    }
}

/// What one stream received in a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedStream {
    /// The stream.
    pub stream: StreamId,
    /// The version of the first event written.
    pub first_version: Version,
    /// The version of the last event written: the stream's version after the commit.
    pub last_version: Version,
    /// The global position of the last event written to this stream.
    pub last_position: Position,
    /// When the last event written to this stream was recorded.
    pub last_recorded_at: DateTime<Utc>,
}

/// The result of an append: what was written, and the position a reader can wait for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// Each stream written to, in the order of the request.
    pub streams: Vec<CommittedStream>,
    /// The global position of the first event of the commit.
    pub first_position: Position,
    /// The global position of the last event of the commit: once a projection has reached it,
    /// the projection reflects the whole commit.
    pub position: Position,
}

impl Commit {
    /// The commit of an append with no events: it writes nothing, and its positions are
    /// [`Position::ZERO`] (waiting for it returns at once).
    pub fn empty() -> Self {
        Self {
            streams: Vec::new(),
            first_position: Position::ZERO,
            position: Position::ZERO,
        }
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The number of events written.
    pub fn event_count(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| s.last_version.get() + 1 - s.first_version.get())
            .sum()
    }

    /// The new version of `stream` after this commit, if it was written to.
    pub fn version_of(&self, stream: &StreamId) -> Option<Version> {
        self.streams
            .iter()
            .find(|s| &s.stream == stream)
            .map(|s| s.last_version)
    }
}

/// A snapshot of an aggregate's state at one version of its stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The stream the state was folded from.
    pub stream: StreamId,
    /// The version of the last event folded into the state.
    pub version: Version,
    /// The position of that event.
    pub position: Position,
    /// When that event was recorded (lets time travel use snapshots).
    pub event_recorded_at: DateTime<Utc>,
    /// The aggregate's snapshot schema version when it was written. A snapshot whose schema
    /// version is not the aggregate's current one is never decoded.
    pub schema_version: u32,
    /// The encoded state (UTF-8 JSON).
    pub payload: Bytes,
}
