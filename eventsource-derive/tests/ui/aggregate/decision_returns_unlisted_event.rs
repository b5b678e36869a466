use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
pub struct Deposited {}

#[derive(Default, Aggregate)]
#[aggregate(name = "account", events(Opened))]
pub struct Account {}

impl Apply<Opened> for Account {
    fn apply(&mut self, _: &Opened) {}
}

impl Account {
    fn deposit(&self) -> Result<Deposited, std::io::Error> {
        Ok(Deposited {})
    }
}

async fn run(repo: &Repository<Account, InMemoryStore>) {
    let _ = repo.execute("42", |account| account.deposit()).await;
}

fn main() {}
