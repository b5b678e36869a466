//! `DomainEvent` on every item kind serde can represent: named, tuple and unit structs, and
//! enums; all of them decode through the derived `decode`.

use eventsource_core::{DecodeError, DomainEvent};
use serde::{Deserialize, Serialize};

/// A tuple struct event.
#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "kinds.tuple")]
pub struct Tuple(pub u32, pub String);

/// A unit struct event.
#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "kinds.unit", version = 3)]
pub struct Unit;

/// An enum event.
#[derive(Debug, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "kinds.enum")]
pub enum Status {
    /// Open.
    Open,
    /// Closed, with a reason.
    Closed {
        /// Why.
        reason: String,
    },
}

#[test]
fn every_item_kind_decodes_its_current_version() {
    assert_eq!(
        Tuple::decode(1, br#"[7,"x"]"#).unwrap(),
        Tuple(7, "x".into())
    );
    assert_eq!(Unit::decode(3, b"null").unwrap(), Unit);
    assert_eq!(
        Status::decode(1, br#"{"Closed":{"reason":"done"}}"#).unwrap(),
        Status::Closed {
            reason: "done".into()
        }
    );
    assert_eq!(Status::decode(1, br#""Open""#).unwrap(), Status::Open);
}

#[test]
fn versions_below_or_above_without_an_upcast_are_unsupported() {
    match Unit::decode(2, b"null") {
        Err(DecodeError::UnsupportedVersion {
            name,
            version,
            current,
        }) => assert_eq!((name.as_str(), version, current), ("kinds.unit", 2, 3)),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        Unit::decode(4, b"null"),
        Err(DecodeError::UnsupportedVersion { version: 4, .. })
    ));
}
