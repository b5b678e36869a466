use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event = "account.opened"]
struct Opened {}

fn main() {}
