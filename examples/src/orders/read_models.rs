//! The shop's read models, fed by projections: orders by customer, and revenue per day. Every
//! change they apply is also published on [`Changes`], which the HTTP service pushes to
//! WebSocket clients.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use eventsource_core::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use super::model::{
    LineAdded, LineRemoved, OrderCancelled, OrderPaid, OrderPlaced, OrderShipped, OrderStatus,
    OrderSubmitted,
};

/// One change a read model applied, as pushed to subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "read_model", rename_all = "snake_case")]
pub enum ReadModelChange {
    /// An order's row in `orders_by_customer` changed.
    OrdersByCustomer {
        /// The position of the event that changed it (`"commit.sequence"`).
        position: String,
        /// The row as it is now.
        order: OrderSummary,
    },
    /// A day's revenue changed.
    RevenuePerDay {
        /// The position of the event that changed it.
        position: String,
        /// The day.
        day: NaiveDate,
        /// The day's revenue now, in cents.
        revenue_cents: i64,
    },
}

/// The channel read-model changes are published on. Subscribers that fall behind lose the
/// oldest changes (and are told so by the receiver), never slow the projections down.
#[derive(Debug, Clone)]
pub struct Changes(broadcast::Sender<ReadModelChange>);

impl Changes {
    /// A channel keeping up to `capacity` changes for slow subscribers.
    pub fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity.max(1)).0)
    }

    /// Receives every change published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ReadModelChange> {
        self.0.subscribe()
    }

    fn publish(&self, change: ReadModelChange) {
        // No subscriber is not an error: nobody is listening right now.
        let _ = self.0.send(change);
    }
}

/// One order as `orders_by_customer` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderSummary {
    /// The order id.
    pub order_id: String,
    /// Who ordered.
    pub customer: String,
    /// Where the order is.
    pub status: OrderStatus,
    /// What the lines add up to, in cents.
    pub total_cents: i64,
    /// The line subtotals, by product, in cents.
    pub lines: BTreeMap<String, i64>,
    /// The version of the order's stream this row reflects.
    pub version: Version,
}

/// The `orders_by_customer` read model. Cloning it shares the data.
#[derive(Debug, Clone, Projection)]
#[projection(
    name = "orders_by_customer",
    reset = Self::clear,
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
pub struct OrdersByCustomer {
    orders: Arc<Mutex<BTreeMap<String, OrderSummary>>>,
    changes: Changes,
}

impl OrdersByCustomer {
    /// An empty read model publishing its changes on `changes`.
    pub fn new(changes: Changes) -> Self {
        Self {
            orders: Arc::default(),
            changes,
        }
    }

    /// The orders of `customer`, by order id.
    pub fn of(&self, customer: &str) -> Vec<OrderSummary> {
        let orders = self.orders.lock();
        orders
            .values()
            .filter(|o| o.customer == customer)
            .cloned()
            .collect()
    }

    /// Forgets everything: the derive's `reset` hook, called before a rebuild replays the log.
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        self.orders.lock().clear();
        Ok(())
    }

    /// Applies one event to its order's row, skipping replays (at-least-once delivery).
    fn update(&self, envelope: &RecordedEvent, change: impl FnOnce(&mut OrderSummary)) {
        let order_id = super::order_id(&envelope.stream);
        let mut orders = self.orders.lock();
        let row = orders
            .entry(order_id.to_owned())
            .or_insert_with(|| OrderSummary {
                order_id: order_id.to_owned(),
                customer: String::new(),
                status: OrderStatus::Unknown,
                total_cents: 0,
                lines: BTreeMap::new(),
                version: Version::ZERO,
            });
        if envelope.version <= row.version {
            return;
        }
        change(row);
        row.total_cents = row.lines.values().sum();
        row.version = envelope.version;
        self.changes.publish(ReadModelChange::OrdersByCustomer {
            position: envelope.position.to_string(),
            order: row.clone(),
        });
    }
}

impl Handle<OrderPlaced> for OrdersByCustomer {
    async fn handle(
        &mut self,
        e: OrderPlaced,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| {
            row.customer = e.customer;
            row.status = OrderStatus::Open;
        });
        Ok(())
    }
}

impl Handle<LineAdded> for OrdersByCustomer {
    async fn handle(
        &mut self,
        e: LineAdded,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let subtotal = i64::from(e.quantity) * e.unit_price_cents;
        self.update(at, |row| {
            row.lines.insert(e.sku, subtotal);
        });
        Ok(())
    }
}

impl Handle<LineRemoved> for OrdersByCustomer {
    async fn handle(
        &mut self,
        e: LineRemoved,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| {
            row.lines.remove(&e.sku);
        });
        Ok(())
    }
}

impl Handle<OrderSubmitted> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderSubmitted,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.status = OrderStatus::Submitted);
        Ok(())
    }
}

impl Handle<OrderPaid> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderPaid,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.status = OrderStatus::Paid);
        Ok(())
    }
}

impl Handle<OrderShipped> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderShipped,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.status = OrderStatus::Shipped);
        Ok(())
    }
}

impl Handle<OrderCancelled> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderCancelled,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.status = OrderStatus::Cancelled);
        Ok(())
    }
}

/// The `revenue_per_day` read model: payments minus refunds, by the day they were recorded
/// (UTC). Cloning it shares the data.
#[derive(Debug, Clone, Projection)]
#[projection(name = "revenue_per_day", events(OrderPaid, OrderCancelled), reset = Self::clear)]
pub struct RevenuePerDay {
    revenue: Arc<Mutex<Revenue>>,
    changes: Changes,
}

#[derive(Debug, Default)]
struct Revenue {
    by_day: BTreeMap<NaiveDate, i64>,
    /// The last version counted per order: a replayed event is not counted twice.
    counted: HashMap<String, Version>,
}

impl RevenuePerDay {
    /// An empty read model publishing its changes on `changes`.
    pub fn new(changes: Changes) -> Self {
        Self {
            revenue: Arc::default(),
            changes,
        }
    }

    /// The revenue of every day with a payment or a refund, in cents.
    pub fn by_day(&self) -> BTreeMap<NaiveDate, i64> {
        self.revenue.lock().by_day.clone()
    }

    /// Forgets everything: the derive's `reset` hook, called before a rebuild replays the log.
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        *self.revenue.lock() = Revenue::default();
        Ok(())
    }

    fn add(&self, envelope: &RecordedEvent, amount_cents: i64) {
        let mut revenue = self.revenue.lock();
        let counted = revenue
            .counted
            .entry(envelope.stream.to_string())
            .or_insert(Version::ZERO);
        if envelope.version <= *counted {
            return;
        }
        *counted = envelope.version;
        let day = envelope.recorded_at.date_naive();
        let total = revenue.by_day.entry(day).or_default();
        *total += amount_cents;
        self.changes.publish(ReadModelChange::RevenuePerDay {
            position: envelope.position.to_string(),
            day,
            revenue_cents: *total,
        });
    }
}

impl Handle<OrderPaid> for RevenuePerDay {
    async fn handle(
        &mut self,
        e: OrderPaid,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.add(at, e.amount_cents);
        Ok(())
    }
}

impl Handle<OrderCancelled> for RevenuePerDay {
    async fn handle(
        &mut self,
        e: OrderCancelled,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        if e.refund_cents != 0 {
            self.add(at, -e.refund_cents);
        }
        Ok(())
    }
}
