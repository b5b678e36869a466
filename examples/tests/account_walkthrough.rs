//! The account walkthrough, end to end, on both stores.

// Amounts are in cents, written `120_50` for 120.50.
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use eventsource_core::Version;
use eventsource_examples::account::walkthrough::{AccountWalkthrough, WalkthroughError};
use eventsource_examples::account::{AccountError, Entry, run_walkthrough};

// The race holds one decision on a worker thread until the other is made: two workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_runs_on_the_in_memory_store() -> Result<(), WalkthroughError> {
    check(run_walkthrough(common::in_memory()).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_runs_on_postgres() -> Result<(), WalkthroughError> {
    check(run_walkthrough(common::postgres("account_walkthrough").await).await?);
    Ok(())
}

fn check(tour: AccountWalkthrough) {
    let (alice, bob) = (&tour.alice, &tour.bob);
    assert_eq!(
        tour.upcast_deposit_cents, 120_50,
        "the version 1 deposit is upcast"
    );

    // The transfer is one commit over both streams.
    let streams: Vec<_> = tour
        .transfer
        .streams
        .iter()
        .map(|s| s.stream.to_string())
        .collect();
    assert_eq!(
        streams,
        [format!("account-{alice}"), format!("account-{bob}")]
    );
    assert!(tour.transfer.first_position < tour.transfer.position);
    // Both events of the transfer carry the request's correlation id and the command's id.
    let [withdrawn, deposited] = &tour.transfer_metadata[..] else {
        unreachable!("two events: {:?}", tour.transfer_metadata)
    };
    assert!(withdrawn.correlation_id.is_some() && withdrawn.causation_id.is_some());
    assert_eq!(withdrawn, deposited);
    assert_eq!(
        withdrawn.headers.get("command").map(String::as_str),
        Some("transfer")
    );

    // One racer won at once; the other lost, decided again on the new state, and was refused.
    let mut race = tour.race.clone();
    race.sort_by_key(|w| w.decisions);
    assert_eq!(
        (race[0].decisions, &race[0].outcome),
        (1, &Ok(Version::new(3)))
    );
    assert_eq!(race[1].decisions, 2, "the loser decided twice: {race:?}");
    assert_eq!(
        race[1].outcome,
        Err(AccountError::InsufficientFunds {
            balance_cents: 30_00,
            requested_cents: 70_00
        })
    );

    assert_eq!(tour.alice_at_version_2_cents, 120_50);
    assert_eq!(tour.alice_at_time, (Version::new(4), 150_50));
    assert_eq!(tour.alice_snapshot_version, Some(Version::new(5)));

    let (a, b) = (&tour.accounts[alice], &tour.accounts[bob]);
    assert_eq!((a.balance_cents, a.closed), (50_50, false));
    assert_eq!((b.balance_cents, b.closed), (30_00, true));

    // The read model agrees with the aggregates, and knows which version it reflects.
    let (ra, rb) = (&tour.balances[alice], &tour.balances[bob]);
    assert_eq!((&ra.account, ra.version), (a, Version::new(5)));
    assert_eq!((&rb.account, rb.version), (b, Version::new(4)));
    assert_eq!(ra.account.owner.as_deref(), Some("Alice"));
    assert_eq!(
        tour.balances_after_rebuild, tour.balances,
        "a rebuild gives the same read model"
    );

    let lines = &tour.alice_statement;
    let entries: Vec<_> = lines
        .iter()
        .map(|l| (l.entry.clone(), l.balance_cents))
        .collect();
    assert_eq!(
        entries,
        [
            (
                Entry::Opened {
                    owner: "Alice".into()
                },
                0
            ),
            (
                Entry::Deposit {
                    amount_cents: 120_50
                },
                120_50
            ),
            (
                Entry::Deposit {
                    amount_cents: 50_00
                },
                170_50
            ),
            (
                Entry::Withdrawal {
                    amount_cents: 20_00
                },
                150_50
            ),
            (
                Entry::Withdrawal {
                    amount_cents: 100_00
                },
                50_50
            ),
        ]
    );
    assert!(
        lines.windows(2).all(|w| w[0].position < w[1].position),
        "the statement is in log order"
    );
    assert_eq!(lines[4].position, tour.transfer.first_position);
    assert!(
        lines[4].correlation_id.is_some(),
        "events carry the request's correlation id"
    );
    assert_eq!(
        lines[0].correlation_id, None,
        "the imported history had none"
    );
    assert!(tour.last_position > tour.transfer.position);
    assert!(tour.to_string().contains("Rebuilding a read model"));
}
