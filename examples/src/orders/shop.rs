//! The shop: the order repository and the two read models, behind the operations the HTTP
//! service (and the walkthrough) call, their dead letters included. Nothing here knows about
//! HTTP.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::NaiveDate;
use eventsource_core::prelude::*;
use eventsource_core::projection::{DeadLetterSelect, Retried};
use eventsource_core::store::{DeadLetter, DeadLetterQuery};
use eventsource_core::{
    CommandOptions, EventId, IntoEvents, Loaded, ProjectionError, ProjectionHandle, StoreError,
};

use super::commands::OrderError;
use super::model::{Order, OrderEvent};
use super::read_models::{Changes, OrderSummary, OrdersByCustomer, RevenuePerDay};
use crate::projections::start_in_memory;

/// A read model's answer, with the position it reflects: every event up to `position` is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOf<T> {
    /// The checkpoint the read model had reached when it was read.
    pub position: Position,
    /// The answer.
    pub value: T,
}

/// One of the shop's read models, by the name its projection runs under (its checkpoint's
/// and its dead letters' key): `orders_by_customer` or `revenue_per_day`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadModel {
    /// [`OrdersByCustomer`].
    OrdersByCustomer,
    /// [`RevenuePerDay`].
    RevenuePerDay,
}

impl ReadModel {
    /// Every read model of the shop.
    pub const ALL: [ReadModel; 2] = [ReadModel::OrdersByCustomer, ReadModel::RevenuePerDay];

    /// Its name: its projection's [`Projection::NAME`].
    pub fn name(self) -> &'static str {
        match self {
            ReadModel::OrdersByCustomer => OrdersByCustomer::NAME,
            ReadModel::RevenuePerDay => RevenuePerDay::NAME,
        }
    }
}

impl fmt::Display for ReadModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not one of the shop's read models.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the shop has no read model `{0}`: it has `orders_by_customer` and `revenue_per_day`")]
pub struct UnknownReadModel(pub String);

impl FromStr for ReadModel {
    type Err = UnknownReadModel;

    fn from_str(name: &str) -> Result<Self, UnknownReadModel> {
        ReadModel::ALL
            .into_iter()
            .find(|model| model.name() == name)
            .ok_or_else(|| UnknownReadModel(name.to_owned()))
    }
}

/// The running shop: commands go to the orders' streams, queries to the read models.
pub struct Shop {
    store: AnyStore,
    orders: Repository<Order, AnyStore>,
    by_customer: OrdersByCustomer,
    revenue: RevenuePerDay,
    by_customer_runner: ProjectionHandle,
    revenue_runner: ProjectionHandle,
    changes: Changes,
}

impl std::fmt::Debug for Shop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shop")
            .field("by_customer", &self.by_customer_runner)
            .field("revenue", &self.revenue_runner)
            .finish_non_exhaustive()
    }
}

impl Shop {
    /// Opens the shop on `store`: builds both read models from the log, then keeps them
    /// following it. An event a read model fails on is parked in its dead letters, with the
    /// later events of its stream, and the read model goes on with the others (see
    /// [`crate::projections::start_in_memory`]): [`Shop::dead_letters`] lists them,
    /// [`Shop::retry_dead_letters`] retries them once fixed. A read model that stops (a
    /// handler's panic, a store failure) says why in its queries; the shop opens anyway.
    pub async fn start(store: AnyStore) -> Result<Self, ProjectionError> {
        let changes = Changes::new(1024);
        let by_customer = OrdersByCustomer::new(changes.clone());
        let revenue = RevenuePerDay::new(changes.clone());
        Ok(Self {
            // A long-running service: orders it worked on lately are kept in memory, so a
            // command on one is a single append (another process's write is met as a
            // conflict and folded in).
            orders: Repository::new(store.clone()).with_cache(10_000),
            by_customer_runner: start_in_memory(&store, by_customer.clone()).await?,
            revenue_runner: start_in_memory(&store, revenue.clone()).await?,
            store,
            by_customer,
            revenue,
            changes,
        })
    }

    /// Runs a command on order `id`: load, decide, append; on a conflict, reload and decide
    /// again. The [`Commit`] says which version and global position it reached.
    pub async fn execute<D, F>(
        &self,
        id: &str,
        options: CommandOptions,
        decide: F,
    ) -> Result<Commit, CommandError<OrderError>>
    where
        F: FnMut(&Order) -> Result<D, OrderError> + Send,
        D: IntoEvents<OrderEvent>,
    {
        self.orders
            .execute_with(id, options, decide)
            .await
            .map(|executed| executed.commit)
    }

    /// The order `id` as its events fold today (not a read model: always up to date).
    pub async fn order(&self, id: &str) -> Result<Loaded<Order>, eventsource_core::Error> {
        self.orders.load(id).await
    }

    /// The first event a command run with `idempotency_key` committed, if any: its id is
    /// derived from the key (see [`CommandOptions::idempotency_key`]).
    pub async fn first_event_of(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<RecordedEvent>, StoreError> {
        self.store
            .event_by_id(EventId::derived(idempotency_key, 0))
            .await
    }

    /// The orders of `customer`, once the read model has reached `after` (waiting at most
    /// `within`). An order whose stream has a pending dead letter shows the row before that
    /// event. Fails with [`ProjectionError::Stopped`] when the read model has stopped,
    /// whatever `after` is: what it holds is no longer the log's.
    pub async fn orders_of(
        &self,
        customer: &str,
        after: Position,
        within: Duration,
    ) -> Result<AsOf<Vec<OrderSummary>>, ProjectionError> {
        let runner = &self.by_customer_runner;
        let position = running(OrdersByCustomer::NAME, runner, after, within).await?;
        Ok(AsOf {
            position,
            value: self.by_customer.of(customer),
        })
    }

    /// The revenue per day, once the read model has reached `after` (waiting at most
    /// `within`). Fails like [`Shop::orders_of`] when the read model has stopped.
    pub async fn revenue_per_day(
        &self,
        after: Position,
        within: Duration,
    ) -> Result<AsOf<BTreeMap<NaiveDate, i128>>, ProjectionError> {
        let position = running(RevenuePerDay::NAME, &self.revenue_runner, after, within).await?;
        Ok(AsOf {
            position,
            value: self.revenue.by_day(),
        })
    }

    /// The pending dead letters of `read_model`, in log order, with their events and errors,
    /// as the store keeps them (durable: a restart finds them again).
    pub async fn dead_letters(&self, read_model: ReadModel) -> Result<Vec<DeadLetter>, StoreError> {
        let mut letters = Vec::new();
        let mut query = DeadLetterQuery::pending();
        loop {
            let page = self.store.dead_letters(read_model.name(), &query).await?;
            let full = page.len() >= query.limit;
            let Some(last) = page.last().map(|letter| letter.event.position) else {
                break;
            };
            letters.extend(page);
            if !full {
                break;
            }
            query = query.after(last);
        }
        Ok(letters)
    }

    /// Hands every pending dead letter of `read_model` to its handler again (after a fix),
    /// through its runner: each stream's letters in order, up to its first that fails again.
    /// Says which were handled and which failed.
    pub async fn retry_dead_letters(
        &self,
        read_model: ReadModel,
    ) -> Result<Retried, ProjectionError> {
        self.runner(read_model)
            .retry_dead_letters(DeadLetterSelect::All)
            .await
    }

    /// Resolves every pending dead letter of `read_model` as discarded: the read model will
    /// never reflect those events (the letters are kept, resolved). Returns how many.
    pub async fn discard_dead_letters(
        &self,
        read_model: ReadModel,
    ) -> Result<usize, ProjectionError> {
        self.runner(read_model)
            .discard_dead_letters(DeadLetterSelect::All)
            .await
    }

    /// Deploys the fix for line and order totals that overflow
    /// ([`OrdersByCustomer::saturate_totals`]): from now on they are clamped and flagged
    /// instead of failing. Retry the dead letters of [`ReadModel::OrdersByCustomer`] to
    /// apply the events that failed before.
    pub fn saturate_totals(&self) {
        self.by_customer.saturate_totals();
    }

    /// The store the shop runs on.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The runner of `read_model`.
    fn runner(&self, read_model: ReadModel) -> &ProjectionHandle {
        match read_model {
            ReadModel::OrdersByCustomer => &self.by_customer_runner,
            ReadModel::RevenuePerDay => &self.revenue_runner,
        }
    }

    /// One future per read model, resolving once it has stopped, with its name and why (at
    /// once for one already stopped; never while it runs, dead letters or not): a read model
    /// that stopped publishes no more changes, and a subscriber is told so.
    pub fn stops(&self) -> [impl Future<Output = (&'static str, ProjectionError)> + Send + '_; 2] {
        [
            stopped(OrdersByCustomer::NAME, &self.by_customer_runner),
            stopped(RevenuePerDay::NAME, &self.revenue_runner),
        ]
    }

    /// The channel every read-model change is published on.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Stops both projections, their checkpoints saved.
    pub async fn shutdown(self) -> Result<(), ProjectionError> {
        self.by_customer_runner.shutdown().await?;
        self.revenue_runner.shutdown().await
    }
}

/// Waits until the projection `name` run by `runner` has reached `after` (at most `within`),
/// and checks that it is still running: a wait on a position it had already reached would
/// otherwise succeed on a stopped one.
async fn running(
    name: &'static str,
    runner: &ProjectionHandle,
    after: Position,
    within: Duration,
) -> Result<Position, ProjectionError> {
    let position = runner.wait_for(after, within).await?;
    let status = runner.status();
    if status.stopped {
        return Err(ProjectionError::Stopped {
            projection: name.into(),
            cause: status.failed,
        });
    }
    Ok(position.checkpoint)
}

/// Resolves once the projection `name` run by `runner` has stopped, with why.
async fn stopped(name: &'static str, runner: &ProjectionHandle) -> (&'static str, ProjectionError) {
    // A position no checkpoint reaches: the wait ends when the projection stops, only.
    let never = Position::new(u64::MAX, u64::MAX);
    let error = match runner.wait_for(never, Duration::MAX).await {
        Err(error) => error,
        Ok(_) => ProjectionError::Stopped {
            projection: name.into(),
            cause: None,
        },
    };
    (name, error)
}
