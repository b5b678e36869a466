use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Default, Projection)]
#[projection(name = "balances", events(Opened), reset = Self::clear)]
pub struct Balances {
    count: u64,
}

impl Balances {
    fn clear(&mut self) {
        self.count = 0;
    }
}

impl Handle<Opened> for Balances {
    async fn handle(&mut self, _: Opened, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        self.count += 1;
        Ok(())
    }
}

fn main() {}
