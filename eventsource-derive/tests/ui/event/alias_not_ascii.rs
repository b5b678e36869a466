use eventsource_core::DomainEvent;
use serde::Deserialize;

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened", alias = "konto.eröffnet")]
struct Opened {}

fn main() {}
