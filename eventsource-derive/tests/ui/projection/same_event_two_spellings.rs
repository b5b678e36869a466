use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

mod model {
    use super::*;

    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "account.deposited")]
    pub struct Deposited {}
}

use model::Deposited;

#[derive(Projection)]
#[projection(name = "balances", events(Deposited, model::Deposited))]
pub struct Balances {}

impl Handle<Deposited> for Balances {
    async fn handle(&mut self, _: Deposited, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {}
