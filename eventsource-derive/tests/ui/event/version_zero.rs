use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened", version = 0)]
struct Opened {}

fn main() {}
