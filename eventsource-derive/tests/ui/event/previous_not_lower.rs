use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 3)]
struct DepositedV3 {}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV3)]
struct Deposited {}

impl From<DepositedV3> for Deposited {
    fn from(_: DepositedV3) -> Self {
        Deposited {}
    }
}

fn main() {}
