//! The account domain: open, deposit, withdraw, close, and transfers between accounts.
//!
//! - [`model`]: the events (a deposit exists in two versions), the upcast, the aggregate;
//! - [`commands`]: the decisions and their domain errors, and the atomic transfer;
//! - [`balances`] and [`statement`]: two read models fed by projections;
//! - [`walkthrough`]: the guided tour `cargo run -p eventsource-examples --bin account` prints.

pub mod balances;
pub mod commands;
pub mod model;
pub mod statement;
pub mod walkthrough;

pub use balances::{Balance, Balances};
pub use commands::{AccountError, transfer, transfer_between};
pub use model::{
    Account, AccountClosed, AccountEvent, AccountOpened, Deposited, DepositedV1, Withdrawn,
};
pub use statement::{Entry, Statement, StatementLine};
pub use walkthrough::{AccountWalkthrough, run_walkthrough};

use eventsource_core::StreamId;

/// The account id of an account stream (`"account-alice"` is account `"alice"`).
fn account_id(stream: &StreamId) -> &str {
    let name = stream.as_str();
    name.strip_prefix("account-").unwrap_or(name)
}
