//! Event types: the stored identity of one event type ([`DomainEvent`]), the set of events an
//! aggregate writes ([`EventSet`]), and what a decision may return ([`IntoEvents`]).

use bytes::Bytes;

use crate::error::{DecodeError, EncodeError};

/// One event type with a stable stored identity: a type name and a schema version.
///
/// Usually derived (`#[derive(DomainEvent)]`). The name is what the store records; changing it
/// (without keeping the old one as an alias) is a data migration. Older schema versions are
/// their own types, linked from the newer one, and [`DomainEvent::decode`] walks that chain:
/// a payload stored as version 1 of `account.deposited` decodes as version 1's type and is
/// converted forward, one version at a time, into `Self`.
///
/// Implementing it by hand:
///
/// ```
/// use eventsource_core::{DomainEvent, DecodeError, codec};
///
/// #[derive(serde::Deserialize)]
/// struct Renamed { owner: String }
///
/// impl DomainEvent for Renamed {
///     const NAME: &'static str = "account.renamed";
///     const VERSION: u32 = 1;
///     fn decode(version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
///         if version == Self::VERSION {
///             codec::decode_json(Self::NAME, version, payload)
///         } else {
///             Err(DecodeError::UnsupportedVersion {
///                 name: Self::NAME.into(), version, current: Self::VERSION,
///             })
///         }
///     }
/// }
/// let e = Renamed::decode(1, br#"{"owner":"ada"}"#).unwrap();
/// assert_eq!(e.owner, "ada");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event type",
    label = "not a `DomainEvent`",
    note = "add `#[derive(DomainEvent)]` and `#[event(name = \"...\")]` to `{Self}`"
)]
pub trait DomainEvent: Sized + Send + Sync + 'static {
    /// The stored type name. `#[derive(DomainEvent)]` accepts 1 to 255 bytes of printable
    /// ASCII (`!` to `~`), such as `account.opened`, for names and aliases alike.
    const NAME: &'static str;
    /// The schema version this type encodes (1 for a type that never changed).
    const VERSION: u32;
    /// Earlier type names that still decode as this type.
    const ALIASES: &'static [&'static str] = &[];

    /// Decodes a payload stored under this type's name (or an alias) with schema `version`,
    /// upcasting older versions into `Self`.
    fn decode(version: u32, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// The stored identity of one event type an [`EventSet`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EventType {
    /// The stored type name.
    pub name: &'static str,
    /// The current schema version.
    pub version: u32,
    /// Earlier names that still decode as this type.
    pub aliases: &'static [&'static str],
}

impl EventType {
    /// The identity of the event type `E`.
    pub const fn of<E: DomainEvent>() -> Self {
        Self {
            name: E::NAME,
            version: E::VERSION,
            aliases: E::ALIASES,
        }
    }
}

/// The closed set of events one aggregate writes: usually the enum that
/// `#[derive(Aggregate)]` generates (`AccountEvent`), one variant per listed event.
pub trait EventSet: Sized + Send + Sync + 'static {
    /// Every event type of the set, current versions.
    const EVENT_TYPES: &'static [EventType];

    /// The stored type name of this event.
    fn event_type(&self) -> &'static str;
    /// The schema version this event is written with.
    fn schema_version(&self) -> u32;
    /// Encodes the payload (UTF-8 JSON).
    fn encode(&self) -> Result<Bytes, EncodeError>;
    /// Decodes a stored event, upcasting older versions. An unknown name or version is
    /// [`DecodeError::UnknownEvent`] / [`DecodeError::UnsupportedVersion`].
    fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// What a decision may return: no event, one event, or several. Implemented for `()`,
/// `Option<T>`, `Vec<T>` and arrays of anything that converts into the event set, and (by
/// `#[derive(Aggregate)]`) for the event set and each listed event.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not listed in `events(..)` of the aggregate whose events are `{Ev}`",
    label = "a decision returns events of its aggregate",
    note = "list `{Self}` in `#[aggregate(events(..))]`, or return one listed event, `Option<_>`, `Vec<_>` or an array of them, or `()` for none"
)]
pub trait IntoEvents<Ev> {
    /// The events, in order.
    fn into_events(self) -> Vec<Ev>;
}

impl<Ev> IntoEvents<Ev> for () {
    fn into_events(self) -> Vec<Ev> {
        Vec::new()
    }
}

impl<Ev, T: Into<Ev>> IntoEvents<Ev> for Option<T> {
    fn into_events(self) -> Vec<Ev> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<Ev, T: Into<Ev>> IntoEvents<Ev> for Vec<T> {
    fn into_events(self) -> Vec<Ev> {
        self.into_iter().map(Into::into).collect()
    }
}

impl<Ev, T: Into<Ev>, const N: usize> IntoEvents<Ev> for [T; N] {
    fn into_events(self) -> Vec<Ev> {
        self.into_iter().map(Into::into).collect()
    }
}
