//! The order model: what can happen to an order, and the state those events fold into.

use std::collections::BTreeMap;

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

/// A customer started an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.placed")]
pub struct OrderPlaced {
    /// Who ordered.
    pub customer: String,
}

/// A line was added to an open order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.line_added")]
pub struct LineAdded {
    /// The product.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price of one, in cents.
    pub unit_price_cents: i64,
}

impl LineAdded {
    /// The line this event adds.
    pub fn line(&self) -> Line {
        Line {
            quantity: self.quantity,
            unit_price_cents: self.unit_price_cents,
        }
    }
}

/// A line was removed from an open order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.line_removed")]
pub struct LineRemoved {
    /// The product whose line was removed.
    pub sku: String,
}

/// The customer submitted the order: its lines are final.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.submitted")]
pub struct OrderSubmitted {
    /// The amount due, in cents.
    pub total_cents: i64,
}

/// The order was paid in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.paid")]
pub struct OrderPaid {
    /// The amount paid, in cents.
    pub amount_cents: i64,
}

/// The order left the warehouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.shipped")]
pub struct OrderShipped {}

/// The order was cancelled, and what was paid for it refunded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "order.cancelled")]
pub struct OrderCancelled {
    /// Why.
    pub reason: String,
    /// The amount refunded, in cents (zero when nothing was paid).
    pub refund_cents: i64,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not placed: the order does not exist.
    #[default]
    Unknown,
    /// Placed; lines can be added and removed.
    Open,
    /// Submitted; waiting for payment.
    Submitted,
    /// Paid; waiting to be shipped.
    Paid,
    /// Shipped: done.
    Shipped,
    /// Cancelled: done.
    Cancelled,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    /// How many.
    pub quantity: u32,
    /// The price of one, in cents.
    pub unit_price_cents: i64,
}

impl Line {
    /// The line's total, in cents: `None` when it does not fit in an `i64`.
    pub fn total_cents(&self) -> Option<i64> {
        i64::from(self.quantity).checked_mul(self.unit_price_cents)
    }
}

/// An order: the state its events fold into.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "order",
    events(
        OrderPlaced,
        LineAdded,
        LineRemoved,
        OrderSubmitted,
        OrderPaid,
        OrderShipped,
        OrderCancelled
    )
)]
pub struct Order {
    /// Who ordered.
    pub customer: Option<String>,
    /// Where the order is in its life.
    pub status: OrderStatus,
    /// The lines, by product.
    pub lines: BTreeMap<String, Line>,
    /// What was paid, in cents: payments minus refunds. Read it with [`Order::paid`], which
    /// says when it is not to be trusted.
    pub paid_cents: i64,
    /// Whether the payments and refunds did not add up within an `i64`, which only a history
    /// the shop's rules refuse can do (events written by hand, or before the rules): then
    /// `paid_cents` means nothing, and what needs it refuses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paid_overflowed: bool,
}

impl Apply<OrderPlaced> for Order {
    fn apply(&mut self, e: &OrderPlaced) {
        self.customer = Some(e.customer.clone());
        self.status = OrderStatus::Open;
    }
}

impl Apply<LineAdded> for Order {
    fn apply(&mut self, e: &LineAdded) {
        self.lines.insert(e.sku.clone(), e.line());
    }
}

impl Apply<LineRemoved> for Order {
    fn apply(&mut self, e: &LineRemoved) {
        self.lines.remove(&e.sku);
    }
}

impl Apply<OrderSubmitted> for Order {
    fn apply(&mut self, _: &OrderSubmitted) {
        self.status = OrderStatus::Submitted;
    }
}

impl Apply<OrderPaid> for Order {
    fn apply(&mut self, e: &OrderPaid) {
        self.fold_paid(self.paid_cents.checked_add(e.amount_cents));
        self.status = OrderStatus::Paid;
    }
}

impl Apply<OrderShipped> for Order {
    fn apply(&mut self, _: &OrderShipped) {
        self.status = OrderStatus::Shipped;
    }
}

impl Apply<OrderCancelled> for Order {
    fn apply(&mut self, e: &OrderCancelled) {
        self.fold_paid(self.paid_cents.checked_sub(e.refund_cents));
        self.status = OrderStatus::Cancelled;
    }
}

impl Order {
    /// Keeps what was paid now, or notes that it overflowed (`None`): folding a stored
    /// history neither panics nor wraps.
    fn fold_paid(&mut self, paid: Option<i64>) {
        match paid {
            Some(paid) => self.paid_cents = paid,
            None => self.paid_overflowed = true,
        }
    }
}
