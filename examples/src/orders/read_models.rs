//! The shop's read models, fed by projections: orders by customer, and revenue per day. Every
//! change they apply is also published on [`Changes`], which the HTTP service pushes to
//! WebSocket clients.
//!
//! Their arithmetic is checked: an event whose amounts do not add up (one the shop's rules
//! refuse, written by hand or before those rules) fails its handler with a [`ReadModelError`]
//! and changes nothing. The shop runs them under a failure policy that parks such an event in
//! the projection's dead letters, with the later events of its stream, while the read model
//! goes on with the other streams (see [`crate::projections::start_in_memory`]); an operator
//! lists the letters, deploys a fix ([`OrdersByCustomer::saturate_totals`] stands in for one),
//! and retries them. A runner left to its default policy stops on the event instead, its
//! checkpoint before it, the event named in its status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
        revenue_cents: i128,
    },
}

/// Why a read model could not apply an event: the runner's failure policy decides what
/// follows (the shop's parks the event in the projection's dead letters; the default stops the
/// projection, its checkpoint before the event, its status naming the event).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadModelError {
    /// An amount the read model computes from the event does not fit: the event holds
    /// amounts the shop's rules refuse.
    #[error("the {amount} overflows: the event holds amounts the shop refuses")]
    Overflow {
        /// Which amount: `"line total"`, `"order total"` or `"day's revenue"`.
        amount: &'static str,
    },
}

fn overflow(amount: &'static str) -> ReadModelError {
    ReadModelError::Overflow { amount }
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
    /// What the lines add up to, in cents (at most `i64::MAX`: see `total_overflowed`).
    pub total_cents: i64,
    /// The line subtotals, by product, in cents.
    pub lines: BTreeMap<String, i64>,
    /// Whether a line's subtotal or the order's total overflowed and was clamped to
    /// `i64::MAX` (only once [`OrdersByCustomer::saturate_totals`] is set; before, such an
    /// event fails): then `total_cents` and that line are not the true amounts, only a
    /// bound below them.
    pub total_overflowed: bool,
    /// The version of the order's stream this row reflects.
    pub version: Version,
}

/// A row of `orders_by_customer` as the read model keeps it: the summary it shows, and which
/// of its lines were clamped (to tell the row's flag when a line is replaced or removed).
#[derive(Debug, Clone)]
struct Row {
    summary: OrderSummary,
    clamped_lines: BTreeSet<String>,
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
    orders: Arc<Mutex<BTreeMap<String, Row>>>,
    /// Set by [`OrdersByCustomer::saturate_totals`]; shared by the clones.
    saturate: Arc<AtomicBool>,
    changes: Changes,
}

impl OrdersByCustomer {
    /// An empty read model publishing its changes on `changes`.
    pub fn new(changes: Changes) -> Self {
        Self {
            orders: Arc::default(),
            saturate: Arc::default(),
            changes,
        }
    }

    /// The orders of `customer`, by order id.
    pub fn of(&self, customer: &str) -> Vec<OrderSummary> {
        let orders = self.orders.lock();
        orders
            .values()
            .filter(|row| row.summary.customer == customer)
            .map(|row| row.summary.clone())
            .collect()
    }

    /// Stands in for deploying a fixed handler, the fix for events whose amounts overflow:
    /// from now on (for this read model and its clones, the runner's included), a line's
    /// subtotal or an order's total that does not fit in an `i64` is clamped to `i64::MAX`
    /// and its row flagged ([`OrderSummary::total_overflowed`]), instead of failing the
    /// event. The events that failed before are not changed by it: retry their dead letters
    /// ([`ProjectionHandle::retry_dead_letters`](eventsource_core::ProjectionHandle::retry_dead_letters))
    /// to apply them with the fix.
    pub fn saturate_totals(&self) {
        self.saturate.store(true, Ordering::Release);
    }

    /// Whether [`OrdersByCustomer::saturate_totals`] was called.
    pub fn saturates_totals(&self) -> bool {
        self.saturate.load(Ordering::Acquire)
    }

    /// Forgets everything: the derive's `reset` hook, called before a rebuild replays the log.
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        self.orders.lock().clear();
        Ok(())
    }

    /// Applies one event to its order's row, skipping replays (at-least-once delivery). The
    /// row is changed on a copy, kept once its total adds up (or, saturating, is clamped): an
    /// event that overflows leaves the read model as it was.
    fn update(
        &self,
        envelope: &RecordedEvent,
        change: impl FnOnce(&mut Row),
    ) -> Result<(), HandlerError> {
        let order_id = super::order_id(&envelope.stream);
        let mut orders = self.orders.lock();
        let mut row = match orders.get(order_id) {
            Some(row) if envelope.version <= row.summary.version => return Ok(()),
            Some(row) => row.clone(),
            None => Row {
                summary: OrderSummary {
                    order_id: order_id.to_owned(),
                    customer: String::new(),
                    status: OrderStatus::Unknown,
                    total_cents: 0,
                    lines: BTreeMap::new(),
                    total_overflowed: false,
                    version: Version::ZERO,
                },
                clamped_lines: BTreeSet::new(),
            },
        };
        change(&mut row);
        let total = row
            .summary
            .lines
            .values()
            .try_fold(0_i64, |sum, line| sum.checked_add(*line));
        let (total, clamped) = match total {
            Some(total) => (total, false),
            None if self.saturates_totals() => (i64::MAX, true),
            None => return Err(overflow("order total").into()),
        };
        let summary = &mut row.summary;
        summary.total_cents = total;
        summary.total_overflowed = clamped || !row.clamped_lines.is_empty();
        summary.version = envelope.version;
        let summary = summary.clone();
        orders.insert(order_id.to_owned(), row);
        self.changes.publish(ReadModelChange::OrdersByCustomer {
            position: envelope.position.to_string(),
            order: summary,
        });
        Ok(())
    }

    /// The subtotal of `line`, and whether it was clamped: `i64::MAX` for one that
    /// overflows, once saturating; an error before.
    fn subtotal(&self, line: &LineAdded) -> Result<(i64, bool), ReadModelError> {
        match line.line().total_cents() {
            Some(subtotal) => Ok((subtotal, false)),
            None if self.saturates_totals() => Ok((i64::MAX, true)),
            None => Err(overflow("line total")),
        }
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
            row.summary.customer = e.customer;
            row.summary.status = OrderStatus::Open;
        })
    }
}

impl Handle<LineAdded> for OrdersByCustomer {
    async fn handle(
        &mut self,
        e: LineAdded,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let (subtotal, clamped) = self.subtotal(&e)?;
        self.update(at, |row| {
            if clamped {
                row.clamped_lines.insert(e.sku.clone());
            } else {
                row.clamped_lines.remove(&e.sku);
            }
            row.summary.lines.insert(e.sku, subtotal);
        })
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
            row.clamped_lines.remove(&e.sku);
            row.summary.lines.remove(&e.sku);
        })
    }
}

impl Handle<OrderSubmitted> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderSubmitted,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.summary.status = OrderStatus::Submitted)
    }
}

impl Handle<OrderPaid> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderPaid,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.summary.status = OrderStatus::Paid)
    }
}

impl Handle<OrderShipped> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderShipped,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.summary.status = OrderStatus::Shipped)
    }
}

impl Handle<OrderCancelled> for OrdersByCustomer {
    async fn handle(
        &mut self,
        _: OrderCancelled,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.update(at, |row| row.summary.status = OrderStatus::Cancelled)
    }
}

/// The `revenue_per_day` read model: payments minus refunds, by the day they were recorded
/// (UTC). A day's revenue is an `i128` of cents: payments are `i64`s, so it would take 2^64
/// of the largest in one day to overflow it. Cloning it shares the data.
#[derive(Debug, Clone, Projection)]
#[projection(name = "revenue_per_day", events(OrderPaid, OrderCancelled), reset = Self::clear)]
pub struct RevenuePerDay {
    revenue: Arc<Mutex<Revenue>>,
    changes: Changes,
}

#[derive(Debug, Default)]
struct Revenue {
    by_day: BTreeMap<NaiveDate, i128>,
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
    pub fn by_day(&self) -> BTreeMap<NaiveDate, i128> {
        self.revenue.lock().by_day.clone()
    }

    /// Forgets everything: the derive's `reset` hook, called before a rebuild replays the log.
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        *self.revenue.lock() = Revenue::default();
        Ok(())
    }

    /// Changes the revenue of the event's day with `change`, which returns `None` when the
    /// result does not fit (then nothing changes); skips replays.
    fn change(
        &self,
        envelope: &RecordedEvent,
        change: impl FnOnce(i128) -> Option<i128>,
    ) -> Result<(), HandlerError> {
        let mut revenue = self.revenue.lock();
        let Revenue { by_day, counted } = &mut *revenue;
        let counted = counted
            .entry(envelope.stream.to_string())
            .or_insert(Version::ZERO);
        if envelope.version <= *counted {
            return Ok(());
        }
        let day = envelope.recorded_at.date_naive();
        let before = by_day.get(&day).copied().unwrap_or_default();
        let total = change(before).ok_or(overflow("day's revenue"))?;
        by_day.insert(day, total);
        *counted = envelope.version;
        self.changes.publish(ReadModelChange::RevenuePerDay {
            position: envelope.position.to_string(),
            day,
            revenue_cents: total,
        });
        Ok(())
    }
}

impl Handle<OrderPaid> for RevenuePerDay {
    async fn handle(
        &mut self,
        e: OrderPaid,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.change(at, |day| day.checked_add(e.amount_cents.into()))
    }
}

impl Handle<OrderCancelled> for RevenuePerDay {
    async fn handle(
        &mut self,
        e: OrderCancelled,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        if e.refund_cents == 0 {
            return Ok(());
        }
        self.change(at, |day| day.checked_sub(e.refund_cents.into()))
    }
}
