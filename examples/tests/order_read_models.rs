//! The shop's read models on events the shop's rules refuse (written by hand, or before the
//! rules): their arithmetic is checked, so such an event stops its projection with a typed
//! error naming it, and changes nothing; where a read model can hold the result, it does.

// The helper below runs outside `#[test]` functions; a failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use eventsource_core::{
    Aggregate, EventStore, ExpectedVersion, InMemoryStore, NewEvent, ProjectionError,
    ProjectionRunner, StreamWrite,
};
use eventsource_examples::orders::{
    Changes, Order, OrdersByCustomer, ReadModelError, RevenuePerDay,
};
use serde_json::{Value, json};

/// A store holding one order's events, written as they are, past every rule.
async fn store_with(events: &[(&str, Value)]) -> InMemoryStore {
    let store = InMemoryStore::new();
    let events = events
        .iter()
        .map(|(event_type, payload)| {
            NewEvent::new(*event_type, 1, serde_json::to_vec(payload).unwrap())
        })
        .collect();
    store
        .append(vec![StreamWrite::new(
            Order::stream_id("1"),
            ExpectedVersion::NoStream,
            events,
        )])
        .await
        .unwrap();
    store
}

#[tokio::test]
async fn lines_that_add_up_past_an_i64_stop_orders_by_customer_on_the_event_that_overflows() {
    let line = |sku: &str, price: i64| {
        (
            "order.line_added",
            json!({ "sku": sku, "quantity": 1, "unit_price_cents": price }),
        )
    };
    let store = store_with(&[
        ("order.placed", json!({ "customer": "ada" })),
        line("gold", i64::MAX),
        line("tea", 1),
    ])
    .await;
    let by_customer = OrdersByCustomer::new(Changes::new(16));
    let mut runner = ProjectionRunner::new(store, by_customer.clone());

    let Err(ProjectionError::Handler {
        event_type,
        version,
        source,
        ..
    }) = runner.catch_up().await
    else {
        panic!("the projection does not stop on the overflowing line");
    };
    assert_eq!(
        (event_type.as_str(), version.get()),
        ("order.line_added", 3)
    );
    assert_eq!(
        source.downcast_ref::<ReadModelError>(),
        Some(&ReadModelError::Overflow {
            amount: "order total"
        })
    );
    // The row is the one before that event.
    let orders = by_customer.of("ada");
    assert_eq!(
        (
            orders[0].total_cents,
            orders[0].lines.len(),
            orders[0].version.get()
        ),
        (i64::MAX, 1, 2)
    );
}

#[tokio::test]
async fn revenue_per_day_holds_sums_past_an_i64() {
    let store = store_with(&[
        ("order.placed", json!({ "customer": "ada" })),
        ("order.paid", json!({ "amount_cents": i64::MAX })),
        (
            "order.cancelled",
            json!({ "reason": "by hand", "refund_cents": i64::MIN }),
        ),
    ])
    .await;
    let revenue = RevenuePerDay::new(Changes::new(16));
    ProjectionRunner::new(store, revenue.clone())
        .catch_up()
        .await
        .unwrap();
    let total: i128 = revenue.by_day().values().sum();
    assert_eq!(total, i128::from(i64::MAX) - i128::from(i64::MIN));
}
