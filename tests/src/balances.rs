//! The `wallet_balances` read model in memory, fed by the core `ProjectionRunner` on any
//! store.

use std::collections::BTreeMap;
use std::sync::Arc;

use eventsource_core::prelude::*;
use parking_lot::Mutex;

use crate::Balance;
use crate::wallet::{Paid, ToppedUp, WalletOpened};

/// Every wallet's balance, and how many events the read model has taken in. Cloning it shares
/// the data: the runner feeds one clone, the test reads another.
#[derive(Debug, Clone, Default, Projection)]
#[projection(
    name = "wallet_balances",
    events(WalletOpened, ToppedUp, Paid),
    reset = Self::clear
)]
pub struct Balances {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    wallets: BTreeMap<String, Balance>,
    taken_in: u64,
}

impl Balances {
    /// Every wallet, by wallet id.
    pub fn all(&self) -> BTreeMap<String, Balance> {
        self.inner.lock().wallets.clone()
    }

    /// How many events changed the read model since it was last cleared.
    pub fn taken_in(&self) -> u64 {
        self.inner.lock().taken_in
    }

    /// Forgets everything, before a rebuild replays the log.
    fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        *self.inner.lock() = Inner::default();
        Ok(())
    }

    /// Applies `change` to the wallet of `at`'s stream, unless the read model reflects that
    /// version already: the core runner hands an event over at least once.
    fn update(&self, at: &RecordedEvent, change: impl FnOnce(&mut Balance)) {
        let mut inner = self.inner.lock();
        let wallet = inner
            .wallets
            .entry(crate::wallet_id(&at.stream))
            .or_insert_with(|| Balance {
                owner: String::new(),
                cents: 0,
                version: 0,
            });
        if at.version.get() > wallet.version {
            change(wallet);
            wallet.version = at.version.get();
            inner.taken_in += 1;
        }
    }
}

impl Handle<WalletOpened> for Balances {
    async fn handle(
        &mut self,
        e: WalletOpened,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |w| w.owner = e.owner);
        Ok(())
    }
}

impl Handle<ToppedUp> for Balances {
    async fn handle(
        &mut self,
        e: ToppedUp,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |w| w.cents = w.cents.saturating_add(e.cents));
        Ok(())
    }
}

impl Handle<Paid> for Balances {
    async fn handle(
        &mut self,
        e: Paid,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |w| w.cents = w.cents.saturating_sub(e.cents));
        Ok(())
    }
}
