//! A prepaid wallet as the application ships it now: amounts in cents, a snapshot every 3
//! events in snapshot schema 2.
//!
//! Version 1 of the application ([`crate::v1`]) counted whole euros, in its top-ups and in its
//! state. Its top-ups are still read: [`ToppedUpV1`] decodes them and [`ToppedUp`] converts
//! them. Its snapshots hold a balance in euros under the field that now holds cents, so they
//! would decode, and be misread by a factor of 100: the snapshot schema went from 1 to 2, and
//! the repository never decodes them.

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// A wallet was opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "wallet.opened")]
pub struct WalletOpened {
    /// Who owns the wallet.
    pub owner: String,
}

/// A top-up as version 1 stored it, in whole euros. Never written any more: read from old
/// streams and upcast into [`ToppedUp`].
#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "wallet.topped_up", version = 1)]
pub struct ToppedUpV1 {
    /// The amount, in whole euros.
    pub euros: i64,
}

/// Money was paid into the wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "wallet.topped_up", version = 2, previous = ToppedUpV1)]
pub struct ToppedUp {
    /// The amount, in cents.
    pub cents: i64,
}

/// A version 1 top-up too large to count in cents: decoding it fails, naming the event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{euros} euros do not fit in an amount of cents")]
pub struct TooLarge {
    /// The stored amount.
    pub euros: i64,
}

/// The upcast from version 1: whole euros become cents.
impl TryFrom<ToppedUpV1> for ToppedUp {
    type Error = TooLarge;

    fn try_from(v1: ToppedUpV1) -> Result<Self, TooLarge> {
        let cents = v1
            .euros
            .checked_mul(100)
            .ok_or(TooLarge { euros: v1.euros })?;
        Ok(Self { cents })
    }
}

/// Money was paid out of the wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "wallet.paid")]
pub struct Paid {
    /// The amount, in cents.
    pub cents: i64,
    /// Who was paid.
    pub payee: String,
}

/// A wallet: the state its events fold into.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "wallet",
    events(WalletOpened, ToppedUp, Paid),
    snapshot_every = 3,
    snapshot_version = 2
)]
pub struct Wallet {
    /// The owner, once the wallet is open.
    pub owner: Option<String>,
    /// The balance, in cents (in version 1: whole euros, hence snapshot schema 2).
    pub balance: i64,
}

impl Apply<WalletOpened> for Wallet {
    fn apply(&mut self, e: &WalletOpened) {
        self.owner = Some(e.owner.clone());
    }
}

impl Apply<ToppedUp> for Wallet {
    fn apply(&mut self, e: &ToppedUp) {
        self.balance = self.balance.saturating_add(e.cents);
    }
}

impl Apply<Paid> for Wallet {
    fn apply(&mut self, e: &Paid) {
        self.balance = self.balance.saturating_sub(e.cents);
    }
}

/// Why a wallet refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalletError {
    /// The wallet is open already.
    #[error("the wallet is open already")]
    AlreadyOpen,
    /// The wallet has not been opened.
    #[error("the wallet is not open")]
    NotOpen,
    /// Amounts are positive.
    #[error("an amount must be positive, not {0}")]
    NotPositive(i64),
    /// The balance does not cover the payment.
    #[error("a balance of {balance} cents does not cover {requested}")]
    InsufficientFunds {
        /// The balance, in cents.
        balance: i64,
        /// The amount asked for, in cents.
        requested: i64,
    },
}

impl Wallet {
    /// Opens the wallet for `owner`.
    pub fn open(&self, owner: &str) -> Result<WalletOpened, WalletError> {
        match self.owner {
            Some(_) => Err(WalletError::AlreadyOpen),
            None => Ok(WalletOpened {
                owner: owner.to_owned(),
            }),
        }
    }

    /// Pays `cents` into the wallet.
    pub fn top_up(&self, cents: i64) -> Result<ToppedUp, WalletError> {
        self.check_open()?;
        check_positive(cents)?;
        Ok(ToppedUp { cents })
    }

    /// Pays `cents` out of the wallet to `payee`.
    pub fn pay(&self, cents: i64, payee: &str) -> Result<Paid, WalletError> {
        self.check_open()?;
        check_positive(cents)?;
        if cents > self.balance {
            return Err(WalletError::InsufficientFunds {
                balance: self.balance,
                requested: cents,
            });
        }
        Ok(Paid {
            cents,
            payee: payee.to_owned(),
        })
    }

    fn check_open(&self) -> Result<(), WalletError> {
        self.owner.as_ref().map(drop).ok_or(WalletError::NotOpen)
    }
}

fn check_positive(cents: i64) -> Result<(), WalletError> {
    if cents > 0 {
        Ok(())
    } else {
        Err(WalletError::NotPositive(cents))
    }
}

/// A transfer of `cents` from one wallet to another: a payment out of `from` to the owner of
/// `to`, and a top-up of `to`. Run it with `Repository::execute_many` over both wallets, so
/// both events commit or neither does.
pub fn transfer(from: &Wallet, to: &Wallet, cents: i64) -> Result<[WalletEvent; 2], WalletError> {
    let payee = to.owner.as_deref().ok_or(WalletError::NotOpen)?;
    let paid = from.pay(cents, payee)?;
    let topped_up = to.top_up(cents)?;
    Ok([paid.into(), topped_up.into()])
}
