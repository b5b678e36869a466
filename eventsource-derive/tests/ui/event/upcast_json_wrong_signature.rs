use eventsource_core::DomainEvent;
use serde::Deserialize;

fn upcast_v1(v: serde_json::Value) -> serde_json::Value {
    v
}

#[derive(Deserialize, DomainEvent)]
#[event(name = "account.opened", version = 2, upcast_json = upcast_v1)]
struct Opened {}

fn main() {}
