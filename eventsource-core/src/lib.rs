//! # eventsource-core
//!
//! The runtime of eventsource: event and aggregate traits, the [`EventStore`] contract, the
//! [`Repository`] that loads aggregates and runs commands with optimistic concurrency,
//! snapshots, time travel, [projections](crate::projection) with checkpoints, and the embedded
//! [`InMemoryStore`].
//!
//! With the `derive` feature (on by default) the derives `DomainEvent`, `Aggregate` and
//! `Projection` are re-exported here, so one dependency plus a store is all a user adds.
//!
//! The stories behind the API, one a module, are in [`docs`]: [commands and
//! concurrency](docs::concurrency), [projections](docs::projections), [the store
//! contract](docs::store_contract) and [versions](docs::versioning).

pub mod aggregate;
pub mod codec;
pub mod envelope;
pub mod error;
pub mod event;
pub mod ids;
pub mod metadata;
pub mod projection;
pub mod registry;
pub mod repository;
pub mod store;
pub mod subscription;
#[cfg(feature = "testing")]
pub mod testing;

#[doc(hidden)]
pub mod __private;

/// Guides: the stories behind the API, one a module (the same text as `docs/*.md`).
pub mod docs {
    #[doc = include_str!("../docs/concurrency.md")]
    pub mod concurrency {}
    #[doc = include_str!("../docs/projections.md")]
    pub mod projections {}
    #[doc = include_str!("../docs/store-contract.md")]
    pub mod store_contract {}
    #[doc = include_str!("../docs/versioning.md")]
    pub mod versioning {}
}

pub use aggregate::{Aggregate, Apply};
pub use envelope::{
    Commit, CommittedStream, FoldEvent, FoldItem, NewEvent, RecordedEvent, Snapshot, StreamWrite,
};
pub use error::{BoxError, CommandError, DecodeError, EncodeError, Error, SharedError, StoreError};
pub use event::{DomainEvent, EventSet, EventType, IntoEvents};
pub use ids::{EventId, ExpectedVersion, ParsePositionError, Position, StreamId, Version};
pub use metadata::Metadata;
pub use projection::{
    DeadLetterSelect, FailurePolicy, Handle, HandlerError, ListsEvent, OnFailure, Projection,
    ProjectionError, ProjectionHandle, ProjectionRunner, ProjectionStatus, Reached, Transient,
};
pub use registry::{EventRegistry, RegistryError};
pub use repository::{At, CommandOptions, Executed, Loaded, Repository, RetryPolicy};
pub use store::memory::InMemoryStore;
pub use store::{
    AnyStore, DeadLetter, DeadLetterQuery, DynEventStore, EventStore, LogPage, ProjectionVersions,
    ReadUntil, StreamLock, Switching, VersionStep, validate_writes, version_key,
};
pub use subscription::subscribe;

#[cfg(feature = "derive")]
pub use eventsource_derive::{Aggregate, DomainEvent, Projection};

/// `use eventsource_core::prelude::*;` brings in what domain code and handlers use.
pub mod prelude {
    pub use crate::{
        Aggregate, AnyStore, Apply, At, CommandError, CommandOptions, Commit, DomainEvent,
        EventStore, Handle, HandlerError, InMemoryStore, ListsEvent, Metadata, Position,
        Projection, ProjectionRunner, RecordedEvent, Repository, StreamId, Version,
    };
}
