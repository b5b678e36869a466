//! Every derive in a module without the implicit prelude.
#![no_implicit_prelude]

extern crate eventsource_core;
extern crate serde;
extern crate std;

use eventsource_core::{Aggregate, Apply, DomainEvent, Handle, HandlerError, Projection, RecordedEvent};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "bare.v1")]
pub struct BareV1 {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "bare.v1", version = 2, previous = BareV1, alias = "bare.old")]
pub struct Bare {}

impl ::std::convert::From<BareV1> for Bare {
    fn from(_: BareV1) -> Self {
        Bare {}
    }
}

#[derive(::std::default::Default, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "bare", events(Bare), snapshot_every = 5, snapshot_version = 2)]
pub struct BareAggregate {}

impl Apply<Bare> for BareAggregate {
    fn apply(&mut self, _: &Bare) {}
}

#[derive(Projection)]
#[projection(name = "bares", events(Bare), context = ())]
pub struct Bares;

impl Handle<Bare> for Bares {
    async fn handle(&mut self, _: Bare, _: &RecordedEvent, _: &mut ()) -> ::std::result::Result<(), HandlerError> {
        ::std::result::Result::Ok(())
    }
}

fn main() {}
