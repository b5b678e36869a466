//! Newtypes for the identifiers people mix up: streams, versions, positions, event ids.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The identity of one event stream, usually `"<aggregate name>-<aggregate id>"` (see
/// [`StreamId::for_aggregate`]).
///
/// Cheap to clone (a shared string). Every store takes stream ids of 1 to 2,048 bytes of
/// UTF-8 without a NUL character ([`crate::store::input`]) and rejects others with
/// [`StoreError::InvalidRequest`](crate::StoreError::InvalidRequest); stores bind it as a
/// parameter, so quotes and unicode are safe.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// Wraps a stream id.
    ///
    /// ```
    /// # use eventsource_core::StreamId;
    /// let id = StreamId::new("account-42");
    /// assert_eq!(id.as_str(), "account-42");
    /// ```
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self(id.into())
    }

    /// The stream id of an aggregate instance: the category (the aggregate's name), `-`, then
    /// the id.
    ///
    /// Two different `(category, id)` pairs never give one stream, whatever either contains:
    /// the id is kept as it is, and in the category `%` is written `%25` and `-` is written
    /// `%2D`, so the first `-` of the stream id always ends the category
    /// ([`StreamId::aggregate_parts`] splits it back). A category that follows the rule of
    /// aggregate names (ASCII letters, digits, `_` and `.`, which `#[derive(Aggregate)]`
    /// enforces) is written unchanged, so stream ids stay readable:
    ///
    /// ```
    /// # use eventsource_core::StreamId;
    /// assert_eq!(StreamId::for_aggregate("account", "42").as_str(), "account-42");
    /// assert_eq!(StreamId::for_aggregate("bank", "account-42").as_str(), "bank-account-42");
    /// // A hand-written `Aggregate::NAME` may hold a `-`: it cannot pass for another aggregate.
    /// assert_eq!(StreamId::for_aggregate("bank-account", "42").as_str(), "bank%2Daccount-42");
    /// ```
    pub fn for_aggregate(category: &str, id: &str) -> Self {
        let escaped = category
            .bytes()
            .filter(|b| matches!(b, b'-' | b'%'))
            .count();
        let mut s = String::with_capacity(category.len() + 2 * escaped + 1 + id.len());
        if escaped == 0 {
            s.push_str(category);
        } else {
            for c in category.chars() {
                match c {
                    '%' => s.push_str("%25"),
                    '-' => s.push_str("%2D"),
                    c => s.push(c),
                }
            }
        }
        s.push('-');
        s.push_str(id);
        Self(s.into())
    }

    /// The category and id of a stream id [`StreamId::for_aggregate`] wrote, or `None` for one
    /// it cannot have written (no `-`, or a `%` in the category that is not `%25` or `%2D`).
    ///
    /// ```
    /// # use eventsource_core::StreamId;
    /// let stream = StreamId::for_aggregate("bank-account", "42");
    /// let (category, id) = stream.aggregate_parts().unwrap();
    /// assert_eq!((&*category, id), ("bank-account", "42"));
    /// assert_eq!(StreamId::new("no separator").aggregate_parts(), None);
    /// ```
    pub fn aggregate_parts(&self) -> Option<(Cow<'_, str>, &str)> {
        let (category, id) = self.0.split_once('-')?;
        if !category.contains('%') {
            return Some((Cow::Borrowed(category), id));
        }
        let mut unescaped = String::with_capacity(category.len());
        let mut rest = category;
        while let Some(at) = rest.find('%') {
            unescaped.push_str(&rest[..at]);
            let escape = rest.get(at..at + 3)?;
            unescaped.push(match escape {
                "%25" => '%',
                "%2D" => '-',
                _ => return None,
            });
            rest = &rest[at + 3..];
        }
        unescaped.push_str(rest);
        Some((Cow::Owned(unescaped), id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for StreamId {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for StreamId {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl AsRef<str> for StreamId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The version of a stream: the number of events in it. The first event is version 1; versions
/// have no gaps. [`Version::ZERO`] is the version of a stream with no events.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Version(u64);

impl Version {
    /// The version of a stream that has no events.
    pub const ZERO: Version = Version(0);
    /// The version of a stream's first event.
    pub const FIRST: Version = Version(1);

    /// Wraps a raw version number.
    pub const fn new(v: u64) -> Self {
        Self(v)
    }

    /// The raw version number.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The version after this one.
    pub const fn next(self) -> Self {
        Self(self.0.saturating_add(1))
    }

    /// This version plus `n` events.
    pub const fn add(self, n: u64) -> Self {
        Self(self.0.saturating_add(n))
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<u64> for Version {
    fn from(v: u64) -> Self {
        Self(v)
    }
}

/// A place in the store's total order of all events (the global log).
///
/// A position has two parts, compared in order: a `commit` part (for PostgreSQL, the writing
/// transaction; for the in-memory store, the commit counter) and a `sequence` within it. Readers
/// of the log see events in increasing position and never see an event appear later below a
/// position they have passed.
///
/// It prints as `"<commit>.<sequence>"` and parses back from that form, so an HTTP client can
/// hand a position it was given back to the server:
///
/// ```
/// # use eventsource_core::Position;
/// let p = Position::new(7, 42);
/// assert_eq!(p.to_string(), "7.42");
/// assert_eq!("7.42".parse::<Position>().unwrap(), p);
/// assert!(Position::ZERO < p);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Position {
    commit: u64,
    sequence: u64,
}

impl Position {
    /// The position before every event: reading "after ZERO" reads the whole log.
    pub const ZERO: Position = Position {
        commit: 0,
        sequence: 0,
    };

    /// Builds a position from its parts.
    pub const fn new(commit: u64, sequence: u64) -> Self {
        Self { commit, sequence }
    }

    /// The commit part (compared first).
    pub const fn commit(self) -> u64 {
        self.commit
    }

    /// The sequence part (compared second).
    pub const fn sequence(self) -> u64 {
        self.sequence
    }
}

impl fmt::Debug for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}.{}", self.commit, self.sequence)
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.commit, self.sequence)
    }
}

/// The error of parsing a [`Position`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid position `{input}`: expected `<commit>.<sequence>`, two unsigned integers")]
pub struct ParsePositionError {
    input: String,
}

impl FromStr for Position {
    type Err = ParsePositionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParsePositionError {
            input: s.chars().take(64).collect(),
        };
        let (commit, sequence) = s.split_once('.').ok_or_else(err)?;
        Ok(Position {
            commit: commit.parse().map_err(|_| err())?,
            sequence: sequence.parse().map_err(|_| err())?,
        })
    }
}

/// What an append expects the stream's current version to be.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check: append at the end, whatever the version is.
    Any,
    /// The stream must not exist yet (have no events).
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's version must be exactly this. `Exact(Version::ZERO)` is the same as
    /// [`ExpectedVersion::NoStream`].
    Exact(Version),
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: Version) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == Version::ZERO,
            ExpectedVersion::StreamExists => actual > Version::ZERO,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::StreamExists => f.write_str("an existing stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// The unique id of an event. Appending an event whose id is already stored is idempotent
/// (see [`EventStore::append`](crate::EventStore::append)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventId(Uuid);

impl EventId {
    /// A fresh id, ordered by the time it was made (UUID v7: a millisecond timestamp, then a
    /// counter that keeps the ids one process makes increasing, then random bits). What
    /// [`NewEvent::new`](crate::NewEvent::new) and the repository give every event without an
    /// idempotency key: a store's unique index on event ids then grows at its end, as the log
    /// does, instead of being written at random places, which makes bulk appends cheaper. The
    /// id tells when it was made, to the millisecond; use [`EventId::new_random`] where that
    /// must not show.
    pub fn new_time_ordered() -> Self {
        Self(Uuid::now_v7())
    }

    /// A fresh random id (UUID v4), which tells nothing of when it was made.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a UUID.
    pub const fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    /// The id derived from an idempotency key and the event's index within a command: the same
    /// key and index always give the same id (UUID v5), so a retried command appends nothing new.
    pub fn derived(key: &str, index: u32) -> Self {
        let mut name = Vec::with_capacity(key.len() + 5);
        name.extend_from_slice(key.as_bytes());
        name.push(0);
        name.extend_from_slice(&index.to_be_bytes());
        Self(Uuid::new_v5(&IDEMPOTENCY_NAMESPACE, &name))
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

/// The UUID v5 namespace of ids derived from idempotency keys.
const IDEMPOTENCY_NAMESPACE: Uuid = Uuid::from_u128(0x6c1d_1e2f_8f3a_4a58_9d5e_3f0b_2c7a_91e4);

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Uuid> for EventId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_orders_by_commit_then_sequence_and_round_trips_through_text() {
        let a = Position::new(1, 9);
        let b = Position::new(2, 1);
        assert!(a < b);
        assert_eq!(b.to_string().parse::<Position>().unwrap(), b);
        assert!("1".parse::<Position>().is_err());
        assert!("x.1".parse::<Position>().is_err());
        assert!("1.-1".parse::<Position>().is_err());
    }

    #[test]
    fn expected_version_matches() {
        assert!(ExpectedVersion::Any.matches(Version::ZERO));
        assert!(ExpectedVersion::NoStream.matches(Version::ZERO));
        assert!(!ExpectedVersion::NoStream.matches(Version::new(1)));
        assert!(ExpectedVersion::StreamExists.matches(Version::new(1)));
        assert!(!ExpectedVersion::StreamExists.matches(Version::ZERO));
        assert!(ExpectedVersion::Exact(Version::new(3)).matches(Version::new(3)));
        assert!(!ExpectedVersion::Exact(Version::new(3)).matches(Version::new(2)));
    }

    #[test]
    fn aggregate_streams_never_collide_across_aggregates() {
        // A `-` in the name would otherwise make these one stream, `bank-account-42`.
        let a = StreamId::for_aggregate("bank-account", "42");
        let b = StreamId::for_aggregate("bank", "account-42");
        assert_ne!(a, b);
        // The escape character itself is escaped: `%2D` in a name is not a written `-`.
        let c = StreamId::for_aggregate("bank%2Daccount", "42");
        assert_ne!(a, c);
        assert_ne!(
            StreamId::for_aggregate("a-", "b"),
            StreamId::for_aggregate("a", "-b")
        );
    }

    #[test]
    fn names_that_follow_the_rule_are_stored_unchanged() {
        assert_eq!(
            StreamId::for_aggregate("account", "42").as_str(),
            "account-42"
        );
        assert_eq!(
            StreamId::for_aggregate("shop.order_v2", "a-b%c").as_str(),
            "shop.order_v2-a-b%c"
        );
    }

    #[test]
    fn odd_categories_and_ids_round_trip() {
        let cases = [
            ("account", "42"),
            ("bank-account", "42"),
            ("bank", "account-42"),
            ("%", "%"),
            ("%2D", "-"),
            ("--", "--"),
            ("-%-", ""),
            ("", "id"),
            ("", ""),
            ("kontø-ü", "ïd 1"),
            ("100%", "x%2Dy"),
        ];
        for (category, id) in cases {
            let stream = StreamId::for_aggregate(category, id);
            let (c, i) = stream.aggregate_parts().unwrap();
            assert_eq!((&*c, i), (category, id), "{stream}");
        }
        for (i, (c1, id1)) in cases.iter().enumerate() {
            for (c2, id2) in &cases[..i] {
                assert_ne!(
                    StreamId::for_aggregate(c1, id1),
                    StreamId::for_aggregate(c2, id2),
                    "({c1:?}, {id1:?}) and ({c2:?}, {id2:?})"
                );
            }
        }
    }

    #[test]
    fn stream_ids_for_aggregate_never_wrote_have_no_parts() {
        assert_eq!(StreamId::new("hot").aggregate_parts(), None);
        assert_eq!(StreamId::new("a%2x-1").aggregate_parts(), None);
        assert_eq!(StreamId::new("a%2d-1").aggregate_parts(), None);
        assert_eq!(StreamId::new("a%-1").aggregate_parts(), None);
    }

    #[test]
    fn derived_event_ids_are_stable_per_key_and_index() {
        assert_eq!(EventId::derived("k", 0), EventId::derived("k", 0));
        assert_ne!(EventId::derived("k", 0), EventId::derived("k", 1));
        assert_ne!(EventId::derived("k", 0), EventId::derived("j", 0));
    }
}
