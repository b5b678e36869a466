use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
pub struct Deposited {
    pub cents: i64,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.withdrawn")]
pub struct Withdrawn {
    pub cents: i64,
}

#[derive(Default, Projection)]
#[projection(name = "balances", events(Deposited))]
pub struct Balances {
    total: i64,
}

impl Handle<Deposited> for Balances {
    async fn handle(&mut self, e: Deposited, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.total += e.cents;
        Ok(())
    }
}

impl Handle<Withdrawn> for Balances {
    async fn handle(&mut self, e: Withdrawn, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.total -= e.cents;
        Ok(())
    }
}

fn main() {}
