use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened")]
#[event(name = "account.created")]
struct Opened {}

fn main() {}
