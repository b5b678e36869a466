//! The guided tour of the shop, printed by the `orders` binary before it starts serving:
//! the same operations the HTTP endpoints run, with what each answers, and a line an older
//! release stored that a read model cannot apply: parked in its dead letters, fixed, retried.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::NaiveDate;
use eventsource_core::prelude::*;
use eventsource_core::store::DeadLetter;
use eventsource_core::{
    EncodeError, EventSet, ExpectedVersion, IntoEvents, NewEvent, ProjectionError, StoreError,
    StreamWrite,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::commands::OrderError;
use super::model::{LineAdded, Order, OrderEvent};
use super::read_models::{OrderSummary, ReadModelChange};
use super::shop::{ReadModel, Shop};
use crate::request::Request;
use crate::story::{Story, cents};

/// How long the tour waits for a read model.
const CATCH_UP: Duration = Duration::from_secs(10);

/// What the tour did and found.
#[derive(Debug, Clone)]
pub struct OrdersWalkthrough {
    /// The story to print.
    pub story: Story,
    /// The customer whose order was shipped (unique per run).
    pub ada: String,
    /// The customer whose order was cancelled.
    pub bea: String,
    /// Ada's orders, as the read model shows them once it reached `last_position`.
    pub ada_orders: Vec<OrderSummary>,
    /// Bea's orders, likewise.
    pub bea_orders: Vec<OrderSummary>,
    /// Revenue per day once the read model reached `last_position`.
    pub revenue: BTreeMap<NaiveDate, i128>,
    /// The commands the shop refused, with why.
    pub refusals: Vec<(String, OrderError)>,
    /// How many read-model changes were pushed to a subscriber during the tour.
    pub pushed_changes: usize,
    /// The position of the last command of the first three chapters.
    pub last_position: Position,
    /// The dead letter of the line an older release stored (chapter 4), as first listed.
    pub dead_letter: DeadLetter,
    /// That order's row once the fix was deployed and its letter retried.
    pub repaired: OrderSummary,
    /// The pending dead letters of that order's stream after the retry.
    pub letters_left: usize,
}

/// Why the tour stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrdersWalkthroughError {
    /// A command failed for a reason the tour does not expect.
    #[error(transparent)]
    Command(#[from] CommandError<OrderError>),
    /// A read model failed or did not catch up.
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    /// The store failed (writing the old release's line, listing dead letters).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The old release's line could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Something the tour expects to be refused was accepted.
    #[error("the walkthrough went off script: {0}")]
    OffScript(String),
}

/// One customer's session with the shop: each command is a request of its own.
struct Customer<'a> {
    shop: &'a Shop,
    story: &'a mut Story,
    order: String,
    last: Position,
    refusals: Vec<(String, OrderError)>,
}

impl Customer<'_> {
    /// Runs a command that must succeed, and tells what it answered.
    async fn does<D, F>(&mut self, what: &str, decide: F) -> Result<(), OrdersWalkthroughError>
    where
        F: FnMut(&Order) -> Result<D, OrderError> + Send,
        D: IntoEvents<OrderEvent>,
    {
        let commit = self
            .shop
            .execute(&self.order, Request::new().command(what), decide)
            .await?;
        let version = commit.version_of(&Order::stream_id(&self.order));
        self.story.say(format!(
            "  {what:<28} -> version {}, position {}",
            version.unwrap_or(Version::ZERO),
            commit.position
        ));
        self.last = commit.position;
        Ok(())
    }

    /// Runs a command the shop's rules must refuse, and tells why it was.
    async fn tries<D, F>(&mut self, what: &str, decide: F) -> Result<(), OrdersWalkthroughError>
    where
        F: FnMut(&Order) -> Result<D, OrderError> + Send,
        D: IntoEvents<OrderEvent>,
    {
        match self
            .shop
            .execute(&self.order, Request::new().command(what), decide)
            .await
        {
            Err(CommandError::Rejected(e)) => {
                self.story.say(format!("  {what:<28} -> refused: {e}"));
                self.refusals.push((what.to_owned(), e));
                Ok(())
            }
            other => Err(OrdersWalkthroughError::OffScript(format!(
                "`{what}` was not refused: {other:?}"
            ))),
        }
    }
}

/// Runs the tour on `shop`.
pub async fn run_walkthrough(shop: &Shop) -> Result<OrdersWalkthrough, OrdersWalkthroughError> {
    let mut story = Story::default();
    let run = &Uuid::new_v4().simple().to_string()[..6];
    let (ada, bea) = (format!("ada-{run}"), format!("bea-{run}"));
    let mut pushed = shop.changes().subscribe();

    story.chapter("1. Commands: each answers with a version and a global position");
    story.say(format!(
        "{ada} places an order and fills it. Each line is one command: load the order, check \
         the shop's rules, append the event."
    ));
    let mut customer = Customer {
        shop,
        story: &mut story,
        order: Uuid::new_v4().to_string(),
        last: Position::ZERO,
        refusals: Vec::new(),
    };
    customer.does("place", |o| o.place(&ada)).await?;
    customer
        .does("add 2 x tea at 4.50", |o| o.add_line("tea", 2, 450))
        .await?;
    customer
        .does("add 1 x cake at 3.00", |o| o.add_line("cake", 1, 300))
        .await?;
    customer
        .does("remove the cake", |o| o.remove_line("cake"))
        .await?;
    customer.does("submit", Order::submit).await?;
    customer
        .tries("add 1 x jam", |o| o.add_line("jam", 1, 500))
        .await?;
    customer.tries("ship", Order::ship).await?;
    customer.tries("pay 5.00", |o| o.pay(500)).await?;
    customer.does("pay 9.00", |o| o.pay(900)).await?;
    customer.does("ship", Order::ship).await?;
    let mut refusals = std::mem::take(&mut customer.refusals);

    customer.story.say(format!(
        "{bea} orders jam, pays, and cancels: the cancellation refunds the payment."
    ));
    customer.order = Uuid::new_v4().to_string();
    customer.does("place", |o| o.place(&bea)).await?;
    customer
        .does("add 1 x jam at 5.00", |o| o.add_line("jam", 1, 500))
        .await?;
    customer.does("submit", Order::submit).await?;
    customer.does("pay 5.00", |o| o.pay(500)).await?;
    customer
        .does("cancel", |o| o.cancel("changed my mind"))
        .await?;
    customer.tries("ship", Order::ship).await?;
    refusals.append(&mut customer.refusals);
    let last = customer.last;

    story.chapter("2. Queries: read models, and reading your own writes");
    story.say(format!(
        "Read models are updated by projections after the commit, so a query could run before \
         they have seen it. The last command answered position {last}; a query given that \
         position (`GET /customers/{ada}/orders?after={last}`) waits until the read model has \
         reached it, then answers."
    ));
    let ada_orders = shop.orders_of(&ada, last, CATCH_UP).await?;
    let bea_orders = shop.orders_of(&bea, last, CATCH_UP).await?;
    let both: Vec<_> = ada_orders
        .value
        .iter()
        .chain(&bea_orders.value)
        .cloned()
        .collect();
    tell_orders(&mut story, &both);
    let revenue = shop.revenue_per_day(last, CATCH_UP).await?;
    for (day, amount) in &revenue.value {
        story.say(format!(
            "  revenue on {day}: {} (payments minus refunds, every order in the store)",
            cents(*amount)
        ));
    }

    story.chapter("3. Push: the read models' changes, as they happen");
    let mut pushed_changes = 0;
    loop {
        match pushed.try_recv() {
            Ok(
                ReadModelChange::OrdersByCustomer { .. } | ReadModelChange::RevenuePerDay { .. },
            ) => {
                pushed_changes += 1;
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => pushed_changes += n as usize,
            Err(_) => break,
        }
    }
    story.say(format!(
        "A WebSocket client on `GET /changes` would have received {pushed_changes} changes \
         during this tour, one JSON message per row the projections changed."
    ));

    let repair = repair_a_poison_line(shop, &mut story, run).await?;

    Ok(OrdersWalkthrough {
        story,
        ada,
        bea,
        ada_orders: ada_orders.value,
        bea_orders: bea_orders.value,
        revenue: revenue.value,
        refusals,
        pushed_changes,
        last_position: last,
        dead_letter: repair.dead_letter,
        repaired: repair.repaired,
        letters_left: repair.letters_left,
    })
}

/// What chapter 4 found.
struct Repair {
    dead_letter: DeadLetter,
    repaired: OrderSummary,
    letters_left: usize,
}

/// Chapter 4: a line an older release stored, which `orders_by_customer` cannot apply, is
/// parked in its dead letters while the shop goes on; the fix is deployed and the letter
/// retried.
async fn repair_a_poison_line(
    shop: &Shop,
    story: &mut Story,
    run: &str,
) -> Result<Repair, OrdersWalkthroughError> {
    let cy = format!("cy-{run}");
    story.chapter("4. A poison event: parked in dead letters, fixed, retried");
    story.say(format!(
        "An older release of the shop had no limit on a line's total. {cy} placed an order \
         with it, and it stored a line that no command accepts now (4294967295 x gold at \
         92233720368547758.07): its total does not fit in 64 bits."
    ));
    let mut customer = Customer {
        shop,
        story,
        order: Uuid::new_v4().to_string(),
        last: Position::ZERO,
        refusals: Vec::new(),
    };
    customer.does("place", |o| o.place(&cy)).await?;
    let poisoned = customer.order.clone();
    let stream = Order::stream_id(&poisoned);
    let line = OrderEvent::from(LineAdded {
        sku: "gold".to_owned(),
        quantity: u32::MAX,
        unit_price_cents: i64::MAX,
    });
    let stored = NewEvent::new(line.event_type(), line.schema_version(), line.encode()?);
    let commit = shop
        .store()
        .append(vec![StreamWrite::new(
            stream.clone(),
            ExpectedVersion::Exact(Version::new(1)),
            vec![stored],
        )])
        .await?;
    customer.story.say(format!(
        "  {:<28} -> version {}, position {}",
        "the old release adds gold",
        commit.version_of(&stream).unwrap_or(Version::ZERO),
        commit.position
    ));

    customer.story.say(
        "`orders_by_customer` cannot add that line up. It does not stop on it: it parks the \
         event in its dead letters, and the later events of that order with it, and goes on \
         with the other orders. The shop goes on too:",
    );
    customer.order = Uuid::new_v4().to_string();
    customer
        .does("place another order", |o| o.place(&cy))
        .await?;
    customer
        .does("add 1 x tea at 4.50", |o| o.add_line("tea", 1, 450))
        .await?;
    let last = customer.last;
    let orders = shop.orders_of(&cy, last, CATCH_UP).await?;
    tell_orders(story, &orders.value);

    let letters = letters_of(shop, &stream).await?;
    let Some(dead_letter) = letters.first().cloned() else {
        return Err(OrdersWalkthroughError::OffScript(
            "the line the old release stored was not dead-lettered".to_owned(),
        ));
    };
    story.say(format!(
        "`GET /read-models/orders_by_customer/dead-letters` lists it: `{}` at {} version {} \
         (position {}), {}, {} attempt(s):",
        dead_letter.event.event_type,
        dead_letter.event.stream,
        dead_letter.event.version,
        dead_letter.event.position,
        dead_letter.reason.as_str(),
        dead_letter.attempts,
    ));
    story.say(format!("  {}", dead_letter.error));

    let retried = shop.retry_dead_letters(ReadModel::OrdersByCustomer).await?;
    story.say(format!(
        "Retried as it is (`POST .../dead-letters/retry`), it fails again: {} handled, {} \
         failed. The handler needs a fix first.",
        retried.handled.len(),
        retried.failed.len()
    ));
    story.say(
        "The fix: a line or order total that overflows is clamped to the largest amount and \
         its row flagged `total_overflowed`. Deployed, the letter is retried:",
    );
    shop.saturate_totals();
    let retried = shop.retry_dead_letters(ReadModel::OrdersByCustomer).await?;
    if !retried.handled.contains(&dead_letter.event.id) {
        return Err(OrdersWalkthroughError::OffScript(format!(
            "the fixed handler did not handle the letter: {retried:?}"
        )));
    }
    story.say(format!(
        "  {:<28} -> {} handled, {} failed",
        "retry",
        retried.handled.len(),
        retried.failed.len()
    ));
    let orders = shop.orders_of(&cy, last, CATCH_UP).await?;
    tell_orders(story, &orders.value);
    let letters_left = letters_of(shop, &stream).await?.len();
    story.say(format!(
        "Pending dead letters of {stream}: {letters_left}. That order's row reflects its \
         whole stream again."
    ));
    let repaired = orders
        .value
        .into_iter()
        .find(|o| o.order_id == poisoned)
        .ok_or_else(|| {
            OrdersWalkthroughError::OffScript(format!("{cy}'s first order has no row"))
        })?;
    Ok(Repair {
        dead_letter,
        repaired,
        letters_left,
    })
}

/// The pending dead letters of `orders_by_customer` on `stream`.
async fn letters_of(shop: &Shop, stream: &StreamId) -> Result<Vec<DeadLetter>, StoreError> {
    let mut letters = shop.dead_letters(ReadModel::OrdersByCustomer).await?;
    letters.retain(|letter| letter.event.stream == *stream);
    Ok(letters)
}

/// Tells the rows of `orders`, one line each.
fn tell_orders(story: &mut Story, orders: &[OrderSummary]) {
    for o in orders {
        let flag = if o.total_overflowed {
            ", total overflowed: clamped"
        } else {
            ""
        };
        story.say(format!(
            "  {} {:?}: {} ({} line(s), version {}{flag})",
            o.customer,
            o.status,
            cents(o.total_cents),
            o.lines.len(),
            o.version
        ));
    }
}

impl fmt::Display for OrdersWalkthrough {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.story.fmt(f)
    }
}
