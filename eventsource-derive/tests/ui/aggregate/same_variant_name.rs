use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

mod checking {
    use super::*;
    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "checking.opened")]
    pub struct Opened {}
}

mod savings {
    use super::*;
    #[derive(Serialize, Deserialize, DomainEvent)]
    #[event(name = "savings.opened")]
    pub struct Opened {}
}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(checking::Opened, savings::Opened))]
pub struct Account {}

impl Apply<checking::Opened> for Account {
    fn apply(&mut self, _: &checking::Opened) {}
}

impl Apply<savings::Opened> for Account {
    fn apply(&mut self, _: &savings::Opened) {}
}

fn main() {}
