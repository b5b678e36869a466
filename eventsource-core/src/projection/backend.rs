//! What a store supplies to the projection runner ([`RunnerBackend`]): whether this process
//! may run the projection now, the context a batch's handlers get, and how a batch becomes
//! durable. Everything else (reading, decoding, handlers, checkpoints, following live,
//! rebuilds, riding out faults) is the runner's, the same on every store.

use std::future::Future;

use crate::error::StoreError;
use crate::ids::Position;
use crate::store::{DeadLetterChange, EventStore};

/// Why a [`RunnerBackend`] call did not go through.
#[derive(Debug)]
#[non_exhaustive]
pub enum BackendError {
    /// The store failed; [`StoreError::is_retryable`] says whether the runner waits it out.
    Store(StoreError),
    /// Another runner holds the projection now (it took the lease over): this one stands by.
    LeaseLost,
}

impl From<StoreError> for BackendError {
    fn from(e: StoreError) -> Self {
        BackendError::Store(e)
    }
}

/// How a store makes a projection's batches durable, and whether this process may run the
/// projection. The runner ([`ProjectionRunner`](super::ProjectionRunner)) calls it; a store
/// crate implements it to run projections its own way (the PostgreSQL store: the read model
/// and the checkpoint in one transaction, fenced by a lease) without a loop of its own.
///
/// A batch: [`begin`](RunnerBackend::begin), the handlers (with the context it gave), then
/// [`commit`](RunnerBackend::commit) with the checkpoint the batch reached, or
/// [`abandon`](RunnerBackend::abandon) when a handler failed.
pub trait RunnerBackend: Send + 'static {
    /// What each handler call gets.
    type Context: Send;

    /// Whether a batch commits all or nothing (its handlers' writes with its checkpoint).
    /// When a handler fails, an atomic batch is abandoned (the checkpoint stays where the
    /// batch began, nothing of it stands); a batch that is not atomic keeps what its handlers
    /// did before the failed event and commits the checkpoint just before it.
    const ATOMIC: bool;

    /// Tries to take (or confirm) the right to run the projection `name`: its durable
    /// checkpoint when this process may run it now, `None` when another process does (the
    /// runner stands by and asks again after [`RunnerBackend::standby_poll`]). Called at the
    /// start and after every fault, so the runner always goes on from what is durable.
    fn lead(
        &mut self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Position>, BackendError>> + Send;

    /// Where the right to run can be lost at any moment (a lease whose session may end),
    /// a channel that is `true` while this process holds it and turns `false` the moment it
    /// is lost: the runner's status follows it at once, and an idle runner leads again.
    /// `None` (the default): the right is never lost.
    fn leadership(&self) -> Option<tokio::sync::watch::Receiver<bool>> {
        None
    }

    /// How long a runner that stands by waits before asking [`RunnerBackend::lead`] again.
    fn standby_poll(&self) -> std::time::Duration {
        std::time::Duration::from_millis(500)
    }

    /// Begins a batch: the context its handlers get.
    fn begin(&mut self) -> impl Future<Output = Result<Self::Context, BackendError>> + Send;

    /// Makes the batch durable with the checkpoint of `name` at `to`, and with `letters`,
    /// the changes to its dead letters the batch made (events it passed by, letters it
    /// resolved): never the checkpoint without them. A failed write of the letters is an
    /// error (the batch does not commit), never a skip.
    fn commit(
        &mut self,
        ctx: Self::Context,
        name: &str,
        to: Position,
        letters: &[DeadLetterChange],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Drops a batch that will not commit. Whether its context was still sound: `false`
    /// when it could not even be rolled back (its connection died), which makes the handler
    /// error that led here a transient fault.
    fn abandon(&mut self, ctx: Self::Context) -> impl Future<Output = bool> + Send;

    /// Gives up the right to run (the runner stops, or found that another process leads).
    fn step_down(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// Whether a handler's error is a transient fault of the store rather than the
    /// handler's own failure (the batch's own connection died under it): the runner then
    /// waits it out instead of stopping. The default: never.
    fn is_transient(&self, error: &(dyn std::error::Error + 'static)) -> bool {
        let _ = error;
        false
    }
}

/// The core's backend over any store: no lease (every process may run the projection; run
/// one runner per projection), the context `()`, and a batch made durable by saving the
/// checkpoint after its handlers ran (the batch's dead letters written just before it).
/// Handlers therefore run at least once per event.
#[derive(Clone, Debug)]
pub struct Checkpoints<S> {
    store: S,
}

impl<S: EventStore> Checkpoints<S> {
    /// The backend over `store`.
    pub fn new(store: S) -> Self {
        Self { store }
    }
}

impl<S: EventStore> RunnerBackend for Checkpoints<S> {
    type Context = ();
    const ATOMIC: bool = false;

    async fn lead(&mut self, name: &str) -> Result<Option<Position>, BackendError> {
        let saved = self.store.load_checkpoint(name).await?;
        Ok(Some(saved.unwrap_or(Position::ZERO)))
    }

    async fn begin(&mut self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn commit(
        &mut self,
        _: (),
        name: &str,
        to: Position,
        letters: &[DeadLetterChange],
    ) -> Result<(), BackendError> {
        // The letters first: a crash between the two writes handles the batch again, which
        // writes the same letters again (one more attempt each), and loses none.
        if !letters.is_empty() {
            self.store.write_dead_letters(name, letters).await?;
        }
        self.store.save_checkpoint(name, to).await?;
        Ok(())
    }

    async fn abandon(&mut self, _: ()) -> bool {
        true
    }
}
