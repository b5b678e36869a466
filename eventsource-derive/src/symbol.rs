//! The names of the derives' attributes and their keys, in one place.

use std::fmt;

/// An attribute name or key.
#[derive(Copy, Clone, PartialEq, Eq)]
pub(crate) struct Symbol(pub(crate) &'static str);

/// `#[event(...)]`
pub(crate) const EVENT: Symbol = Symbol("event");
/// `#[aggregate(...)]`
pub(crate) const AGGREGATE: Symbol = Symbol("aggregate");
/// `#[projection(...)]`
pub(crate) const PROJECTION: Symbol = Symbol("projection");

pub(crate) const NAME: Symbol = Symbol("name");
pub(crate) const VERSION: Symbol = Symbol("version");
pub(crate) const PREVIOUS: Symbol = Symbol("previous");
pub(crate) const ALIAS: Symbol = Symbol("alias");
pub(crate) const UPCAST_JSON: Symbol = Symbol("upcast_json");
pub(crate) const CRATE: Symbol = Symbol("crate");
pub(crate) const EVENTS: Symbol = Symbol("events");
pub(crate) const SNAPSHOT_EVERY: Symbol = Symbol("snapshot_every");
pub(crate) const SNAPSHOT_VERSION: Symbol = Symbol("snapshot_version");
pub(crate) const EVENT_ENUM: Symbol = Symbol("event_enum");
pub(crate) const CONTEXT: Symbol = Symbol("context");
pub(crate) const RESET: Symbol = Symbol("reset");

/// The keys `#[event(...)]` accepts.
pub(crate) const EVENT_KEYS: &[Symbol] = &[NAME, VERSION, PREVIOUS, ALIAS, UPCAST_JSON, CRATE];
/// The keys `#[aggregate(...)]` accepts.
pub(crate) const AGGREGATE_KEYS: &[Symbol] = &[
    NAME,
    EVENTS,
    SNAPSHOT_EVERY,
    SNAPSHOT_VERSION,
    EVENT_ENUM,
    CRATE,
];
/// The keys `#[projection(...)]` accepts.
pub(crate) const PROJECTION_KEYS: &[Symbol] = &[NAME, EVENTS, CONTEXT, RESET, CRATE];

impl PartialEq<Symbol> for syn::Path {
    fn eq(&self, word: &Symbol) -> bool {
        self.is_ident(word.0)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}
