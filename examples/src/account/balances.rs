//! The `balances` projection: every account's current state, kept up to date from the log.
//!
//! It folds each account's events with the aggregate's own [`Apply`] impls, so the read model
//! and the aggregate cannot disagree about what an event means. (Most read models are shaped
//! differently from the aggregate: see [`statement`](super::statement).)

use std::collections::BTreeMap;
use std::sync::Arc;

use eventsource_core::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;

use super::model::{Account, AccountClosed, AccountOpened, Deposited, Withdrawn};

/// One account as the `balances` read model shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Balance {
    /// The account, folded from its events.
    #[serde(flatten)]
    pub account: Account,
    /// The last version of the account's stream folded in.
    pub version: Version,
}

/// The `balances` read model. Cloning it shares the data: the runner feeds one clone, queries
/// read another.
#[derive(Debug, Clone, Default, Projection)]
#[projection(
    name = "balances",
    reset = Self::clear,
    events(AccountOpened, Deposited, Withdrawn, AccountClosed)
)]
pub struct Balances {
    accounts: Arc<Mutex<BTreeMap<String, Balance>>>,
}

impl Balances {
    /// Every account, by account id.
    pub fn all(&self) -> BTreeMap<String, Balance> {
        self.accounts.lock().clone()
    }

    /// Forgets everything: the derive's `reset` hook, called before a rebuild replays the log.
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        self.accounts.lock().clear();
        Ok(())
    }
}

/// One impl for every event the account folds and the projection lists. Projections run at
/// least once per event, so an event at or below the version already folded in is a replay and
/// is skipped.
impl<E: Send + 'static> Handle<E> for Balances
where
    Account: Apply<E>,
    Self: ListsEvent<E>,
{
    async fn handle(&mut self, e: E, at: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        let mut accounts = self.accounts.lock();
        let row = accounts
            .entry(super::account_id(&at.stream).to_owned())
            .or_default();
        if at.version > row.version {
            Apply::<E>::apply(&mut row.account, &e);
            row.version = at.version;
        }
        Ok(())
    }
}
