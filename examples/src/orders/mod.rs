//! The order domain: a shop's orders, served over HTTP.
//!
//! - [`model`]: the events and the order aggregate;
//! - [`commands`]: the shop's rules (no changes after submit, no shipping before payment, ...);
//! - [`read_models`]: orders by customer, revenue per day, and the channel of their changes;
//! - [`shop`]: the repository and the read models together, their dead letters included;
//! - [`http`]: the axum service the `orders` binary runs;
//! - [`walkthrough`]: the tour the binary prints before it starts serving.

pub mod commands;
pub mod http;
pub mod model;
pub mod read_models;
pub mod shop;
pub mod walkthrough;

pub use commands::OrderError;
pub use http::{Committed, OrdersApi};
pub use model::{
    Line, LineAdded, LineRemoved, Order, OrderCancelled, OrderEvent, OrderPaid, OrderPlaced,
    OrderShipped, OrderStatus, OrderSubmitted,
};
pub use read_models::{
    Changes, OrderSummary, OrdersByCustomer, ReadModelChange, ReadModelError, RevenuePerDay,
};
pub use shop::{AsOf, ReadModel, Shop, UnknownReadModel};
pub use walkthrough::{OrdersWalkthrough, run_walkthrough};

use eventsource_core::StreamId;

/// The order id of an order stream (`"order-42"` is order `"42"`).
fn order_id(stream: &StreamId) -> &str {
    let name = stream.as_str();
    name.strip_prefix("order-").unwrap_or(name)
}
