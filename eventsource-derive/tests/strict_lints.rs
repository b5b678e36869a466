//! A user crate under strict lints (rustc's and clippy's pedantic set, denied) uses every
//! derive: the generated code is documented and triggers nothing. `cargo clippy --all-targets
//! -- -D warnings` checks this file.
#![deny(
    missing_docs,
    unreachable_pub,
    unused,
    rust_2018_idioms,
    missing_debug_implementations
)]
#![deny(clippy::all, clippy::pedantic)]

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// Version 1.
#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "strict.deposited")]
pub struct DepositedV1 {
    /// Amount.
    pub amount: i64,
}

/// Version 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(name = "strict.deposited", version = 2, previous = DepositedV1, alias = "strict.credited")]
pub struct Deposited {
    /// Cents.
    pub cents: i64,
}

impl From<DepositedV1> for Deposited {
    fn from(v1: DepositedV1) -> Self {
        Deposited { cents: v1.amount }
    }
}

/// Renamed, with a raw upcaster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[event(name = "strict.renamed", version = 2, upcast_json = renamed_v1)]
pub struct Renamed {
    /// Title.
    pub title: String,
}

fn renamed_v1(_: u32, json: serde_json::Value) -> Result<serde_json::Value, String> {
    if json.is_object() {
        Ok(json)
    } else {
        Err(format!("expected an object, found {json}"))
    }
}

/// The aggregate.
#[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "strict",
    events(Deposited, Renamed),
    snapshot_every = 10,
    snapshot_version = 2
)]
pub struct Strict {
    /// Balance.
    pub cents: i64,
}

impl Apply<Deposited> for Strict {
    fn apply(&mut self, e: &Deposited) {
        self.cents += e.cents;
    }
}

impl Apply<Renamed> for Strict {
    fn apply(&mut self, _: &Renamed) {}
}

/// The projection.
#[derive(Debug, Default, Projection)]
#[projection(name = "stricts", events(Deposited, Renamed))]
pub struct Stricts {
    /// Total.
    pub total: i64,
}

impl Handle<Deposited> for Stricts {
    async fn handle(
        &mut self,
        e: Deposited,
        _: &RecordedEvent,
        (): &mut (),
    ) -> Result<(), HandlerError> {
        self.total += e.cents;
        Ok(())
    }
}

impl Handle<Renamed> for Stricts {
    async fn handle(
        &mut self,
        _: Renamed,
        _: &RecordedEvent,
        (): &mut (),
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[test]
fn strict_code_builds_and_decodes() {
    use eventsource_core::EventSet;
    let e = StrictEvent::decode("strict.credited", 1, br#"{"amount":3}"#).unwrap();
    assert_eq!(e, StrictEvent::Deposited(Deposited { cents: 3 }));
}
