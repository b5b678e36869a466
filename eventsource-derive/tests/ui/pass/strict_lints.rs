//! The derives under a user's strictest lints: generated items are documented, allowed where
//! they must be (`clippy::panic` in const assertions), and trigger nothing else.
#![deny(missing_docs, unreachable_pub, unused, warnings, rust_2018_idioms, unsafe_code)]
#![deny(missing_debug_implementations)]
//! (crate docs)

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// Opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "strict.opened")]
pub struct Opened {
    /// Who.
    pub owner: String,
}

/// Deposited, version 1.
#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "strict.deposited")]
pub struct DepositedV1 {
    /// Amount.
    pub amount: i64,
}

/// Deposited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "strict.deposited", version = 2, previous = DepositedV1)]
pub struct Deposited {
    /// Amount in cents.
    pub cents: i64,
}

impl From<DepositedV1> for Deposited {
    fn from(v1: DepositedV1) -> Self {
        Deposited { cents: v1.amount }
    }
}

/// The aggregate.
#[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "strict", events(Opened, Deposited), snapshot_every = 10)]
pub struct Strict {
    /// Balance.
    pub cents: i64,
}

impl Apply<Opened> for Strict {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Deposited> for Strict {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents
    }
}

/// The projection.
#[derive(Debug, Default, Projection)]
#[projection(name = "stricts", events(Opened, Deposited))]
pub struct Stricts {
    /// Total.
    pub total: i64,
}

impl Handle<Opened> for Stricts {
    async fn handle(&mut self, _: Opened, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl Handle<Deposited> for Stricts {
    async fn handle(&mut self, e: Deposited, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.total += e.cents;
        Ok(())
    }
}

fn main() {}
