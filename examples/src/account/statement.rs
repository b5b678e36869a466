//! The `statement` read model: every movement of every account, in order, with the running
//! balance and the request (correlation id) that caused it.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use eventsource_core::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;
use uuid::Uuid;

use super::model::{AccountClosed, AccountOpened, Deposited, Withdrawn};

/// What a statement line records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Entry {
    /// The account was opened.
    Opened {
        /// The owner.
        owner: String,
    },
    /// Money came in.
    Deposit {
        /// The amount, in cents.
        amount_cents: i64,
    },
    /// Money went out.
    Withdrawal {
        /// The amount, in cents.
        amount_cents: i64,
    },
    /// The account was closed.
    Closed,
}

/// One line of an account's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementLine {
    /// The version of the event in the account's stream.
    pub version: Version,
    /// The event's position in the global log.
    pub position: Position,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// What happened.
    pub entry: Entry,
    /// The balance after it, in cents.
    pub balance_cents: i64,
    /// The request that caused it: the two lines of a transfer share it.
    pub correlation_id: Option<Uuid>,
}

/// The `statement` read model. Cloning it shares the data.
#[derive(Debug, Clone, Default, Projection)]
#[projection(
    name = "statement",
    reset = Self::clear,
    events(AccountOpened, Deposited, Withdrawn, AccountClosed)
)]
pub struct Statement {
    lines: Arc<Mutex<BTreeMap<String, Vec<StatementLine>>>>,
}

impl Statement {
    /// The statement of one account, oldest line first.
    pub fn of(&self, account: &str) -> Vec<StatementLine> {
        self.lines.lock().get(account).cloned().unwrap_or_default()
    }

    /// Forgets everything: the derive's `reset` hook, called before a rebuild replays the log.
    async fn clear(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        self.lines.lock().clear();
        Ok(())
    }

    /// Appends a line, unless the event is a replay (projections run at least once per event).
    fn push(&self, envelope: &RecordedEvent, entry: Entry, change_cents: i64) {
        let mut all = self.lines.lock();
        let lines = all
            .entry(super::account_id(&envelope.stream).to_owned())
            .or_default();
        let (last_version, last_balance) = lines
            .last()
            .map_or((Version::ZERO, 0), |l| (l.version, l.balance_cents));
        if envelope.version > last_version {
            lines.push(StatementLine {
                version: envelope.version,
                position: envelope.position,
                recorded_at: envelope.recorded_at,
                entry,
                balance_cents: last_balance + change_cents,
                correlation_id: envelope.metadata.correlation_id,
            });
        }
    }
}

impl Handle<AccountOpened> for Statement {
    async fn handle(
        &mut self,
        e: AccountOpened,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.push(at, Entry::Opened { owner: e.owner }, 0);
        Ok(())
    }
}

impl Handle<Deposited> for Statement {
    async fn handle(
        &mut self,
        e: Deposited,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let entry = Entry::Deposit {
            amount_cents: e.amount_cents,
        };
        self.push(at, entry, e.amount_cents);
        Ok(())
    }
}

impl Handle<Withdrawn> for Statement {
    async fn handle(
        &mut self,
        e: Withdrawn,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let entry = Entry::Withdrawal {
            amount_cents: e.amount_cents,
        };
        self.push(at, entry, -e.amount_cents);
        Ok(())
    }
}

impl Handle<AccountClosed> for Statement {
    async fn handle(
        &mut self,
        _: AccountClosed,
        at: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.push(at, Entry::Closed, 0);
        Ok(())
    }
}
