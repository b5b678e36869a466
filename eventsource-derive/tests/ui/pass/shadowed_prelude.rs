//! The user's scope shadows the prelude names generated code could pick up by accident.
#![allow(dead_code, non_camel_case_types)]

use eventsource_core::{Aggregate, Apply, DomainEvent, Handle, HandlerError, Projection, RecordedEvent};
use serde::{Deserialize, Serialize};

struct Result;
struct Ok;
struct Err;
struct Some;
struct None;
struct Option;
struct Vec;
struct String;
struct Box;
struct Default;
struct From;
struct Into;
struct Clone;
struct Debug;
struct PartialEq;
struct Send;
struct Sync;
mod core {}
mod std {}
fn panic() {}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "shadow.happened", crate = "::eventsource_core")]
pub struct Happened {
    n: i64,
}

#[derive(Serialize, Deserialize, DomainEvent)]
#[event(name = "shadow.happened", version = 2, previous = Happened)]
pub struct Changed {
    n: i64,
}

impl ::core::convert::From<Happened> for Changed {
    fn from(h: Happened) -> Self {
        Changed { n: h.n }
    }
}

#[derive(::core::default::Default, Serialize, Deserialize, Aggregate)]
#[aggregate(name = "shadow", events(Changed), snapshot_every = 10)]
pub struct Shadow {
    total: i64,
}

impl Apply<Changed> for Shadow {
    fn apply(&mut self, e: &Changed) {
        self.total += e.n
    }
}

#[derive(Projection)]
#[projection(name = "shadows", events(Changed))]
pub struct Shadows;

impl Handle<Changed> for Shadows {
    async fn handle(&mut self, _: Changed, _: &RecordedEvent, _: &mut ()) -> ::core::result::Result<(), HandlerError> {
        ::core::result::Result::Ok(())
    }
}

fn main() {}
