use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened", stream = "accounts")]
struct Opened {}

fn main() {}
