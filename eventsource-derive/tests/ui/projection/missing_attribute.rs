use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
pub struct Deposited {}

#[derive(Projection)]
pub struct Balances {}

impl Handle<Opened> for Balances {
    async fn handle(&mut self, _: Opened, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

impl Handle<Deposited> for Balances {
    async fn handle(&mut self, _: Deposited, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
