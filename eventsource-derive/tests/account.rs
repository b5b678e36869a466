//! What a user writes (an account domain: events, an upcast, an aggregate, a projection),
//! compiled and run through the repository on the in-memory store.
// Domain types are `pub` as a user's would be; the docs-under-`deny` case is `strict_lints.rs`.
#![allow(missing_docs)]

use eventsource_core::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")] // stored type name; version 1 by default
pub struct AccountOpened {
    pub owner: String,
}

/// The shape version 1 had. Still read from old streams, upcast on read.
#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 1)]
pub struct DepositedV1 {
    pub amount: f64,
}

/// The current shape. It names its predecessor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
pub struct Deposited {
    pub amount_cents: i64,
}

impl From<DepositedV1> for Deposited {
    fn from(v1: DepositedV1) -> Self {
        Deposited {
            amount_cents: (v1.amount * 100.0).round() as i64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.withdrawn")]
pub struct Withdrawn {
    pub amount_cents: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize, Aggregate)]
#[aggregate(
    name = "account",
    events(AccountOpened, Deposited, Withdrawn),
    snapshot_every = 100
)]
pub struct Account {
    owner: Option<String>,
    balance_cents: i64,
}

impl Apply<AccountOpened> for Account {
    fn apply(&mut self, e: &AccountOpened) {
        self.owner = Some(e.owner.clone());
    }
}

impl Apply<Deposited> for Account {
    fn apply(&mut self, e: &Deposited) {
        self.balance_cents += e.amount_cents
    }
}

impl Apply<Withdrawn> for Account {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance_cents -= e.amount_cents
    }
}

#[derive(Debug, PartialEq)]
pub enum AccountError {
    NotOpen,
    InsufficientFunds,
}

impl Account {
    pub fn open(&self, owner: &str) -> Result<Option<AccountOpened>, AccountError> {
        Ok(self.owner.is_none().then(|| AccountOpened {
            owner: owner.to_owned(),
        }))
    }

    pub fn deposit(&self, amount_cents: i64) -> Result<Deposited, AccountError> {
        if self.owner.is_none() {
            return Err(AccountError::NotOpen);
        }
        Ok(Deposited { amount_cents })
    }

    pub fn withdraw(&self, amount_cents: i64) -> Result<Withdrawn, AccountError> {
        if self.balance_cents < amount_cents {
            return Err(AccountError::InsufficientFunds);
        }
        Ok(Withdrawn { amount_cents })
    }
}

#[derive(Default, Projection)]
#[projection(name = "balances", events(AccountOpened, Deposited, Withdrawn))]
pub struct Balances {
    pub by_stream: std::collections::BTreeMap<String, i64>,
}

impl Handle<AccountOpened> for Balances {
    async fn handle(
        &mut self,
        _: AccountOpened,
        envelope: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.by_stream.insert(envelope.stream.to_string(), 0);
        Ok(())
    }
}

impl Handle<Deposited> for Balances {
    async fn handle(
        &mut self,
        e: Deposited,
        envelope: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        *self
            .by_stream
            .entry(envelope.stream.to_string())
            .or_default() += e.amount_cents;
        Ok(())
    }
}

impl Handle<Withdrawn> for Balances {
    async fn handle(
        &mut self,
        e: Withdrawn,
        envelope: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        *self
            .by_stream
            .entry(envelope.stream.to_string())
            .or_default() -= e.amount_cents;
        Ok(())
    }
}

#[tokio::test]
async fn the_design_account_example_runs_commands_and_feeds_its_projection() {
    let store = InMemoryStore::new();
    let repo: Repository<Account, _> = Repository::new(store.clone());

    repo.execute("42", |acc| acc.open("ada")).await.unwrap();
    repo.execute("42", |acc| acc.deposit(500)).await.unwrap();
    let committed = repo.execute("42", |acc| acc.withdraw(200)).await.unwrap();
    let rejected = repo.execute("42", |acc| acc.withdraw(10_000)).await;
    assert_eq!(
        rejected.unwrap_err().rejection(),
        Some(&AccountError::InsufficientFunds)
    );

    let loaded = repo.load("42").await.unwrap();
    assert_eq!(loaded.state.balance_cents, 300);
    assert_eq!(loaded.state.owner.as_deref(), Some("ada"));
    assert_eq!(loaded.version, Version::new(3));
    assert_eq!(loaded.position, committed.commit.position);

    let past = repo
        .load_at("42", At::Version(Version::new(2)))
        .await
        .unwrap();
    assert_eq!(past.state.balance_cents, 500);

    let mut runner = ProjectionRunner::new(store, Balances::default());
    runner.catch_up().await.unwrap();
    assert_eq!(runner.projection().by_stream.get("account-42"), Some(&300));
}

#[test]
fn the_event_enum_converts_compares_and_names_its_events() {
    use eventsource_core::EventSet;
    let e = AccountEvent::from(Deposited { amount_cents: 5 });
    assert_eq!(e.clone(), e);
    assert_eq!(format!("{e:?}"), "Deposited(Deposited { amount_cents: 5 })");
    assert_eq!(e.event_type(), "account.deposited");
    assert_eq!(e.schema_version(), 2);
    assert_eq!(&e.encode().unwrap()[..], br#"{"amount_cents":5}"#);
    let names: Vec<_> = AccountEvent::EVENT_TYPES.iter().map(|t| t.name).collect();
    assert_eq!(
        names,
        ["account.opened", "account.deposited", "account.withdrawn"]
    );
}

#[test]
fn snapshots_round_trip_the_state() {
    let account = Account {
        owner: Some("ada".into()),
        balance_cents: 7,
    };
    assert_eq!(Account::SNAPSHOT_EVERY, Some(100));
    assert_eq!(Account::SNAPSHOT_VERSION, 1);
    let bytes = account.encode_snapshot().unwrap();
    assert_eq!(Account::decode_snapshot(&bytes).unwrap(), account);
}
