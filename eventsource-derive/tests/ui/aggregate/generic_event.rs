use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "item.tagged")]
pub struct Tagged<T> {
    pub tag: T,
}

#[derive(Default, Aggregate)]
#[aggregate(name = "item", events(Tagged<T>))]
pub struct Item<T: Default + Send + Sync + 'static> {
    pub tags: Vec<T>,
}

impl<T: Default + Send + Sync + 'static> Apply<Tagged<T>> for Item<T> {
    fn apply(&mut self, _: &Tagged<T>) {}
}

fn main() {}
