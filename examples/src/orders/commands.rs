//! The shop's rules: each decision looks at an order and returns what happens, or why not.

use super::model::{
    LineAdded, LineRemoved, Order, OrderCancelled, OrderPaid, OrderPlaced, OrderShipped,
    OrderStatus, OrderSubmitted,
};

/// Why an order command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    /// No order was placed under this id.
    #[error("there is no such order")]
    NotFound,
    /// An order was already placed under this id.
    #[error("the order was already placed")]
    AlreadyPlaced,
    /// A command carried a value no order can hold.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Lines only change while the order is open.
    #[error("the order is {0:?}: its lines can no longer change")]
    NotOpen(OrderStatus),
    /// A line whose total, or the order's total with it, would not fit in an amount of cents
    /// (an `i64`): an order never holds an amount it cannot add up.
    #[error("the {amount} would exceed {max} cents, the most an amount can be", max = i64::MAX)]
    TooLarge {
        /// Which amount: `"line total"` or `"order total"`.
        amount: &'static str,
    },
    /// The order's history holds amounts that do not add up within an amount of cents, which
    /// the shop's rules refuse: events written by hand, or before those rules. What needs the
    /// amount refuses with this rather than computing a wrong one; lines can still be removed.
    #[error(
        "the order's {amount} does not fit in an amount of cents: its history holds amounts the shop refuses"
    )]
    HistoryOverflows {
        /// Which amount: `"order total"` or `"amount paid"`.
        amount: &'static str,
    },
    /// The product already has a line.
    #[error("`{0}` is already in the order: remove its line first")]
    DuplicateLine(String),
    /// The product has no line.
    #[error("`{0}` is not in the order")]
    UnknownLine(String),
    /// An order needs a line to be submitted.
    #[error("an empty order cannot be submitted")]
    Empty,
    /// Payment is due only once the order is submitted, and only once.
    #[error("the order is {0:?}: it cannot be paid")]
    NotPayable(OrderStatus),
    /// The payment must cover the order exactly.
    #[error("the order costs {due_cents} cents, {offered_cents} were offered")]
    WrongAmount {
        /// What the order costs.
        due_cents: i64,
        /// What was offered.
        offered_cents: i64,
    },
    /// Only paid orders ship.
    #[error("the order is {0:?}: only paid orders ship")]
    NotPaid(OrderStatus),
    /// Shipped and cancelled orders are done.
    #[error("the order is {0:?}: it can no longer be cancelled")]
    NotCancellable(OrderStatus),
}

impl Order {
    /// The amount due, in cents: what the lines add up to. Fails with
    /// [`OrderError::HistoryOverflows`] when that does not fit in an `i64`.
    pub fn total_cents(&self) -> Result<i64, OrderError> {
        self.lines
            .values()
            .try_fold(0_i64, |sum, line| sum.checked_add(line.total_cents()?))
            .ok_or(OrderError::HistoryOverflows {
                amount: "order total",
            })
    }

    /// What was paid, in cents: payments minus refunds. Fails with
    /// [`OrderError::HistoryOverflows`] when that did not fit in an `i64`.
    pub fn paid(&self) -> Result<i64, OrderError> {
        if self.paid_overflowed {
            return Err(OrderError::HistoryOverflows {
                amount: "amount paid",
            });
        }
        Ok(self.paid_cents)
    }

    /// Places the order for `customer`.
    pub fn place(&self, customer: &str) -> Result<OrderPlaced, OrderError> {
        if self.status != OrderStatus::Unknown {
            return Err(OrderError::AlreadyPlaced);
        }
        if customer.trim().is_empty() {
            return Err(invalid("customer", "must not be empty"));
        }
        Ok(OrderPlaced {
            customer: customer.to_owned(),
        })
    }

    /// Adds a line of `quantity` times `sku` at `unit_price_cents` each. The quantity is
    /// taken as any integer, so that a negative one is refused as a value, like zero.
    pub fn add_line(
        &self,
        sku: &str,
        quantity: i64,
        unit_price_cents: i64,
    ) -> Result<LineAdded, OrderError> {
        self.ensure_open()?;
        if sku.trim().is_empty() {
            return Err(invalid("sku", "must not be empty"));
        }
        if quantity < 1 {
            return Err(invalid("quantity", "must be at least 1"));
        }
        // The event holds a `u32`.
        let Ok(quantity) = u32::try_from(quantity) else {
            return Err(invalid("quantity", "must be at most 4294967295"));
        };
        if unit_price_cents < 0 {
            return Err(invalid("unit_price_cents", "must not be negative"));
        }
        if self.lines.contains_key(sku) {
            return Err(OrderError::DuplicateLine(sku.to_owned()));
        }
        let added = LineAdded {
            sku: sku.to_owned(),
            quantity,
            unit_price_cents,
        };
        let line_total = added.line().total_cents().ok_or(OrderError::TooLarge {
            amount: "line total",
        })?;
        self.total_cents()?
            .checked_add(line_total)
            .ok_or(OrderError::TooLarge {
                amount: "order total",
            })?;
        Ok(added)
    }

    /// Removes the line of `sku`.
    pub fn remove_line(&self, sku: &str) -> Result<LineRemoved, OrderError> {
        self.ensure_open()?;
        if !self.lines.contains_key(sku) {
            return Err(OrderError::UnknownLine(sku.to_owned()));
        }
        Ok(LineRemoved {
            sku: sku.to_owned(),
        })
    }

    /// Submits the order: its lines become final and its total due.
    pub fn submit(&self) -> Result<OrderSubmitted, OrderError> {
        self.ensure_open()?;
        if self.lines.is_empty() {
            return Err(OrderError::Empty);
        }
        Ok(OrderSubmitted {
            total_cents: self.total_cents()?,
        })
    }

    /// Pays the order, which must be submitted and cost exactly `amount_cents`.
    pub fn pay(&self, amount_cents: i64) -> Result<OrderPaid, OrderError> {
        match self.status {
            OrderStatus::Unknown => return Err(OrderError::NotFound),
            OrderStatus::Submitted => {}
            other => return Err(OrderError::NotPayable(other)),
        }
        if amount_cents < 0 {
            return Err(invalid("amount_cents", "must not be negative"));
        }
        let due_cents = self.total_cents()?;
        if amount_cents != due_cents {
            return Err(OrderError::WrongAmount {
                due_cents,
                offered_cents: amount_cents,
            });
        }
        Ok(OrderPaid { amount_cents })
    }

    /// Ships the order, which must be paid.
    pub fn ship(&self) -> Result<OrderShipped, OrderError> {
        match self.status {
            OrderStatus::Unknown => Err(OrderError::NotFound),
            OrderStatus::Paid => Ok(OrderShipped {}),
            other => Err(OrderError::NotPaid(other)),
        }
    }

    /// Cancels the order and refunds what was paid; shipped orders cannot be cancelled.
    pub fn cancel(&self, reason: &str) -> Result<OrderCancelled, OrderError> {
        match self.status {
            OrderStatus::Unknown => Err(OrderError::NotFound),
            OrderStatus::Shipped | OrderStatus::Cancelled => {
                Err(OrderError::NotCancellable(self.status))
            }
            OrderStatus::Open | OrderStatus::Submitted | OrderStatus::Paid => Ok(OrderCancelled {
                reason: reason.to_owned(),
                refund_cents: self.paid()?,
            }),
        }
    }

    fn ensure_open(&self) -> Result<(), OrderError> {
        match self.status {
            OrderStatus::Unknown => Err(OrderError::NotFound),
            OrderStatus::Open => Ok(()),
            other => Err(OrderError::NotOpen(other)),
        }
    }
}

fn invalid(field: &'static str, reason: &'static str) -> OrderError {
    OrderError::Invalid { field, reason }
}
