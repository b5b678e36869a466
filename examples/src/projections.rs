//! Starting the projections whose read models live in this process's memory.

use eventsource_core::{AnyStore, Projection, ProjectionError, ProjectionHandle, ProjectionRunner};

/// Starts a projection whose read model lives in memory. Such a read model is empty at every
/// start, so it is rebuilt from the start of the log rather than resumed from a checkpoint an
/// earlier run saved (a read model kept in the database would resume instead). Returns once
/// the read model has caught up with the log; it then follows it live.
///
/// A handler that fails on a stored event does not fail the start: that read model cannot
/// pass the event, but the rest of the service can run. The projection is started anyway,
/// meets the event again and stops on it, with the error in its status
/// ([`ProjectionHandle::status`]), where the read model's queries find it. Only the store
/// failing ([`ProjectionError::Store`]) fails the start.
pub async fn start_in_memory<P>(
    store: &AnyStore,
    projection: P,
) -> Result<ProjectionHandle, ProjectionError>
where
    P: Projection<Context = ()>,
{
    let mut runner = ProjectionRunner::new(store.clone(), projection);
    match runner.rebuild().await {
        Ok(_) => {}
        Err(error @ ProjectionError::Store { .. }) => return Err(error),
        // Whatever the read model met in the log (a handler's error, say).
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
