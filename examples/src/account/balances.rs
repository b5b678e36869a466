//! The `balances` projection: every account's current balance, kept up to date from the log.

use std::collections::BTreeMap;
use std::sync::Arc;

use eventsource_core::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;

use super::model::{AccountClosed, AccountOpened, Deposited, Withdrawn};

/// One account as the `balances` read model shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Balance {
    /// The owner.
    pub owner: String,
    /// The balance, in cents.
    pub balance_cents: i64,
    /// Whether the account is closed.
    pub closed: bool,
    /// The last version of the account's stream folded in.
    pub version: Version,
}

/// The `balances` read model. Cloning it shares the data: the runner feeds one clone, queries
/// read another.
#[derive(Debug, Clone, Default, Projection)]
#[projection(
    name = "balances",
    events(AccountOpened, Deposited, Withdrawn, AccountClosed)
)]
pub struct Balances {
    accounts: Arc<Mutex<BTreeMap<String, Balance>>>,
}

impl Balances {
    /// Every account's balance, by account id.
    pub fn all(&self) -> BTreeMap<String, Balance> {
        self.accounts.lock().clone()
    }

    /// One account's balance, if it has any event.
    pub fn get(&self, account: &str) -> Option<Balance> {
        self.accounts.lock().get(account).cloned()
    }

    /// Forgets everything, before a rebuild from the start of the log.
    pub fn clear(&self) {
        self.accounts.lock().clear();
    }

    /// Folds one event into its account's row. Projections run at least once per event, so an
    /// event at or below the version already folded in is a replay and is skipped.
    fn update(&self, envelope: &RecordedEvent, change: impl FnOnce(&mut Balance)) {
        let mut accounts = self.accounts.lock();
        let row = accounts
            .entry(super::account_id(&envelope.stream).to_owned())
            .or_default();
        if envelope.version > row.version {
            change(row);
            row.version = envelope.version;
        }
    }
}

impl Handle<AccountOpened> for Balances {
    async fn handle(
        &mut self,
        e: AccountOpened,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.owner = e.owner);
        Ok(())
    }
}

impl Handle<Deposited> for Balances {
    async fn handle(
        &mut self,
        e: Deposited,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.balance_cents += e.amount_cents);
        Ok(())
    }
}

impl Handle<Withdrawn> for Balances {
    async fn handle(
        &mut self,
        e: Withdrawn,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.balance_cents -= e.amount_cents);
        Ok(())
    }
}

impl Handle<AccountClosed> for Balances {
    async fn handle(
        &mut self,
        _: AccountClosed,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.closed = true);
        Ok(())
    }
}
