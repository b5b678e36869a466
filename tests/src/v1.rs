//! The wallet domain as version 1 of the application shipped it: amounts in whole euros, a
//! snapshot every 2 events in snapshot schema 1 (the default).
//!
//! Nothing of the current application uses it. The upgrade tests run it to write streams the
//! way the older code did (its event versions, payloads and snapshot encoding), then hand them
//! to the current [`crate::wallet`].

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// A wallet was opened (unchanged since).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "wallet.opened")]
pub struct WalletOpened {
    /// Who owns the wallet.
    pub owner: String,
}

/// Money was paid into the wallet, in whole euros.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "wallet.topped_up")]
pub struct ToppedUp {
    /// The amount, in whole euros.
    pub euros: i64,
}

/// A wallet as version 1 folded it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "wallet", events(WalletOpened, ToppedUp), snapshot_every = 2)]
pub struct Wallet {
    /// The owner, once the wallet is open.
    pub owner: Option<String>,
    /// The balance, in whole euros.
    pub balance: i64,
}

impl Apply<WalletOpened> for Wallet {
    fn apply(&mut self, e: &WalletOpened) {
        self.owner = Some(e.owner.clone());
    }
}

impl Apply<ToppedUp> for Wallet {
    fn apply(&mut self, e: &ToppedUp) {
        self.balance = self.balance.saturating_add(e.euros);
    }
}

/// Version 1 refused nothing it was asked: its commands are infallible.
pub type Never = std::convert::Infallible;

impl Wallet {
    /// Opens the wallet for `owner`.
    pub fn open(&self, owner: &str) -> Result<WalletOpened, Never> {
        Ok(WalletOpened {
            owner: owner.to_owned(),
        })
    }

    /// Pays `euros` into the wallet.
    pub fn top_up(&self, euros: i64) -> Result<ToppedUp, Never> {
        Ok(ToppedUp { euros })
    }
}
