use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize)]
struct DepositedV1 {}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
struct Deposited {}

impl From<DepositedV1> for Deposited {
    fn from(_: DepositedV1) -> Self {
        Deposited {}
    }
}

fn main() {}
