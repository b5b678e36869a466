//! The account model: its events (one of them in two versions), and the aggregate they fold into.
//!
//! This file is what the derives are for: plain structs, a stored name on each event, the
//! upcast as a plain `From`, and one `Apply` per event. The decisions live in
//! [`commands`](super::commands), the read models in [`balances`](super::balances) and
//! [`statement`](super::statement).

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// An account was opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct AccountOpened {
    /// Who owns the account.
    pub owner: String,
}

/// The shape a deposit had in version 1 of the application: an amount in (floating-point)
/// currency units. Old streams still hold it; it is never written any more, only upcast on read.
#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 1)]
pub struct DepositedV1 {
    /// The amount in currency units, as a float (why version 2 exists).
    pub amount: f64,
}

/// Money was paid into the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
pub struct Deposited {
    /// The amount, in cents.
    pub amount_cents: i64,
}

/// The upcast from version 1: plain Rust, run whenever a version 1 deposit is read.
impl From<DepositedV1> for Deposited {
    fn from(v1: DepositedV1) -> Self {
        Self {
            amount_cents: (v1.amount * 100.0).round() as i64,
        }
    }
}

/// Money was taken out of the account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.withdrawn")]
pub struct Withdrawn {
    /// The amount, in cents.
    pub amount_cents: i64,
}

/// The account was closed: no money moves in or out any more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.closed")]
pub struct AccountClosed {}

/// A bank account: the state its events fold into. A snapshot is taken every 5 events.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, Deposited, Withdrawn, AccountClosed),
    snapshot_every = 5
)]
pub struct Account {
    /// The owner, once the account is opened.
    pub owner: Option<String>,
    /// The balance, in cents.
    pub balance_cents: i64,
    /// Whether the account is closed.
    pub closed: bool,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.owner = Some(e.owner.clone());
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance_cents += e.amount_cents;
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance_cents -= e.amount_cents;
    }
}

impl Apply<AccountClosed> for Account {
    fn apply(&mut self, _: &AccountClosed) {
        self.closed = true;
    }
}
