//! The shop's walkthrough, end to end, on both stores.

mod common;

use eventsource_core::AnyStore;
use eventsource_examples::orders::walkthrough::OrdersWalkthroughError;
use eventsource_examples::orders::{OrderError, OrderStatus, Shop, run_walkthrough};

#[tokio::test]
async fn the_walkthrough_runs_on_the_in_memory_store() -> Result<(), OrdersWalkthroughError> {
    walk(common::in_memory()).await
}

#[tokio::test]
async fn the_walkthrough_runs_on_postgres() -> Result<(), OrdersWalkthroughError> {
    walk(common::postgres("orders_walkthrough").await).await
}

async fn walk(store: AnyStore) -> Result<(), OrdersWalkthroughError> {
    let shop = Shop::start(store).await?;
    let tour = run_walkthrough(&shop).await?;

    assert_eq!(tour.ada_orders.len(), 1, "{:?}", tour.ada_orders);
    let ada = &tour.ada_orders[0];
    assert_eq!(
        (ada.status, ada.total_cents, ada.version.get()),
        (OrderStatus::Shipped, 900, 7)
    );
    assert_eq!(ada.lines.keys().collect::<Vec<_>>(), ["tea"]);
    assert_eq!(tour.bea_orders.len(), 1, "{:?}", tour.bea_orders);
    let bea = &tour.bea_orders[0];
    assert_eq!(
        (bea.status, bea.total_cents, bea.version.get()),
        (OrderStatus::Cancelled, 500, 5)
    );

    // The store is fresh: ada's payment is all the revenue, bea's was refunded.
    assert_eq!(tour.revenue.values().sum::<i128>(), 900);

    let refused: Vec<_> = tour.refusals.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(
        refused,
        [
            OrderError::NotOpen(OrderStatus::Submitted),
            OrderError::NotPaid(OrderStatus::Submitted),
            OrderError::WrongAmount {
                due_cents: 900,
                offered_cents: 500
            },
            OrderError::NotPaid(OrderStatus::Cancelled),
        ]
    );
    // 12 order events change a row each; 2 payments and 1 refund change a day's revenue.
    assert_eq!(tour.pushed_changes, 15);
    assert!(tour.last_position > eventsource_core::Position::ZERO);
    assert!(tour.to_string().contains("reading your own writes"));

    // The line an older release stored: dead-lettered, then, the fix deployed, retried.
    let letter = &tour.dead_letter;
    assert_eq!(
        (
            letter.event.event_type.as_str(),
            letter.event.version.get(),
            letter.reason.as_str()
        ),
        ("order.line_added", 2, "failed")
    );
    assert!(letter.error.contains("overflows"), "{}", letter.error);
    let repaired = &tour.repaired;
    assert_eq!(
        (
            repaired.total_cents,
            repaired.total_overflowed,
            repaired.version.get()
        ),
        (i64::MAX, true, 2)
    );
    assert_eq!(tour.letters_left, 0);
    assert!(tour.to_string().contains("dead letters"));
    shop.shutdown().await?;
    Ok(())
}
