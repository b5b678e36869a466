use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
struct DepositedV1 {}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
struct Deposited {}

fn main() {}
