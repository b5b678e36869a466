//! Typed errors. Each names what it is about (stream, version, event type), so a log line alone
//! tells what went wrong where.

use crate::ids::{EventId, ExpectedVersion, StreamId, Version};

/// A boxed error from a store backend or a user's conversion.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error: what the errors a caller may hold on to (and copy, as a projection's status
/// does) keep as their source.
pub type SharedError = std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>;

/// An error from an event store. Cheap to clone: sources are shared.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version. Nothing of the append was written.
    #[error("conflict on stream `{stream}`: expected {expected}, found version {actual}")]
    Conflict {
        /// The stream whose version did not match.
        stream: StreamId,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's version when the append was checked.
        actual: Version,
    },
    /// An event id in the append is already stored with other content (another stream, type or
    /// payload), or an append repeats only part of an earlier one. Nothing was written.
    #[error(
        "event id {id} is already stored as a different event (on stream `{stored_stream}`): {reason}"
    )]
    EventIdReused {
        /// The reused id.
        id: EventId,
        /// The stream the id is stored on.
        stored_stream: StreamId,
        /// What differs.
        reason: String,
    },
    /// The request itself is malformed (an empty stream id, the same stream twice in one
    /// append, an event id twice in one append). Nothing was written.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A stored row could not be read back (a corrupt column, an impossible value).
    #[error("corrupt event at stream `{stream}` version {version}: {reason}")]
    Corrupt {
        /// The stream of the row.
        stream: StreamId,
        /// The version of the row.
        version: Version,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's configuration or schema is not usable (a bad schema name, a missing table, an
    /// unsupported server version, a duplicate event type registration).
    #[error("store configuration: {0}")]
    Config(String),
    /// The backend failed (connection lost, server restarting, a timeout). `retryable` tells
    /// whether the same call may succeed if tried again.
    #[error("store backend failed while {context}")]
    Backend {
        /// What the store was doing.
        context: String,
        /// Whether trying again may succeed.
        retryable: bool,
        /// The backend's error.
        #[source]
        source: SharedError,
    },
    /// A projection's checkpoint as stored cannot be read back (an impossible position).
    #[error("checkpoint `{name}` is corrupt: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint (projection) name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Another writer holds the writers' lock of the stream (see
    /// [`EventStore::lock_streams`](crate::EventStore::lock_streams): a command that kept
    /// losing races on it runs alone for a moment). Nothing was written; trying again once
    /// the lock is released may succeed.
    #[error("stream `{stream}` is locked by another writer")]
    StreamLocked {
        /// The locked stream.
        stream: StreamId,
    },
    /// The store was shut down.
    #[error("the store is closed")]
    Closed,
    /// The checkpoint is sealed: its version of the projection is being switched away from,
    /// or was (see [`versions`](crate::store::versions)). Nothing was written; the version's
    /// runner stands by until the switch ends.
    #[error("checkpoint `{name}` is sealed: its version of the projection is switched away from")]
    CheckpointSealed {
        /// The checkpoint name.
        name: String,
    },
    /// A step of a switch between versions of a projection did not apply to the versions as
    /// they stand (another switch is under way, the version does not serve, the new version
    /// has not caught up). Nothing was changed.
    #[error("switch of projection `{projection}` refused: {reason}")]
    SwitchRefused {
        /// The projection.
        projection: String,
        /// Why.
        reason: String,
    },
    /// A projection the store runs inside every append's transaction (an inline projection)
    /// failed on one of the append's events, so the append was rolled back: nothing was
    /// written.
    #[error(
        "inline projection `{projection}` failed on `{event_type}` at stream `{stream}` version {version}: nothing was appended"
    )]
    InlineProjection {
        /// The projection.
        projection: &'static str,
        /// The event's stream.
        stream: StreamId,
        /// The version the event would have had.
        version: Version,
        /// The event's type.
        event_type: String,
        /// The handler's error.
        #[source]
        source: SharedError,
    },
}

impl StoreError {
    /// Whether this is an optimistic-concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether the same call may succeed if tried again, unchanged: a backend failure marked
    /// retryable (a lost connection, a server restarting), or a stream locked by another
    /// writer for a moment. A conflict is not: the caller must catch up first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            } | StoreError::StreamLocked { .. }
        )
    }

    /// A backend error with context.
    pub fn backend(
        context: impl Into<String>,
        retryable: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        StoreError::Backend {
            context: context.into(),
            retryable,
            source: SharedError::from(source.into()),
        }
    }
}

/// An event or snapshot payload that could not be turned into a type. Context (stream and
/// version) is added by [`Error::Decode`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// No type in the set is stored under this name and version.
    #[error("unknown event type `{name}` version {version}")]
    UnknownEvent {
        /// The stored type name.
        name: String,
        /// The stored schema version.
        version: u32,
    },
    /// The name is known but this schema version is not (newer than the code, or older than
    /// any upcaster reaches).
    #[error("event type `{name}` has no schema version {version} (the code knows up to {current})")]
    UnsupportedVersion {
        /// The stored type name.
        name: String,
        /// The stored schema version.
        version: u32,
        /// The current schema version in the code.
        current: u32,
    },
    /// The payload is not valid for the type it claims to be.
    #[error("payload of `{name}` version {version} is invalid")]
    Payload {
        /// The stored type name.
        name: String,
        /// The stored schema version.
        version: u32,
        /// The deserializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// An upcast from an older version failed.
    #[error("upcasting `{name}` from version {from} to version {to} failed")]
    Upcast {
        /// The stored type name.
        name: String,
        /// The version upcast from.
        from: u32,
        /// The version upcast to.
        to: u32,
        /// The conversion's error.
        #[source]
        source: BoxError,
    },
    /// A snapshot could not be decoded (its schema matched, but the payload did not).
    #[error("snapshot payload is invalid")]
    Snapshot(#[source] serde_json::Error),
    /// The aggregate does not support snapshots.
    #[error("this aggregate does not take snapshots")]
    SnapshotsUnsupported,
}

/// An event or snapshot that could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// Serialization failed.
    #[error("encoding `{name}` failed")]
    Serialize {
        /// The type name (event type, or the aggregate's name for snapshots).
        name: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The aggregate does not support snapshots.
    #[error("this aggregate does not take snapshots")]
    SnapshotsUnsupported,
}

/// An error from loading aggregates or appending through the [`Repository`](crate::Repository).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be decoded.
    #[error(
        "cannot decode event `{event_type}` (schema version {schema_version}) at stream `{stream}` version {version}"
    )]
    Decode {
        /// The stream of the event.
        stream: StreamId,
        /// The version of the event.
        version: Version,
        /// The stored type name.
        event_type: String,
        /// The stored schema version.
        schema_version: u32,
        /// Why.
        #[source]
        source: DecodeError,
    },
    /// An event could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The stream has fewer events than a time-travel read asked for.
    #[error("stream `{stream}` has no version {requested} (it is at version {actual})")]
    VersionNotFound {
        /// The stream.
        stream: StreamId,
        /// The version asked for.
        requested: Version,
        /// The stream's version.
        actual: Version,
    },
}

impl Error {
    /// Whether this is an optimistic-concurrency conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Store(e) if e.is_conflict())
    }
}

/// The error of a command run through [`Repository::execute`](crate::Repository::execute).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The decision rejected the command; nothing was written.
    #[error("command rejected")]
    Rejected(#[source] E),
    /// Every attempt met a concurrent writer; nothing was written.
    #[error("gave up on stream `{stream}` after {attempts} conflicting attempts")]
    RetriesExhausted {
        /// The stream that kept conflicting.
        stream: StreamId,
        /// How many attempts the [`RetryPolicy`](crate::RetryPolicy) counted: appends that lost
        /// a race, not those refused only because a cached state was behind the store (a
        /// command decides again on those without being charged).
        attempts: u32,
    },
    /// Loading, encoding or the store failed.
    #[error(transparent)]
    Failed(#[from] Error),
}

impl<E> CommandError<E> {
    /// The domain error, if the decision rejected the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl<E> From<StoreError> for CommandError<E> {
    fn from(e: StoreError) -> Self {
        CommandError::Failed(Error::Store(e))
    }
}
