use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
pub struct Deposited {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Created {}

impl Apply<Created> for Account {
    fn apply(&mut self, _: &Created) {}
}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened, Deposited, Created))]
pub struct Account {}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, _: &Deposited) {}
}

fn main() {}
