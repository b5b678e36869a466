use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "")]
struct Opened {}

fn main() {}
