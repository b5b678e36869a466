//! Two aggregates claiming the same stored (name, version) cannot be caught by one derive:
//! the registry built at startup reports it as a typed error, not a panic.

use eventsource_core::EventRegistry;
use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// Written by the cart.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "item.added")]
pub struct ItemAdded {}

/// Written by the wishlist, under the cart's name by mistake.
#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "item.added")]
pub struct WishAdded {}

/// The cart.
#[derive(Default, Aggregate)]
#[aggregate(name = "cart", events(ItemAdded))]
pub struct Cart {}

impl Apply<ItemAdded> for Cart {
    fn apply(&mut self, _: &ItemAdded) {}
}

/// The wishlist.
#[derive(Default, Aggregate)]
#[aggregate(name = "wishlist", events(WishAdded))]
pub struct Wishlist {}

impl Apply<WishAdded> for Wishlist {
    fn apply(&mut self, _: &WishAdded) {}
}

#[test]
fn two_aggregates_claiming_one_stored_event_type_fail_at_startup() {
    let error = EventRegistry::new()
        .register::<Cart>()
        .unwrap()
        .register::<Wishlist>()
        .unwrap_err();
    assert_eq!((error.name.as_str(), error.version), ("item.added", 1));
    assert_eq!(
        (error.first.as_str(), error.second.as_str()),
        ("cart", "wishlist")
    );
}
