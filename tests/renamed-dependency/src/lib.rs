//! A user crate that depends on `eventsource-core` under another name
//! (`es = { package = "eventsource-core" }`) and gives no `crate = "..."`: every derive reads
//! the rename from this crate's Cargo.toml.

use es::prelude::*;
use serde::{Deserialize, Serialize};

/// Version 1 of a deposit.
#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "renamed.deposited")]
pub struct DepositedV1 {
    /// Whole units.
    pub amount: i64,
}

/// A deposit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "renamed.deposited", version = 2, previous = DepositedV1)]
pub struct Deposited {
    /// Cents.
    pub cents: i64,
}

impl From<DepositedV1> for Deposited {
    fn from(v1: DepositedV1) -> Self {
        Deposited {
            cents: v1.amount * 100,
        }
    }
}

/// An account.
#[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "renamed", events(Deposited), snapshot_every = 10)]
pub struct Account {
    /// Cents.
    pub cents: i64,
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
    }
}

/// A projection.
#[derive(Debug, Default, Projection)]
#[projection(name = "renamed_totals", events(Deposited))]
pub struct Totals {
    /// Cents.
    pub cents: i64,
}

impl Handle<Deposited> for Totals {
    async fn handle(
        &mut self,
        e: Deposited,
        _: &RecordedEvent,
        (): &mut (),
    ) -> Result<(), HandlerError> {
        self.cents += e.cents;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use es::EventSet;

    use super::*;

    #[test]
    fn the_derives_work_through_the_renamed_dependency() {
        let event = AccountEvent::decode("renamed.deposited", 1, br#"{"amount":2}"#).unwrap();
        let mut account = Account::default();
        account.apply_event(&event);
        assert_eq!(account.cents, 200);
        assert_eq!(Totals::event_types(), Some(&["renamed.deposited"][..]));
        assert_eq!(Account::stream_id("1").as_str(), "renamed-1");
    }
}
