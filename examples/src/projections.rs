//! Starting the projections whose read models live in this process's memory.

use eventsource_core::projection::{FailurePolicy, OnFailure};
use eventsource_core::{AnyStore, Projection, ProjectionError, ProjectionHandle, ProjectionRunner};

/// Starts a projection whose read model lives in memory. Such a read model is empty at every
/// start, so it is rebuilt from the start of the log rather than resumed from a checkpoint an
/// earlier run saved (a read model kept in the database would resume instead). Returns once
/// the read model has caught up with the log; it then follows it live.
///
/// The rebuild is such a read model's normal start, so it runs under the same failure policy
/// as the live projection: [`OnFailure::ParkStream`], both ways. An event its handler fails
/// on (one that cannot be decoded, or whose amounts the read model refuses) neither stops
/// the start nor the projection: it is written to the projection's dead letters
/// ([`EventStore::dead_letters`](eventsource_core::EventStore::dead_letters)), with every
/// later event of its stream (parked, so that stream's events are never applied out of
/// order), while the other streams go on. Once the handler is fixed, the letters are retried
/// through the handle ([`ProjectionHandle::retry_dead_letters`]), or discarded. Each start
/// replays the log and meets such an event again: its letter stays pending, one attempt more.
///
/// What still stops the projection is what no policy passes by: a handler's panic (the read
/// model may be half-updated), or a store failure that retrying cannot fix. A panic during
/// the start does not fail it: the projection is started anyway, meets the event again and
/// stops on it, with the error in its status ([`ProjectionHandle::status`]), where the read
/// model's queries find it. Only the store failing ([`ProjectionError::Store`]) fails the
/// start.
pub async fn start_in_memory<P>(
    store: &AnyStore,
    projection: P,
) -> Result<ProjectionHandle, ProjectionError>
where
    P: Projection<Context = ()>,
{
    let policy = FailurePolicy::default()
        .live(OnFailure::ParkStream)
        .rebuild(OnFailure::ParkStream);
    let mut runner = ProjectionRunner::new(store.clone(), projection).on_failure(policy);
    match runner.rebuild().await {
        Ok(_) => {}
        Err(error @ ProjectionError::Store { .. }) => return Err(error),
        // Whatever the read model met in the log that the policy does not pass by (a
        // handler's panic, say).
        Err(error) => {
            tracing::error!(
                projection = P::NAME,
                error = %crate::errors::error_chain(&error),
                "read model stopped on a stored event"
            );
        }
    }
    Ok(runner.spawn())
}
