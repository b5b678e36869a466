use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
pub struct Deposited {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = Deposited)]
pub struct DepositedV2 {}

impl From<Deposited> for DepositedV2 {
    fn from(_: Deposited) -> Self {
        DepositedV2 {}
    }
}

impl Apply<DepositedV2> for Account {
    fn apply(&mut self, _: &DepositedV2) {}
}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened, Deposited, DepositedV2))]
pub struct Account {}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, _: &Deposited) {}
}

fn main() {}
