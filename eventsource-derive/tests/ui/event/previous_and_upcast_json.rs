use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
struct DepositedV1 {}

fn upcast(_: u32, v: serde_json::Value) -> Result<serde_json::Value, std::convert::Infallible> {
    Ok(v)
}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1, upcast_json = upcast)]
struct Deposited {}

fn main() {}
