use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
struct DepositedV0 {}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", previous = DepositedV0)]
struct Deposited {}

fn main() {}
