//! The shop's rules, one decision at a time, through the given/when/then harness.

use eventsource_core::EventRegistry;
use eventsource_core::testing::given;
use eventsource_core::testing::harness::Given;
use eventsource_examples::account::Account;
use eventsource_examples::orders::*;

fn placed() -> OrderPlaced {
    OrderPlaced {
        customer: "ada".into(),
    }
}

fn tea() -> LineAdded {
    LineAdded {
        sku: "tea".into(),
        quantity: 2,
        unit_price_cents: 450,
    }
}

fn invalid(field: &'static str, reason: &'static str) -> OrderError {
    OrderError::Invalid { field, reason }
}

/// An order with one line of tea (9.00), submitted.
fn submitted() -> Given<Order> {
    given::<Order>(placed())
        .and(tea())
        .and(OrderSubmitted { total_cents: 900 })
}

fn paid() -> Given<Order> {
    submitted().and(OrderPaid { amount_cents: 900 })
}

#[test]
fn an_order_is_placed_once() {
    let order = given::<Order>(()).when(|o| o.place("ada")).then(placed());
    assert_eq!(order.status, OrderStatus::Open);
    given::<Order>(placed())
        .when(|o| o.place("ada"))
        .then_error(OrderError::AlreadyPlaced);
}

#[test]
fn an_order_needs_a_customer() {
    given::<Order>(())
        .when(|o| o.place("  "))
        .then_error(invalid("customer", "must not be empty"));
}

#[test]
fn commands_on_an_order_that_was_never_placed_find_nothing() {
    let unknown = || given::<Order>(());
    unknown()
        .when(|o| o.add_line("tea", 1, 450))
        .then_error(OrderError::NotFound);
    unknown()
        .when(|o| o.remove_line("tea"))
        .then_error(OrderError::NotFound);
    unknown()
        .when(Order::submit)
        .then_error(OrderError::NotFound);
    unknown()
        .when(|o| o.pay(0))
        .then_error(OrderError::NotFound);
    unknown().when(Order::ship).then_error(OrderError::NotFound);
    unknown()
        .when(|o| o.cancel("why"))
        .then_error(OrderError::NotFound);
}

#[test]
fn lines_are_added_to_an_open_order() {
    let order = given::<Order>(placed())
        .when(|o| o.add_line("tea", 2, 450))
        .then(tea());
    assert_eq!(order.total_cents(), Ok(900));
}

#[test]
fn a_line_needs_a_product_a_quantity_and_a_price() {
    let open = || given::<Order>(placed());
    open()
        .when(|o| o.add_line("", 1, 450))
        .then_error(invalid("sku", "must not be empty"));
    open()
        .when(|o| o.add_line("tea", 0, 450))
        .then_error(invalid("quantity", "must be at least 1"));
    open()
        .when(|o| o.add_line("tea", 1, -1))
        .then_error(invalid("unit_price_cents", "must not be negative"));
}

#[test]
fn a_quantity_below_one_is_invalid_whatever_its_sign() {
    let open = || given::<Order>(placed());
    open()
        .when(|o| o.add_line("tea", -2, 450))
        .then_error(invalid("quantity", "must be at least 1"));
    open()
        .when(|o| o.add_line("tea", i64::MIN, 450))
        .then_error(invalid("quantity", "must be at least 1"));
    open()
        .when(|o| o.add_line("tea", i64::from(u32::MAX) + 1, 450))
        .then_error(invalid("quantity", "must be at most 4294967295"));
    open()
        .when(|o| o.add_line("tea", i64::from(u32::MAX), 1))
        .then(LineAdded {
            sku: "tea".into(),
            quantity: u32::MAX,
            unit_price_cents: 1,
        });
}

#[test]
fn a_line_is_refused_when_its_total_or_the_orders_would_not_fit() {
    let open = || given::<Order>(placed());
    open()
        .when(|o| o.add_line("gold", i64::from(u32::MAX), i64::MAX))
        .then_error(OrderError::TooLarge {
            amount: "line total",
        });
    let gold = |unit_price_cents| LineAdded {
        sku: "gold".into(),
        quantity: 1,
        unit_price_cents,
    };
    open()
        .and(gold(i64::MAX))
        .when(|o| o.add_line("tea", 1, 1))
        .then_error(OrderError::TooLarge {
            amount: "order total",
        });
    // Up to the last cent, it fits.
    let order = open()
        .and(gold(i64::MAX - 1))
        .when(|o| o.add_line("tea", 1, 1))
        .then(LineAdded {
            sku: "tea".into(),
            quantity: 1,
            unit_price_cents: 1,
        });
    assert_eq!(order.total_cents(), Ok(i64::MAX));
}

/// A line the rules refuse, as an event written before they did (or by hand).
fn poisoned() -> Given<Order> {
    given::<Order>(placed()).and(LineAdded {
        sku: "gold".into(),
        quantity: u32::MAX,
        unit_price_cents: i64::MAX,
    })
}

#[test]
fn an_order_whose_stored_lines_overflow_refuses_what_needs_its_total() {
    let overflows = || OrderError::HistoryOverflows {
        amount: "order total",
    };
    assert_eq!(poisoned().state().total_cents(), Err(overflows()));
    poisoned().when(Order::submit).then_error(overflows());
    poisoned()
        .when(|o| o.add_line("tea", 1, 1))
        .then_error(overflows());
    // Removing the line mends it.
    let order = poisoned()
        .when(|o| o.remove_line("gold"))
        .then(LineRemoved { sku: "gold".into() });
    assert_eq!(order.total_cents(), Ok(0));
}

#[test]
fn payments_that_overflow_when_added_up_fold_without_panicking_and_block_the_refund() {
    let overpaid = || {
        submitted()
            .and(OrderPaid {
                amount_cents: i64::MAX,
            })
            .and(OrderPaid { amount_cents: 1 })
    };
    assert_eq!(
        overpaid().state().paid(),
        Err(OrderError::HistoryOverflows {
            amount: "amount paid"
        })
    );
    overpaid()
        .when(|o| o.cancel("too much"))
        .then_error(OrderError::HistoryOverflows {
            amount: "amount paid",
        });
}

#[test]
fn a_product_has_one_line() {
    given::<Order>(placed())
        .and(tea())
        .when(|o| o.add_line("tea", 1, 450))
        .then_error(OrderError::DuplicateLine("tea".into()));
}

#[test]
fn lines_are_removed_from_an_open_order() {
    let order = given::<Order>(placed())
        .and(tea())
        .when(|o| o.remove_line("tea"))
        .then(LineRemoved { sku: "tea".into() });
    assert_eq!(order.total_cents(), Ok(0));
    given::<Order>(placed())
        .when(|o| o.remove_line("tea"))
        .then_error(OrderError::UnknownLine("tea".into()));
}

#[test]
fn a_submitted_order_no_longer_changes() {
    submitted()
        .when(|o| o.add_line("cake", 1, 300))
        .then_error(OrderError::NotOpen(OrderStatus::Submitted));
    submitted()
        .when(|o| o.remove_line("tea"))
        .then_error(OrderError::NotOpen(OrderStatus::Submitted));
    submitted()
        .when(Order::submit)
        .then_error(OrderError::NotOpen(OrderStatus::Submitted));
}

#[test]
fn submitting_fixes_the_total() {
    given::<Order>(placed())
        .and(tea())
        .when(Order::submit)
        .then(OrderSubmitted { total_cents: 900 });
}

#[test]
fn an_empty_order_is_not_submitted() {
    given::<Order>(placed())
        .when(Order::submit)
        .then_error(OrderError::Empty);
}

#[test]
fn a_submitted_order_is_paid_in_full() {
    let order = submitted()
        .when(|o| o.pay(900))
        .then(OrderPaid { amount_cents: 900 });
    assert_eq!(order.status, OrderStatus::Paid);
    submitted()
        .when(|o| o.pay(899))
        .then_error(OrderError::WrongAmount {
            due_cents: 900,
            offered_cents: 899,
        });
}

#[test]
fn a_negative_payment_is_an_invalid_value() {
    submitted()
        .when(|o| o.pay(-900))
        .then_error(invalid("amount_cents", "must not be negative"));
}

#[test]
fn only_a_submitted_order_is_paid_and_only_once() {
    given::<Order>(placed())
        .and(tea())
        .when(|o| o.pay(900))
        .then_error(OrderError::NotPayable(OrderStatus::Open));
    paid()
        .when(|o| o.pay(900))
        .then_error(OrderError::NotPayable(OrderStatus::Paid));
}

#[test]
fn nothing_ships_before_payment() {
    given::<Order>(placed())
        .when(Order::ship)
        .then_error(OrderError::NotPaid(OrderStatus::Open));
    submitted()
        .when(Order::ship)
        .then_error(OrderError::NotPaid(OrderStatus::Submitted));
}

#[test]
fn a_paid_order_ships_once() {
    let order = paid().when(Order::ship).then(OrderShipped {});
    assert_eq!(order.status, OrderStatus::Shipped);
    paid()
        .and(OrderShipped {})
        .when(Order::ship)
        .then_error(OrderError::NotPaid(OrderStatus::Shipped));
}

#[test]
fn cancelling_refunds_what_was_paid() {
    given::<Order>(placed())
        .when(|o| o.cancel("changed my mind"))
        .then(OrderCancelled {
            reason: "changed my mind".into(),
            refund_cents: 0,
        });
    let order = paid().when(|o| o.cancel("too slow")).then(OrderCancelled {
        reason: "too slow".into(),
        refund_cents: 900,
    });
    assert_eq!(
        (order.status, order.paid_cents),
        (OrderStatus::Cancelled, 0)
    );
}

#[test]
fn shipped_and_cancelled_orders_are_done() {
    paid()
        .and(OrderShipped {})
        .when(|o| o.cancel("late"))
        .then_error(OrderError::NotCancellable(OrderStatus::Shipped));
    let cancelled = || {
        given::<Order>(placed()).and(OrderCancelled {
            reason: "x".into(),
            refund_cents: 0,
        })
    };
    cancelled()
        .when(|o| o.cancel("again"))
        .then_error(OrderError::NotCancellable(OrderStatus::Cancelled));
    cancelled()
        .when(|o| o.add_line("tea", 1, 450))
        .then_error(OrderError::NotOpen(OrderStatus::Cancelled));
    cancelled()
        .when(|o| o.pay(0))
        .then_error(OrderError::NotPayable(OrderStatus::Cancelled));
}

#[test]
fn the_two_domains_claim_distinct_event_types() {
    let registry = EventRegistry::new().register::<Account>().unwrap();
    registry.register::<Order>().unwrap();
}
