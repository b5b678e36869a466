//! The account's decisions: each looks at the current state and returns the events to record,
//! or the domain error that says why not. Decisions never touch a store; the repository loads
//! the state, calls them, and appends what they return.

use eventsource_core::{AnyStore, CommandError, CommandOptions, Commit, Repository};

use super::model::{Account, AccountClosed, AccountEvent, AccountOpened, Deposited, Withdrawn};

/// Why an account command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The account is already open.
    #[error("the account is already open")]
    AlreadyOpen,
    /// The account was never opened.
    #[error("the account does not exist")]
    NotOpen,
    /// The account is closed: no money moves any more.
    #[error("the account is closed")]
    Closed,
    /// Amounts are positive.
    #[error("the amount must be positive, got {0} cents")]
    NonPositiveAmount(i64),
    /// A withdrawal would take the balance below zero.
    #[error(
        "insufficient funds: the balance is {balance_cents} cents, {requested_cents} requested"
    )]
    InsufficientFunds {
        /// The balance when the command was decided.
        balance_cents: i64,
        /// The amount asked for.
        requested_cents: i64,
    },
    /// A transfer names the same account twice.
    #[error("a transfer needs two different accounts")]
    SameAccount,
}

impl Account {
    /// Opens the account for `owner`.
    pub fn open(&self, owner: &str) -> Result<AccountOpened, AccountError> {
        if self.owner.is_some() {
            return Err(AccountError::AlreadyOpen);
        }
        Ok(AccountOpened {
            owner: owner.to_owned(),
        })
    }

    /// Pays `amount_cents` in.
    pub fn deposit(&self, amount_cents: i64) -> Result<Deposited, AccountError> {
        self.ensure_movable(amount_cents)?;
        Ok(Deposited { amount_cents })
    }

    /// Takes `amount_cents` out; the balance never goes below zero.
    pub fn withdraw(&self, amount_cents: i64) -> Result<Withdrawn, AccountError> {
        self.ensure_movable(amount_cents)?;
        if amount_cents > self.balance_cents {
            return Err(AccountError::InsufficientFunds {
                balance_cents: self.balance_cents,
                requested_cents: amount_cents,
            });
        }
        Ok(Withdrawn { amount_cents })
    }

    /// Closes the account.
    pub fn close(&self) -> Result<AccountClosed, AccountError> {
        self.ensure_open()?;
        Ok(AccountClosed {})
    }

    fn ensure_open(&self) -> Result<(), AccountError> {
        match (&self.owner, self.closed) {
            (None, _) => Err(AccountError::NotOpen),
            (Some(_), true) => Err(AccountError::Closed),
            (Some(_), false) => Ok(()),
        }
    }

    fn ensure_movable(&self, amount_cents: i64) -> Result<(), AccountError> {
        self.ensure_open()?;
        if amount_cents <= 0 {
            return Err(AccountError::NonPositiveAmount(amount_cents));
        }
        Ok(())
    }
}

/// The decision of a transfer of `amount_cents` from one account to another: a withdrawal
/// from `from` and a deposit into `to`, decided together.
pub fn transfer(
    [from, to]: [&Account; 2],
    amount_cents: i64,
) -> Result<[AccountEvent; 2], AccountError> {
    let withdrawn = from.withdraw(amount_cents)?;
    let deposited = to.deposit(amount_cents)?;
    Ok([withdrawn.into(), deposited.into()])
}

/// Moves `amount_cents` from account `from` to account `to` in one atomic commit over both
/// streams: [`Repository::execute_many_with`] appends both events or neither, and on a conflict
/// with either account it reloads both and decides again.
pub async fn transfer_between(
    accounts: &Repository<Account, AnyStore>,
    from: &str,
    to: &str,
    amount_cents: i64,
    options: CommandOptions,
) -> Result<Commit, CommandError<AccountError>> {
    if from == to {
        return Err(CommandError::Rejected(AccountError::SameAccount));
    }
    accounts
        .execute_many_with([from, to], options, |states| transfer(states, amount_cents))
        .await
        .map(|executed| executed.commit)
}
