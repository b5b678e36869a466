use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "bank_account.opened")]
pub struct Opened {}

#[derive(Default, Aggregate)]
#[aggregate(name = "bank-account", events(Opened))]
pub struct BankAccount {}

impl Apply<Opened> for BankAccount {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {}
