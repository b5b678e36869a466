use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened", alias = "account.opened")]
struct Opened {}

fn main() {}
