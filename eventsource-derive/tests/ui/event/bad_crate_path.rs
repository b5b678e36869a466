use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened", crate = "not a path")]
struct Opened {}

fn main() {}
