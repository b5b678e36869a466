use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.credited")]
struct CreditedV1 {}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = CreditedV1)]
struct Deposited {}

impl From<CreditedV1> for Deposited {
    fn from(_: CreditedV1) -> Self {
        Deposited {}
    }
}

fn main() {}
