use eventsource_core::prelude::*;

#[derive(Aggregate)]
#[aggregate(name = "account", events(Opened))]
pub union Account {
    a: u32,
}

fn main() {}
