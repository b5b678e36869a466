use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

mod model {
    use super::*;

    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "account.deposited")]
    pub struct Deposited {}
}

use model::Deposited;

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Deposited, model::Deposited))]
pub struct Account {}

impl Apply<Deposited> for Account {
    fn apply(&mut self, _: &Deposited) {}
}

fn main() {}
