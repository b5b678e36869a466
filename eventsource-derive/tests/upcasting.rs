//! Stored events of older versions decode as the current type, through `previous` chains,
//! aliases and raw-JSON upcasters, and every failure is a typed error naming what failed.
// Domain types are `pub` as a user's would be; the docs-under-`deny` case is `strict_lints.rs`.
#![allow(missing_docs)]

use eventsource_core::prelude::*;
use eventsource_core::{DecodeError, Error, EventSet, ExpectedVersion, NewEvent, StreamWrite};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "item.priced")]
pub struct PricedV1 {
    pub price: f64,
}

#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "item.priced", version = 2, previous = PricedV1)]
pub struct PricedV2 {
    pub cents: i64,
}

impl From<PricedV1> for PricedV2 {
    fn from(v1: PricedV1) -> Self {
        PricedV2 {
            cents: (v1.price * 100.0).round() as i64,
        }
    }
}

/// Version 3 adds a currency; negative prices of version 2 cannot be upcast.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "item.priced", version = 3, previous = PricedV2, alias = "article.priced")]
pub struct Priced {
    pub cents: u64,
    pub currency: String,
}

#[derive(Debug, thiserror::Error)]
#[error("negative price {0}")]
pub struct NegativePrice(i64);

impl TryFrom<PricedV2> for Priced {
    type Error = NegativePrice;
    fn try_from(v2: PricedV2) -> Result<Self, NegativePrice> {
        let cents = u64::try_from(v2.cents).map_err(|_| NegativePrice(v2.cents))?;
        Ok(Priced {
            cents,
            currency: "EUR".into(),
        })
    }
}

/// Version 1 of `item.renamed` has no struct: its raw JSON is rewritten.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "item.renamed", version = 2, upcast_json = renamed_v1, alias("item.retitled", "article.renamed"))]
pub struct Renamed {
    pub title: String,
}

fn renamed_v1(
    version: u32,
    mut json: serde_json::Value,
) -> Result<serde_json::Value, NegativePrice> {
    assert_eq!(version, 1);
    if let Some(obj) = json.as_object_mut() {
        if let Some(name) = obj.remove("name") {
            obj.insert("title".into(), name);
        }
    }
    Ok(json)
}

#[derive(Debug, Default, PartialEq, Aggregate)]
#[aggregate(name = "item", events(Priced, Renamed))]
pub struct Item {
    pub prices: Vec<u64>,
    pub title: String,
}

impl Apply<Priced> for Item {
    fn apply(&mut self, e: &Priced) {
        self.prices.push(e.cents)
    }
}

impl Apply<Renamed> for Item {
    fn apply(&mut self, e: &Renamed) {
        self.title = e.title.clone()
    }
}

async fn store_with(events: Vec<NewEvent>) -> Result<InMemoryStore, eventsource_core::StoreError> {
    let store = InMemoryStore::new();
    store
        .append(vec![StreamWrite::new(
            "item-1",
            ExpectedVersion::Any,
            events,
        )])
        .await?;
    Ok(store)
}

#[tokio::test]
async fn a_stream_of_v1_v2_and_v3_loads_as_the_current_type() {
    let store = store_with(vec![
        NewEvent::new("item.priced", 1, r#"{"price":1.5}"#),
        NewEvent::new("item.priced", 2, r#"{"cents":275}"#),
        NewEvent::new("item.priced", 3, r#"{"cents":300,"currency":"USD"}"#),
    ])
    .await
    .unwrap();
    let repo: Repository<Item, _> = Repository::new(store);
    let loaded = repo.load("1").await.unwrap();
    assert_eq!(loaded.state.prices, [150, 275, 300]);
    assert_eq!(loaded.version, Version::new(3));
}

#[tokio::test]
async fn an_unknown_name_or_version_is_a_typed_error_naming_both() {
    let repo: Repository<Item, _> = Repository::new(
        store_with(vec![NewEvent::new("item.deleted", 1, "{}")])
            .await
            .unwrap(),
    );
    match repo.load("1").await.unwrap_err() {
        Error::Decode {
            source: DecodeError::UnknownEvent { name, version },
            ..
        } => assert_eq!((name.as_str(), version), ("item.deleted", 1)),
        other => panic!("unexpected {other:?}"),
    }

    let repo: Repository<Item, _> = Repository::new(
        store_with(vec![NewEvent::new("item.priced", 4, "{}")])
            .await
            .unwrap(),
    );
    let error = repo.load("1").await.unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("`item.priced` (schema version 4)"),
        "{message}"
    );
    match error {
        Error::Decode {
            source:
                DecodeError::UnsupportedVersion {
                    name,
                    version,
                    current,
                },
            ..
        } => assert_eq!((name.as_str(), version, current), ("item.priced", 4, 3)),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn a_failing_try_from_upcast_is_a_typed_error_naming_stream_and_version() {
    let store = store_with(vec![
        NewEvent::new("item.priced", 2, r#"{"cents":1}"#),
        NewEvent::new("item.priced", 2, r#"{"cents":-5}"#),
    ])
    .await
    .unwrap();
    let repo: Repository<Item, _> = Repository::new(store);
    match repo.load("1").await.unwrap_err() {
        Error::Decode {
            stream,
            version,
            event_type,
            schema_version,
            source:
                DecodeError::Upcast {
                    name,
                    from,
                    to,
                    source,
                },
        } => {
            assert_eq!(stream.as_str(), "item-1");
            assert_eq!(version, Version::new(2));
            assert_eq!((event_type.as_str(), schema_version), ("item.priced", 2));
            assert_eq!((name.as_str(), from, to), ("item.priced", 2, 3));
            assert_eq!(source.to_string(), "negative price -5");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_alias_decodes_as_the_renamed_event() {
    let e = ItemEvent::decode("article.priced", 3, br#"{"cents":1,"currency":"EUR"}"#).unwrap();
    assert_eq!(
        e,
        ItemEvent::Priced(Priced {
            cents: 1,
            currency: "EUR".into()
        })
    );
    let e = ItemEvent::decode("article.renamed", 2, br#"{"title":"x"}"#).unwrap();
    assert_eq!(e, ItemEvent::Renamed(Renamed { title: "x".into() }));
    assert_eq!(Renamed::ALIASES, ["item.retitled", "article.renamed"]);
}

#[test]
fn the_raw_json_escape_hatch_upcasts_versions_without_a_struct() {
    let e = Renamed::decode(1, br#"{"name":"old title"}"#).unwrap();
    assert_eq!(e.title, "old title");
    let e = ItemEvent::decode("item.retitled", 1, br#"{"name":"t"}"#).unwrap();
    assert_eq!(e, ItemEvent::Renamed(Renamed { title: "t".into() }));
    assert!(matches!(
        Renamed::decode(3, b"{}"),
        Err(DecodeError::UnsupportedVersion {
            version: 3,
            current: 2,
            ..
        })
    ));
}

#[test]
fn a_version_older_than_the_chain_names_the_current_version() {
    match Priced::decode(0, b"{}") {
        Err(DecodeError::UnsupportedVersion {
            name,
            version,
            current,
        }) => assert_eq!((name.as_str(), version, current), ("item.priced", 0, 3)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_corrupt_payload_is_a_payload_error_of_its_stored_version() {
    assert!(matches!(
        Priced::decode(1, b"not json"),
        Err(DecodeError::Payload { version: 1, .. })
    ));
}
