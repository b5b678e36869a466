use eventsource_core::prelude::*;

#[derive(Projection)]
#[projection(name = "balances", events(Opened))]
pub union Balances {
    a: u32,
}

fn main() {}
