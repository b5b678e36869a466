//! Starting the projections whose read models live in this process's memory.

use eventsource_core::{AnyStore, Projection, ProjectionError, ProjectionHandle, ProjectionRunner};

/// Starts a projection whose read model lives in memory. Such a read model is empty at every
/// start, so it is rebuilt from the start of the log rather than resumed from a checkpoint an
/// earlier run saved (a read model kept in the database would resume instead). Returns once
/// the read model has caught up with the log; it then follows it live.
pub async fn start_in_memory<P>(
    store: &AnyStore,
    projection: P,
) -> Result<ProjectionHandle, ProjectionError>
where
    P: Projection<Context = ()>,
{
    let mut runner = ProjectionRunner::new(store.clone(), projection);
    runner.rebuild().await?;
    Ok(runner.spawn())
}
