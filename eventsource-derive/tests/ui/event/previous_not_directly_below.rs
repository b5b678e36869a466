use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
struct DepositedV1 {}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
struct DepositedV2 {}

impl From<DepositedV1> for DepositedV2 {
    fn from(_: DepositedV1) -> Self {
        DepositedV2 {}
    }
}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 3, previous = DepositedV1)]
struct Deposited {}

impl From<DepositedV1> for Deposited {
    fn from(_: DepositedV1) -> Self {
        Deposited {}
    }
}

fn main() {}
