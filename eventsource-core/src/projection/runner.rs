//! [`ProjectionRunner`]: runs a projection against a store through the one loop
//! ([`engine`](super::engine)), with the store's [`RunnerBackend`] (the core's
//! [`Checkpoints`] by default).

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::backend::{Checkpoints, RunnerBackend};
use super::engine::Engine;
use super::handle::{ProjectionHandle, ProjectionStatus};
use super::{FailurePolicy, Projection, ProjectionError};
use crate::ids::Position;
use crate::store::EventStore;

/// Runs a [`Projection`] against a store: reads from its checkpoint in batches, calls its
/// handlers, makes every batch durable with its checkpoint, and follows the log live once
/// caught up. While it catches up (a batch came back full), it reads the next batches as one
/// stream while it handles the current one, so it holds at most three batches.
///
/// Transient faults of the store (a lost connection, a server restarting) never stop it: it
/// pauses with bounded backoff ([`ProjectionStatus::retrying`] says why) and goes on from
/// the durable checkpoint. It stops only on what retrying cannot fix: a handler's failure or
/// panic, which names the event, or a store error that is not transient.
///
/// With the core's backend ([`Checkpoints`], what [`ProjectionRunner::new`] uses), handlers
/// run at least once per event and get `()`; a store crate runs its own kind of batches
/// through [`ProjectionRunner::with_backend`] (PostgreSQL: exactly once, in the read model's
/// transaction).
///
/// ```
/// # use eventsource_core::*;
/// # async fn doc<P: Projection<Context = ()>>(store: InMemoryStore, projection: P, commit: Commit)
/// # -> Result<(), ProjectionError> {
/// let handle = ProjectionRunner::new(store, projection).batch_size(500).spawn();
/// handle.wait_for(commit.position, std::time::Duration::from_secs(5)).await?; // read your writes
/// handle.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct ProjectionRunner<P, S, B = Checkpoints<S>> {
    engine: Engine<P, S, B>,
}

impl<P, S, B> std::fmt::Debug for ProjectionRunner<P, S, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &std::any::type_name::<P>())
            .field("batch_size", &self.engine.batch_size)
            .finish_non_exhaustive()
    }
}

impl<P: Projection<Context = ()>, S: EventStore> ProjectionRunner<P, S> {
    /// A runner for `projection` over `store` with the core's backend (no lease, handlers at
    /// least once), with batches of 256 events.
    pub fn new(store: S, projection: P) -> Self {
        let backend = Checkpoints::new(store.clone());
        Self::with_backend(store, projection, backend)
    }
}

impl<P, S, B> ProjectionRunner<P, S, B>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
    /// A runner for `projection` over `store` whose batches `backend` makes durable, with
    /// batches of 256 events.
    pub fn with_backend(store: S, projection: P, backend: B) -> Self {
        Self {
            engine: Engine::new(store, projection, backend),
        }
    }

    /// Sets how many events one batch (one read, one durable commit) holds. The runner holds
    /// at most three batches in memory (one handled, two read ahead).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.engine.batch_size = n.max(1);
        self
    }

    /// Runs the projection under `name` instead of [`Projection::NAME`]: its checkpoint,
    /// lease and dead letters are keyed by it, so one projection type runs several times on
    /// one store (one instance per tenant, say, each with its [`filter`](Self::filter)).
    /// The name must be within the store's limits for names (see
    /// [`input`](crate::store::input)): 1 to 2,048 bytes, no NUL.
    pub fn named(mut self, name: &str) -> Result<Self, crate::error::StoreError> {
        let key = crate::store::version_key(name, self.engine.version);
        crate::store::input::check_checkpoint(name)?;
        crate::store::input::check_checkpoint(&key)?;
        self.engine.base = Arc::from(name);
        self.engine.name = Arc::from(key);
        Ok(self)
    }

    /// Runs `version` of the projection (1 unless set): a blue/green rebuild. Each version
    /// has its own checkpoint, lease and dead letters, under
    /// [`version_key`](crate::store::version_key) (`name@v2`...), and writes its own read
    /// model (the projection value given to this runner: its own tables, say). The store
    /// keeps which version serves ([`EventStore::projection_versions`]); readers ask it, or
    /// follow [`ProjectionStatus::serving`].
    ///
    /// A version newer than the serving one *warms up*: it catches up in the background,
    /// reading the log only up to the serving version's checkpoint, so every event it
    /// handles meanwhile is one the serving version handled ([`is_replay`](super::is_replay)
    /// says so to its handlers, which send no email twice). Once it has caught up, it seals
    /// the serving version where that stands (the store refuses to save its checkpoint from
    /// then on, so its read model stays as it is), catches up to that position, and takes
    /// over ([`EventStore::switch_version`]): readers never see a model that has not caught
    /// up, nor a checkpoint that goes back. The old version's runner stops
    /// ([`ProjectionStatus::superseded_by`]); the new one follows the log live. A warm-up
    /// that is interrupted resumes from its own checkpoint; a runner stopped between the
    /// seal and the takeover gives the switch up, and the old version serves on. A version
    /// older than the serving one stops at once.
    ///
    /// ```
    /// # use eventsource_core::*;
    /// # async fn doc<P: Projection<Context = ()>>(store: InMemoryStore, v2: P) -> Result<(), Box<dyn std::error::Error>> {
    /// let v2 = ProjectionRunner::new(store.clone(), v2).version(2)?.spawn();
    /// v2.wait_serving(std::time::Duration::from_secs(60)).await?; // version 1 stopped
    /// # Ok(()) }
    /// ```
    pub fn version(mut self, version: u32) -> Result<Self, crate::error::StoreError> {
        if version == 0 || version > crate::store::versions::MAX_VERSION {
            return Err(crate::error::StoreError::InvalidRequest(format!(
                "a projection's version runs from 1 to {}",
                crate::store::versions::MAX_VERSION
            )));
        }
        let key = crate::store::version_key(&self.engine.base, version);
        crate::store::input::check_checkpoint(&key)?;
        self.engine.version = version;
        self.engine.name = Arc::from(key);
        Ok(self)
    }

    /// Hands the projection only the events `keep` keeps (beside its types): an instance's
    /// share of the log, such as the streams of one tenant. The checkpoint passes the others.
    pub fn filter(
        mut self,
        keep: impl Fn(&crate::envelope::RecordedEvent) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.engine.filter = Some(Arc::new(keep));
        self
    }

    /// What the runner does when a handler fails on an event (see [`FailurePolicy`]; by
    /// default it stops, live and rebuilding).
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.engine.policy = policy;
        self
    }

    /// The name the projection runs under.
    pub fn name(&self) -> &str {
        &self.engine.name
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.engine.projection
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.engine.backend
    }

    /// The backend, to set it up.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.engine.backend
    }

    /// Catches up from the durable checkpoint to the current end of the log, then returns
    /// the checkpoint reached. Does not follow live. Rides out transient faults as the
    /// spawned runner does (bound it with a timeout if it must give up); a runner that does
    /// not lead (another process holds the projection) waits until it does.
    pub async fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        self.engine.catch_up().await
    }

    /// Clears the read model and the checkpoint, then catches up from zero.
    pub async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        self.engine.rebuild().await
    }

    /// Starts the projection on a tokio task.
    pub fn spawn(self) -> ProjectionHandle {
        let (control_tx, control_rx) = mpsc::channel(4);
        let (status_tx, status_rx) = watch::channel(ProjectionStatus::default());
        let name = Arc::clone(&self.engine.name);
        let span = tracing::info_span!("projection", projection = %name);
        let task = tokio::spawn(run(self.engine, control_rx, status_tx).instrument(span));
        ProjectionHandle::from_parts(name, status_rx, control_tx, task)
    }
}

/// The spawned task: the loop, and its end in the status whatever it was (a panic outside a
/// handler included: the task never ends unseen).
async fn run<P, S, B>(
    engine: Engine<P, S, B>,
    control: mpsc::Receiver<super::handle::Control>,
    status: watch::Sender<ProjectionStatus>,
) -> Result<(), ProjectionError>
where
    P: Projection,
    S: EventStore,
    B: RunnerBackend<Context = P::Context>,
{
    let name = Arc::clone(&engine.name);
    let ran = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        engine.run(control, status.clone()),
    ))
    .await;
    let result = ran.unwrap_or_else(|payload| {
        Err(ProjectionError::TaskEnded {
            projection: name,
            message: format!("panicked: {}", super::error::panic_message(&*payload)),
        })
    });
    status.send_modify(|s| {
        s.stopped = true;
        s.leader = false;
        if let Err(e) = &result {
            s.failed = Some(Arc::new(e.clone()));
        }
    });
    if let Err(error) = &result {
        tracing::error!(%error, "projection stopped");
    }
    result
}
