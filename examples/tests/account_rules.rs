//! The account's rules, one decision at a time, through the given/when/then harness.

// Amounts are in cents, written `120_50` for 120.50.
#![allow(clippy::inconsistent_digit_grouping)]

use eventsource_core::testing::given;
use eventsource_core::{
    AnyStore, CommandError, CommandOptions, DomainEvent, EventRegistry, EventSet, InMemoryStore,
    Repository,
};
use eventsource_examples::account::*;

fn opened() -> AccountOpened {
    AccountOpened {
        owner: "Ada".into(),
    }
}

fn deposited(amount_cents: i64) -> Deposited {
    Deposited { amount_cents }
}

#[test]
fn a_new_account_opens() {
    let account = given::<Account>(()).when(|a| a.open("Ada")).then(opened());
    assert_eq!(account.owner.as_deref(), Some("Ada"));
}

#[test]
fn an_account_opens_only_once() {
    given::<Account>(opened())
        .when(|a| a.open("Ada"))
        .then_error(AccountError::AlreadyOpen);
}

#[test]
fn a_deposit_adds_to_the_balance() {
    let account = given::<Account>(opened())
        .and(deposited(10_00))
        .when(|a| a.deposit(5_00))
        .then(deposited(5_00));
    assert_eq!(account.balance_cents, 15_00);
}

#[test]
fn amounts_must_be_positive() {
    given::<Account>(opened())
        .when(|a| a.deposit(0))
        .then_error(AccountError::NonPositiveAmount(0));
    given::<Account>(opened())
        .and(deposited(10_00))
        .when(|a| a.withdraw(-1))
        .then_error(AccountError::NonPositiveAmount(-1));
}

#[test]
fn money_only_moves_on_an_open_account() {
    given::<Account>(())
        .when(|a| a.deposit(1_00))
        .then_error(AccountError::NotOpen);
    given::<Account>(())
        .when(|a| a.withdraw(1_00))
        .then_error(AccountError::NotOpen);
}

#[test]
fn a_withdrawal_may_empty_the_account() {
    let account = given::<Account>(opened())
        .and(deposited(10_00))
        .when(|a| a.withdraw(10_00))
        .then(Withdrawn {
            amount_cents: 10_00,
        });
    assert_eq!(account.balance_cents, 0);
}

#[test]
fn a_withdrawal_below_zero_is_refused() {
    given::<Account>(opened())
        .and(deposited(10_00))
        .when(|a| a.withdraw(10_01))
        .then_error(AccountError::InsufficientFunds {
            balance_cents: 10_00,
            requested_cents: 10_01,
        });
}

#[test]
fn an_open_account_closes() {
    let account = given::<Account>(opened())
        .when(|a| a.close())
        .then(AccountClosed {});
    assert!(account.closed);
}

#[test]
fn nothing_moves_after_closing() {
    let closed = || {
        given::<Account>(opened())
            .and(deposited(10_00))
            .and(AccountClosed {})
    };
    closed()
        .when(|a| a.deposit(1_00))
        .then_error(AccountError::Closed);
    closed()
        .when(|a| a.withdraw(1_00))
        .then_error(AccountError::Closed);
    closed()
        .when(|a| a.close())
        .then_error(AccountError::Closed);
}

#[test]
fn an_account_that_was_never_opened_cannot_close() {
    given::<Account>(())
        .when(|a| a.close())
        .then_error(AccountError::NotOpen);
}

#[test]
fn a_transfer_withdraws_from_one_and_deposits_into_the_other() {
    let from = given::<Account>(opened()).and(deposited(10_00));
    let to = given::<Account>(opened());
    let events = transfer([from.state(), to.state()], 4_00).unwrap();
    assert_eq!(
        events,
        [
            AccountEvent::from(Withdrawn { amount_cents: 4_00 }),
            AccountEvent::from(deposited(4_00)),
        ]
    );
}

#[test]
fn a_transfer_follows_the_rules_of_both_accounts() {
    let rich = given::<Account>(opened()).and(deposited(10_00));
    let poor = given::<Account>(opened());
    let closed = given::<Account>(opened()).and(AccountClosed {});
    assert_eq!(
        transfer([poor.state(), rich.state()], 1_00),
        Err(AccountError::InsufficientFunds {
            balance_cents: 0,
            requested_cents: 1_00
        })
    );
    assert_eq!(
        transfer([rich.state(), closed.state()], 1_00),
        Err(AccountError::Closed)
    );
}

#[tokio::test]
async fn a_transfer_to_the_same_account_is_refused() {
    let accounts = Repository::<Account, _>::new(AnyStore::new(InMemoryStore::new()));
    let refused = transfer_between(&accounts, "ada", "ada", 1_00, CommandOptions::default()).await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(AccountError::SameAccount))
    ));
}

#[test]
fn a_version_1_deposit_is_upcast_to_cents() {
    let v1 = br#"{"amount": 120.5}"#;
    let upcast = Deposited::decode(1, v1).unwrap();
    assert_eq!(upcast, deposited(120_50));
    let through_the_aggregate = AccountEvent::decode("account.deposited", 1, v1).unwrap();
    assert_eq!(through_the_aggregate, AccountEvent::from(deposited(120_50)));
    // The float of version 1 is rounded to the nearest cent, not truncated.
    assert_eq!(
        Deposited::decode(1, br#"{"amount": 0.29}"#).unwrap(),
        deposited(29)
    );
}

#[test]
fn the_account_events_have_stable_stored_names() {
    assert_eq!(
        [
            AccountOpened::NAME,
            Deposited::NAME,
            Withdrawn::NAME,
            AccountClosed::NAME
        ],
        [
            "account.opened",
            "account.deposited",
            "account.withdrawn",
            "account.closed"
        ]
    );
    assert_eq!((DepositedV1::VERSION, Deposited::VERSION), (1, 2));
    EventRegistry::new()
        .register::<Account>()
        .expect("the account's event types are unique");
}
