use eventsource_core::prelude::*;

#[derive(Default, Aggregate)]
pub struct Account {}

fn main() {}
