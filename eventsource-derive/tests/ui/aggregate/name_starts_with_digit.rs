use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Default, Aggregate)]
#[aggregate(name = "2fa", events(Opened))]
pub struct TwoFactor {}

impl Apply<Opened> for TwoFactor {
    fn apply(&mut self, _: &Opened) {}
}

fn main() {}
