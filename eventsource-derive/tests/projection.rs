//! A derived projection sees only the events it lists: the store filters on its stored names
//! (aliases included) and the dispatch never deserialises another type.
// Domain types are `pub` as a user's would be; the docs-under-`deny` case is `strict_lints.rs`.
#![allow(missing_docs)]

use eventsource_core::prelude::*;
use eventsource_core::{ExpectedVersion, NewEvent, StreamWrite};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "shop.ordered", alias = "shop.purchased")]
pub struct Ordered {
    pub sku: String,
}

#[derive(Debug, Serialize, Deserialize, DomainEvent)]
#[event(name = "shop.shipped")]
pub struct Shipped {
    pub sku: String,
}

#[derive(Default, Projection)]
#[projection(name = "orders", events(Ordered, Shipped))]
pub struct Orders {
    pub seen: Vec<String>,
}

impl Handle<Ordered> for Orders {
    async fn handle(
        &mut self,
        e: Ordered,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.seen.push(format!("ordered {}", e.sku));
        Ok(())
    }
}

impl Handle<Shipped> for Orders {
    async fn handle(
        &mut self,
        e: Shipped,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.seen.push(format!("shipped {}", e.sku));
        Ok(())
    }
}

#[tokio::test]
async fn a_projection_receives_only_its_events() {
    let store = InMemoryStore::new();
    store
        .append(vec![StreamWrite::new(
            "shop-1",
            ExpectedVersion::Any,
            vec![
                NewEvent::new("shop.ordered", 1, r#"{"sku":"a"}"#),
                // Not listed, and not even JSON: it must never be deserialised.
                NewEvent::new("shop.audited", 1, "not json"),
                NewEvent::new("shop.purchased", 1, r#"{"sku":"b"}"#),
                NewEvent::new("shop.shipped", 1, r#"{"sku":"a"}"#),
            ],
        )])
        .await
        .unwrap();
    let mut runner = ProjectionRunner::new(store, Orders::default());
    runner.catch_up().await.unwrap();
    assert_eq!(
        runner.projection().seen,
        ["ordered a", "ordered b", "shipped a"]
    );
    assert_eq!(
        Orders::event_types(),
        Some(&["shop.ordered", "shop.purchased", "shop.shipped"][..])
    );
}

#[tokio::test]
async fn an_unlisted_event_handed_over_anyway_is_skipped_without_decoding() {
    let mut orders = Orders::default();
    let event = RecordedEvent {
        id: eventsource_core::EventId::new_random(),
        stream: "shop-1".into(),
        version: Version::new(1),
        position: Position::new(1, 0),
        event_type: "shop.audited".into(),
        schema_version: 1,
        payload: "not json".into(),
        metadata: Metadata::default(),
        recorded_at: chrono_now(),
    };
    orders.handle_event(&event, &mut ()).await.unwrap();
    assert!(orders.seen.is_empty());

    let bad = RecordedEvent {
        event_type: "shop.ordered".into(),
        ..event
    };
    let error = orders.handle_event(&bad, &mut ()).await.unwrap_err();
    assert!(error.is::<eventsource_core::DecodeError>(), "{error}");
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// What a store hands each handler: here, a log of what was written in "its transaction".
#[derive(Default)]
pub struct Tx {
    pub writes: Vec<String>,
}

#[derive(Default, Projection)]
#[projection(name = "orders_in_tx", events(Ordered), context = Tx)]
pub struct OrdersInTx;

impl Handle<Ordered> for OrdersInTx {
    async fn handle(
        &mut self,
        e: Ordered,
        _: &RecordedEvent,
        tx: &mut Tx,
    ) -> Result<(), HandlerError> {
        tx.writes.push(e.sku);
        Ok(())
    }
}

#[tokio::test]
async fn handlers_get_the_projection_context() {
    let event = RecordedEvent {
        id: eventsource_core::EventId::new_random(),
        stream: "shop-1".into(),
        version: Version::new(1),
        position: Position::new(1, 0),
        event_type: "shop.purchased".into(),
        schema_version: 1,
        payload: r#"{"sku":"z"}"#.into(),
        metadata: Metadata::default(),
        recorded_at: chrono_now(),
    };
    let mut tx = Tx::default();
    OrdersInTx.handle_event(&event, &mut tx).await.unwrap();
    assert_eq!(tx.writes, ["z"]);
}

/// Counts shipments into a shared map, and clears it when rebuilt.
#[derive(Default, Projection)]
#[projection(name = "shipments", events(Shipped), reset = Self::clear)]
pub struct Shipments {
    pub count: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Shipments {
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        self.count.store(0, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

impl Handle<Shipped> for Shipments {
    async fn handle(
        &mut self,
        _: Shipped,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_rebuild_calls_the_reset_hook_before_replaying() {
    let store = InMemoryStore::new();
    let shipped = |sku: &str| NewEvent::new("shop.shipped", 1, format!(r#"{{"sku":"{sku}"}}"#));
    let commit = store
        .append(vec![StreamWrite::new(
            "shop-1",
            ExpectedVersion::Any,
            vec![shipped("a"), shipped("b")],
        )])
        .await
        .unwrap();
    let projection = Shipments::default();
    let count = projection.count.clone();
    let handle = ProjectionRunner::new(store, projection).spawn();
    let wait = std::time::Duration::from_secs(5);
    handle.wait_for(commit.position, wait).await.unwrap();
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    handle.rebuild().await.unwrap();
    handle.wait_for(commit.position, wait).await.unwrap();
    assert_eq!(
        count.load(std::sync::atomic::Ordering::SeqCst),
        2,
        "the read model was cleared, then replayed once"
    );
    handle.shutdown().await.unwrap();
}

/// A read model cleared by a plain `fn`: a hook with nothing to wait for need not be `async`.
#[derive(Default, Projection)]
#[projection(name = "tallies", events(Shipped), reset = Self::clear)]
pub struct Tallies {
    pub count: usize,
}

impl Tallies {
    fn clear(&mut self, (): &mut ()) -> Result<(), HandlerError> {
        self.count = 0;
        Ok(())
    }
}

impl Handle<Shipped> for Tallies {
    async fn handle(
        &mut self,
        _: Shipped,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.count += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_plain_fn_can_be_the_reset_hook() {
    let mut tallies = Tallies { count: 3 };
    Projection::reset(&mut tallies, &mut ()).await.unwrap();
    assert_eq!(tallies.count, 0);
}
