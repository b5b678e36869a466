//! Items the derive macros' generated code refers to. Not a public API: no stability promise.
//!
//! The traits here exist for their error messages: each is implemented for every type that
//! meets a serde (or conversion) bound, and carries `#[diagnostic::on_unimplemented]` with a
//! message about *eventsource*, so a user who forgets `#[derive(Serialize)]` reads what the
//! event store needs instead of a serde internals message. `#[diagnostic::do_not_recommend]`
//! on the blanket impls makes rustc report our trait instead of the bound underneath it.

pub use ::bytes::Bytes;
pub use ::core;
pub use ::serde;
pub use ::serde_json;
pub use ::std::boxed::Box;
pub use ::std::string::String;
pub use ::std::vec::Vec;

pub use crate::codec;
pub use crate::envelope::RecordedEvent;
pub use crate::error::{BoxError, DecodeError, EncodeError};
pub use crate::event::{DomainEvent, EventSet, EventType, IntoEvents};
pub use crate::projection::{Handle, HandlerError, ListsEvent, Projection};
pub use crate::{aggregate::Aggregate, aggregate::Apply};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// An event payload the store can decode: `serde::Deserialize` (owned).
#[diagnostic::on_unimplemented(
    message = "event `{Self}` cannot be decoded: it does not implement `serde::Deserialize`",
    label = "`{Self}` needs `#[derive(serde::Deserialize)]`",
    note = "events are stored as JSON: add `#[derive(serde::Deserialize)]` to `{Self}`"
)]
pub trait EventDecode: Sized {
    /// Decodes a payload stored as `name` with schema `version`.
    fn decode_event(name: &str, version: u32, payload: &[u8]) -> Result<Self, DecodeError>;
    /// Decodes the JSON value a raw upcaster produced.
    fn decode_event_value(
        name: &str,
        version: u32,
        value: serde_json::Value,
    ) -> Result<Self, DecodeError>;
}

#[diagnostic::do_not_recommend]
impl<T: DeserializeOwned> EventDecode for T {
    #[inline]
    fn decode_event(name: &str, version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        codec::decode_json(name, version, payload)
    }

    #[inline]
    fn decode_event_value(
        name: &str,
        version: u32,
        value: serde_json::Value,
    ) -> Result<Self, DecodeError> {
        codec::decode_from_value(name, version, value)
    }
}

/// An event payload the store can encode: `serde::Serialize`.
#[diagnostic::on_unimplemented(
    message = "event `{Self}` cannot be stored: it does not implement `serde::Serialize`",
    label = "`{Self}` needs `#[derive(serde::Serialize)]`",
    note = "an aggregate writes its events as JSON: add `#[derive(serde::Serialize)]` to `{Self}`"
)]
pub trait EventEncode {
    /// Encodes the payload of an event stored as `name`.
    fn encode_event(&self, name: &str) -> Result<Bytes, EncodeError>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + ?Sized> EventEncode for T {
    #[inline]
    fn encode_event(&self, name: &str) -> Result<Bytes, EncodeError> {
        codec::encode_json(name, self)
    }
}

/// Aggregate state that can be snapshotted: `Serialize` and `Deserialize` (owned).
#[diagnostic::on_unimplemented(
    message = "aggregate `{Self}` takes snapshots but is not serde-serialisable",
    label = "`snapshot_every` needs `{Self}: Serialize + Deserialize`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`, or remove `snapshot_every`"
)]
pub trait SnapshotState: Sized {
    /// Encodes the state of aggregate `name`.
    fn encode_snapshot(&self, name: &str) -> Result<Bytes, EncodeError>;
    /// Decodes a snapshot.
    fn decode_snapshot(payload: &[u8]) -> Result<Self, DecodeError>;
}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> SnapshotState for T {
    fn encode_snapshot(&self, name: &str) -> Result<Bytes, EncodeError> {
        codec::encode_json(name, self)
    }

    fn decode_snapshot(payload: &[u8]) -> Result<Self, DecodeError> {
        serde_json::from_slice(payload).map_err(DecodeError::Snapshot)
    }
}

/// The conversion from the previous version of an event: `TryFrom<P>` (so also `From<P>`),
/// with an error that boxes into [`BoxError`].
#[diagnostic::on_unimplemented(
    message = "event `{Self}` names `{P}` as its previous version but cannot be converted from it",
    label = "`{Self}` needs `impl From<{P}>` or `impl TryFrom<{P}>`",
    note = "add `impl From<{P}> for {Self}` (or `TryFrom`, whose `Error` implements `std::error::Error + Send + Sync`): it is the upcast, in plain Rust"
)]
pub trait UpcastFrom<P>: Sized {
    /// Converts the previous version, stored as `name`, from version `from` to `to`.
    fn upcast_from(previous: P, name: &str, from: u32, to: u32) -> Result<Self, DecodeError>;
}

#[diagnostic::do_not_recommend]
impl<P, T> UpcastFrom<P> for T
where
    T: TryFrom<P>,
    <T as TryFrom<P>>::Error: Into<BoxError>,
{
    #[inline]
    fn upcast_from(previous: P, name: &str, from: u32, to: u32) -> Result<Self, DecodeError> {
        T::try_from(previous).map_err(|source| DecodeError::Upcast {
            name: name.into(),
            from,
            to,
            source: source.into(),
        })
    }
}

/// The `reset = path` hook of a derived projection `P` with context `C`: a
/// `fn(&mut P, &mut C) -> Result<(), HandlerError>`, `async` (its future `Send`) or not. `M`
/// tells the two apart (`Async` or `Blocking`) and is inferred.
#[diagnostic::on_unimplemented(
    message = "`reset` must name a `fn(&mut self, &mut {C}) -> Result<(), HandlerError>`, `async` or not",
    label = "found `{Self}`",
    note = "the hook clears the read model before a rebuild, e.g. `async fn clear(&mut self, _: &mut {C}) -> Result<(), HandlerError> {{ .. }}` (an `async` hook's future must be `Send`)"
)]
pub trait ResetHook<'p, 'c, P: 'p, C: 'c, M> {
    /// What calling the hook returns.
    type Future: Future<Output = Result<(), HandlerError>> + Send;
    /// Calls the hook.
    fn call(self, projection: &'p mut P, ctx: &'c mut C) -> Self::Future;
}

/// [`ResetHook`] of an `async fn`.
pub enum Async {}
/// [`ResetHook`] of a plain `fn`, which runs when the hook is called.
pub enum Blocking {}

#[diagnostic::do_not_recommend]
impl<'p, 'c, P: 'p, C: 'c, F, Fut> ResetHook<'p, 'c, P, C, Async> for F
where
    F: FnOnce(&'p mut P, &'c mut C) -> Fut,
    Fut: Future<Output = Result<(), HandlerError>> + Send,
{
    type Future = Fut;

    #[inline]
    fn call(self, projection: &'p mut P, ctx: &'c mut C) -> Fut {
        self(projection, ctx)
    }
}

#[diagnostic::do_not_recommend]
impl<'p, 'c, P: 'p, C: 'c, F> ResetHook<'p, 'c, P, C, Blocking> for F
where
    F: FnOnce(&'p mut P, &'c mut C) -> Result<(), HandlerError>,
{
    type Future = core::future::Ready<Result<(), HandlerError>>;

    #[inline]
    fn call(self, projection: &'p mut P, ctx: &'c mut C) -> Self::Future {
        core::future::ready(self(projection, ctx))
    }
}

/// Calls a projection's `reset` hook (`P` and `C` given, so a message can name them).
#[inline]
pub fn reset<'p, 'c, P: 'p, C: 'c, M, F: ResetHook<'p, 'c, P, C, M>>(
    hook: F,
    projection: &'p mut P,
    ctx: &'c mut C,
) -> F::Future {
    hook.call(projection, ctx)
}

/// Runs a raw upcaster over the JSON of an older version that has no type of its own.
#[inline]
pub fn upcast_json<F, E>(
    name: &str,
    version: u32,
    to: u32,
    payload: &[u8],
    upcast: F,
) -> Result<serde_json::Value, DecodeError>
where
    F: FnOnce(u32, serde_json::Value) -> Result<serde_json::Value, E>,
    E: Into<BoxError>,
{
    let value = codec::decode_value(name, version, payload)?;
    upcast(version, value).map_err(|source| DecodeError::Upcast {
        name: name.into(),
        from: version,
        to,
        source: source.into(),
    })
}

/// The error for a version a type does not know.
#[cold]
pub fn unsupported_version(name: &str, version: u32, current: u32) -> DecodeError {
    DecodeError::UnsupportedVersion {
        name: name.into(),
        version,
        current,
    }
}

/// An error from decoding through the `previous` chain, reported for the event that walked it:
/// a version below the chain's oldest type names the newest version the code knows.
#[cold]
pub fn from_chain(error: DecodeError, current: u32) -> DecodeError {
    match error {
        DecodeError::UnsupportedVersion { name, version, .. } => DecodeError::UnsupportedVersion {
            name,
            version,
            current,
        },
        other => other,
    }
}

/// The error for a stored name no listed event has.
#[cold]
pub fn unknown_event(name: &str, version: u32) -> DecodeError {
    DecodeError::UnknownEvent {
        name: name.into(),
        version,
    }
}

/// A decode error as a handler error.
#[cold]
pub fn handler_error(error: DecodeError) -> BoxError {
    Box::new(error)
}

/// `a == b`, usable in constants.
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether two event types share any stored name (their names and aliases), in constants.
pub const fn names_overlap(a: EventType, b: EventType) -> bool {
    if str_eq(a.name, b.name) || contains(b.aliases, a.name) || contains(a.aliases, b.name) {
        return true;
    }
    let mut i = 0;
    while i < a.aliases.len() {
        if contains(b.aliases, a.aliases[i]) {
            return true;
        }
        i += 1;
    }
    false
}

/// Whether `list` holds `name`, in constants.
pub const fn contains(list: &[&str], name: &str) -> bool {
    let mut i = 0;
    while i < list.len() {
        if str_eq(list[i], name) {
            return true;
        }
        i += 1;
    }
    false
}

/// How many stored names (names and aliases) the event types have together.
pub const fn stored_name_count(types: &[EventType]) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < types.len() {
        n += 1 + types[i].aliases.len();
        i += 1;
    }
    n
}

/// Every stored name (names and aliases) of the event types, in order. `N` must be
/// [`stored_name_count`] of `types`; both are computed by generated constants.
pub const fn stored_names<const N: usize>(types: &[EventType]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut n = 0;
    let mut i = 0;
    while i < types.len() && n < N {
        out[n] = types[i].name;
        n += 1;
        let mut j = 0;
        while j < types[i].aliases.len() && n < N {
            out[n] = types[i].aliases[j];
            n += 1;
            j += 1;
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn const_helpers_compare_names() {
        assert!(str_eq("a.b", "a.b"));
        assert!(!str_eq("a.b", "a.c"));
        assert!(!str_eq("a", "ab"));
        let a = EventType {
            name: "x",
            version: 1,
            aliases: &["old"],
        };
        let b = EventType {
            name: "y",
            version: 1,
            aliases: &["old2", "old"],
        };
        assert!(names_overlap(a, b));
        assert!(!names_overlap(
            a,
            EventType {
                name: "z",
                version: 1,
                aliases: &[]
            }
        ));
        let names: [&str; 5] = stored_names(&[a, b]);
        assert_eq!(stored_name_count(&[a, b]), 5);
        assert_eq!(names, ["x", "old", "y", "old2", "old"]);
    }
}
