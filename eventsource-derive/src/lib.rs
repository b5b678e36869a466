//! Derive macros for eventsource (`eventsource-core`): `DomainEvent`,
//! `Aggregate` and `Projection`.
//!
//! Use them through `eventsource_core` (feature `derive`, on by default), which re-exports
//! them; generated code refers to the runtime by the name the crate's Cargo.toml gives
//! `eventsource-core` (`::eventsource_core`, or `::es` after
//! `es = { package = "eventsource-core" }`), unless an item gives its path with
//! `crate = "..."` (for a re-export). A crate whose Cargo.toml does not list the runtime gets
//! one error saying so. Each derive parses its attribute into a typed model, validates it
//! (reporting every mistake at once, at the user's tokens), then expands.
//!
#![doc = include_str!("../docs/upcasting.md")]

mod aggregate;
mod assert;
mod ctxt;
mod event;
mod events;
mod krate;
mod parse;
mod projection;
mod symbol;

use proc_macro::TokenStream;
use syn::parse_macro_input;

/// Derives `DomainEvent`: a stable stored type name, a schema version, and the decoding of
/// older versions into this one.
///
/// ```text
/// #[event(
///     name = "account.deposited",   // required: the type name the store records
///     version = 2,                  // the schema version (1 by default)
///     previous = DepositedV1,       // the type of version - 1, converted with From/TryFrom
///     alias = "account.credited",   // a former name that still decodes (repeatable, or a list)
///     upcast_json = upcast_v1,      // or: older versions transform raw JSON (instead of `previous`)
///     crate = "::eventsource_core", // the runtime's path, if re-exported elsewhere
/// )]
/// ```
///
/// `decode(version, payload)` reads `version == VERSION` with serde (the type must implement
/// `Deserialize`); a lower version decodes as the `previous` type (walking its own `previous`,
/// so chains of any length work) and converts through `TryFrom` (`From` works too), or runs the
/// `upcast_json` function, a `fn(u32, serde_json::Value) -> Result<serde_json::Value, E>`
/// given the stored version. Any other version is `DecodeError::UnsupportedVersion`. Decoding
/// never tries types one after another.
///
/// The name is the stored identity: changing it is a data migration (or keep the old one as an
/// `alias`). Names and aliases are 1 to 255 bytes of printable ASCII (`!` to `~`: no whitespace,
/// control or non-ASCII characters), such as `account.opened` or `order.line_added`; another
/// name is a compile error. The compiler checks that `previous` has the version directly
/// below (version 3 names its version 2 type, never version 1) and the same name (or an
/// alias).
///
/// ```
/// use eventsource_core::DomainEvent;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, DomainEvent)]
/// #[event(name = "account.deposited")]
/// struct DepositedV1 { amount: f64 }
///
/// #[derive(Debug, Serialize, Deserialize, DomainEvent)]
/// #[event(name = "account.deposited", version = 2, previous = DepositedV1)]
/// struct Deposited { amount_cents: i64 }
///
/// impl From<DepositedV1> for Deposited {
///     fn from(v1: DepositedV1) -> Self {
///         Deposited { amount_cents: (v1.amount * 100.0).round() as i64 }
///     }
/// }
///
/// let old = Deposited::decode(1, br#"{"amount":2.5}"#).unwrap();
/// assert_eq!(old.amount_cents, 250);
/// assert_eq!(Deposited::NAME, "account.deposited");
/// assert!(Deposited::decode(3, b"{}").is_err());
/// ```
#[proc_macro_derive(DomainEvent, attributes(event))]
pub fn derive_domain_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    event::derive(&input).into()
}

/// Derives `Aggregate`, and generates the aggregate's event enum.
///
/// ```text
/// #[aggregate(
///     name = "account",                 // required: the category of its streams
///     events(Opened, Deposited),        // required: the events it writes and folds
///     snapshot_every = 100,             // snapshot every 100 events (needs serde on the state)
///     snapshot_version = 2,             // the snapshot schema; bump it when the state changes
///     event_enum = AccountEvents,       // the enum's name (`<Aggregate>Event` by default)
///     crate = "::eventsource_core",
/// )]
/// ```
///
/// The name is the category of the aggregate's streams: `Aggregate::stream_id("42")` of
/// aggregate `account` is `account-42`. It is made of ASCII letters, digits, `_` and `.`,
/// starting with a letter (so no `-`, which ends the name in a stream id); another name is a
/// compile error. Renaming an aggregate moves it to other streams: a data migration.
///
/// The generated enum (same visibility as the aggregate) has one variant per listed event,
/// named after the type's last path segment, and implements `From` each event, `EventSet`
/// (decoding dispatches on the stored name or an alias, then on the version), `IntoEvents`,
/// and `Debug`, `Clone`, `PartialEq` when every listed event does. It is defined beside the
/// aggregate, so no other item of that module may have its name: where a type `AccountEvent`
/// exists already, name the enum of `Account` otherwise with `event_enum = AccountEvents`
/// (without it, rustc reports the name defined twice, and errors about the other type
/// follow). `apply` calls one
/// `Apply<E>` impl per listed event: a missing one is a compile error naming the event. The
/// compiler also checks that no two listed events share a stored name.
///
/// Generic aggregates are supported (the impls follow the item's generics); the listed events
/// must be concrete types (`Filled<u32>`, not `Filled<T>`), since the event enum is not
/// generic. The fold of the whole enum is `Aggregate::apply_event`, named apart from
/// `Apply::apply` so both traits can be in scope.
///
/// ```
/// use eventsource_core::prelude::*;
/// use eventsource_core::EventSet;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
/// #[event(name = "counter.incremented")]
/// pub struct Incremented { pub by: u32 }
///
/// #[derive(Debug, Default, Serialize, Deserialize, Aggregate)]
/// #[aggregate(name = "counter", events(Incremented), snapshot_every = 50)]
/// pub struct Counter { pub value: u64 }
///
/// impl Apply<Incremented> for Counter {
///     fn apply(&mut self, e: &Incremented) { self.value += u64::from(e.by) }
/// }
///
/// let event = CounterEvent::from(Incremented { by: 2 });
/// let mut counter = Counter::default();
/// counter.apply_event(&event);
/// assert_eq!(counter.value, 2);
/// assert_eq!(event.event_type(), "counter.incremented");
/// let decoded = CounterEvent::decode("counter.incremented", 1, br#"{"by":2}"#).unwrap();
/// assert_eq!(decoded, event);
/// ```
#[proc_macro_derive(Aggregate, attributes(aggregate))]
pub fn derive_aggregate(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    aggregate::derive(&input).into()
}

/// Derives `Projection`: the handled type names, the selective decoding and the dispatch to
/// one `Handle<E>` impl per listed event.
///
/// ```text
/// #[projection(
///     name = "balances",            // required: the key of its checkpoint
///     events(Opened, Deposited),    // required: the events it handles
///     context = MyContext,          // what handlers get besides the event (`()` by default)
///     reset = Self::clear,          // clears the read model before a rebuild (optional)
///     crate = "::eventsource_core",
/// )]
/// ```
///
/// `event_types()` returns every listed event's stored name and aliases (a `static`), so the
/// store filters the log; `handle_event` decodes only listed types (others are never
/// deserialised), upcasting older versions, and calls `Handle<E>`. It implements `ListsEvent<E>`
/// for each listed event, which `Handle<E>` requires: a handler for an event the projection does
/// not list (one that would never be called) is a compile error. A payload that does not
/// decode is the handler's error (a boxed `DecodeError`). With `reset = path`, `Projection::reset`
/// calls `path(&mut self, &mut Context)`, a `fn` returning `Result<(), HandlerError>`, `async`
/// (its future `Send`) or not: a rebuild then clears the read model before it replays the log
/// from zero. Another signature is a compile error that names the one expected.
///
/// Generic projections are supported; the listed events must be concrete types, as for
/// aggregates.
///
/// ```
/// use eventsource_core::prelude::*;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, DomainEvent)]
/// #[event(name = "counter.incremented")]
/// pub struct Incremented { pub by: u32 }
///
/// #[derive(Default, Projection)]
/// #[projection(name = "totals", events(Incremented))]
/// pub struct Totals { pub total: u64 }
///
/// impl Handle<Incremented> for Totals {
///     async fn handle(&mut self, e: Incremented, _: &RecordedEvent, _: &mut ()) -> Result<(), HandlerError> {
///         self.total += u64::from(e.by);
///         Ok(())
///     }
/// }
///
/// assert_eq!(Totals::NAME, "totals");
/// assert_eq!(Totals::event_types(), Some(&["counter.incremented"][..]));
/// ```
#[proc_macro_derive(Projection, attributes(projection))]
pub fn derive_projection(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as syn::DeriveInput);
    projection::derive(&input).into()
}
