//! [`ProjectionError`]: why a projection stopped, or a wait on it failed.

use std::sync::Arc;

use crate::envelope::RecordedEvent;
use crate::error::{SharedError, StoreError};
use crate::ids::{Position, StreamId, Version};

/// Why a projection stopped, or a wait on it failed. Cheap to clone: sources are shared, so a
/// projection's status carries the error itself.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// A handler failed. The checkpoint stays before this event.
    #[error(
        "projection `{projection}` failed on `{event_type}` at stream `{stream}` version {version} (position {position})"
    )]
    Handler {
        /// The projection.
        projection: Arc<str>,
        /// The event's stream.
        stream: StreamId,
        /// The event's version in its stream.
        version: Version,
        /// The event's stored type.
        event_type: String,
        /// The event's position.
        position: Position,
        /// The handler's error.
        #[source]
        source: SharedError,
    },
    /// A handler panicked. The runner stops whatever the failure policy: the projection's
    /// own state may be half-updated. The checkpoint stays before this event.
    #[error(
        "projection `{projection}` panicked on `{event_type}` at stream `{stream}` version {version} (position {position}): {message}"
    )]
    HandlerPanicked {
        /// The projection.
        projection: Arc<str>,
        /// The event's stream.
        stream: StreamId,
        /// The event's version in its stream.
        version: Version,
        /// The event's stored type.
        event_type: String,
        /// The event's position.
        position: Position,
        /// The panic's message.
        message: String,
    },
    /// The projection's `reset` failed (or panicked) before a rebuild: nothing was replayed
    /// and the checkpoint did not move.
    #[error("projection `{projection}`: resetting the read model failed")]
    Reset {
        /// The projection.
        projection: Arc<str>,
        /// The reset's error (a panic's message for a panic).
        #[source]
        source: SharedError,
    },
    /// The store failed. [`ProjectionError::is_transient`] tells whether retrying may help.
    #[error("projection `{projection}`: the store failed")]
    Store {
        /// The projection.
        projection: Arc<str>,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Another runner took this projection's lease over (runners that share the work across
    /// processes, such as the PostgreSQL store's, hold one): this runner's batch was rolled
    /// back and it no longer writes.
    #[error("projection `{projection}`: another runner took the lease over")]
    LeaseLost {
        /// The projection.
        projection: Arc<str>,
    },
    /// This runner does not run the projection now (another process holds its lease, or it
    /// is waiting out a fault), so it cannot retry or discard its dead letters: ask the one
    /// that does, or again later.
    #[error("projection `{projection}`: this runner does not run it now")]
    NotLeading {
        /// The projection.
        projection: Arc<str>,
    },
    /// A newer version of the projection serves: this version was switched away from
    /// (see [`ProjectionRunner::version`](crate::ProjectionRunner::version)) and does not
    /// run any more.
    #[error(
        "projection `{projection}`: version {by} serves now, this version was switched away from"
    )]
    Superseded {
        /// The projection (this version's name).
        projection: Arc<str>,
        /// The version that serves.
        by: u32,
    },
    /// The projection's version did not take over in time (it is still warming up beside
    /// the serving version).
    #[error(
        "projection `{projection}` did not take over before the timeout (it reached {reached})"
    )]
    NotServing {
        /// The projection (this version's name).
        projection: Arc<str>,
        /// The checkpoint it reached.
        reached: Position,
    },
    /// The projection did not reach the position in time.
    #[error("projection `{projection}` reached {reached}, not {target}, before the timeout")]
    Timeout {
        /// The projection.
        projection: Arc<str>,
        /// The position waited for.
        target: Position,
        /// Its checkpoint when the wait gave up.
        reached: Position,
    },
    /// The projection is not running (it failed, was shut down, or its task died).
    #[error("projection `{projection}` is not running")]
    Stopped {
        /// The projection.
        projection: Arc<str>,
        /// Why it stopped, if it failed.
        #[source]
        cause: Option<Arc<ProjectionError>>,
    },
    /// The runner's task ended without a result of its own (it panicked outside a handler, or
    /// its runtime shut it down).
    #[error("projection `{projection}`: the runner's task ended: {message}")]
    TaskEnded {
        /// The projection.
        projection: Arc<str>,
        /// What the task's end said.
        message: String,
    },
}

impl ProjectionError {
    /// Whether retrying may fix it: a transient store failure (a lost connection, a server
    /// restarting). Runners ride these out by themselves; the others stop them.
    pub fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Store { source, .. } => source.is_retryable(),
            _ => false,
        }
    }

    /// A handler's error on `event`.
    pub(crate) fn handler(
        projection: &Arc<str>,
        event: &RecordedEvent,
        source: SharedError,
    ) -> Self {
        ProjectionError::Handler {
            projection: Arc::clone(projection),
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            position: event.position,
            source,
        }
    }

    /// A handler's panic on `event`.
    pub(crate) fn panicked(projection: &Arc<str>, event: &RecordedEvent, message: String) -> Self {
        ProjectionError::HandlerPanicked {
            projection: Arc::clone(projection),
            stream: event.stream.clone(),
            version: event.version,
            event_type: event.event_type.clone(),
            position: event.position,
            message,
        }
    }
}

/// The message of a caught panic's payload (what `panic!` was given, when it was a string).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// How a handler (or a projection's `reset`) failed, as [`guarded`] caught it.
#[derive(Clone, Debug)]
pub enum HandlerFailure {
    /// It returned an error.
    Error(SharedError),
    /// It panicked, with this message.
    Panic(String),
}

impl HandlerFailure {
    /// The failure as the [`ProjectionError`] of `projection` on `event`.
    pub fn on(self, projection: &Arc<str>, event: &RecordedEvent) -> ProjectionError {
        match self {
            HandlerFailure::Error(source) => ProjectionError::handler(projection, event, source),
            HandlerFailure::Panic(message) => ProjectionError::panicked(projection, event, message),
        }
    }

    /// The failure as a shared error (a panic as its message).
    pub fn into_shared(self) -> SharedError {
        match self {
            HandlerFailure::Error(source) => source,
            HandlerFailure::Panic(message) => {
                SharedError::from(Box::<dyn std::error::Error + Send + Sync>::from(format!(
                    "panicked: {message}"
                )))
            }
        }
    }
}

/// Runs a handler's future, catching a panic: what every runner calls handlers through, so a
/// panicking handler becomes a typed error instead of ending the runner's task unseen.
pub async fn guarded<T>(
    handler: impl std::future::Future<Output = Result<T, crate::projection::HandlerError>>,
) -> Result<T, HandlerFailure> {
    use futures::FutureExt;
    match std::panic::AssertUnwindSafe(handler).catch_unwind().await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(HandlerFailure::Error(SharedError::from(error))),
        Err(payload) => Err(HandlerFailure::Panic(panic_message(&*payload))),
    }
}
