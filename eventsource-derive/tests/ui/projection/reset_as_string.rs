use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Projection)]
#[projection(name = "balances", events(Opened), reset = "clear")]
pub struct Balances {}

impl Handle<Opened> for Balances {
    async fn handle(&mut self, _: Opened, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
