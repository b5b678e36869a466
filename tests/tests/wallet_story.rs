//! One wallet story, written once against the public API and told on both stores: the
//! in-memory store and PostgreSQL must come to the same outcomes.
//!
//! It runs commands on one wallet and on two at once, retries one under its idempotency key,
//! has some rejected, imports a wallet whose events are stored in an older version, checks
//! the snapshots taken and travels back in time, follows a live read model (reading its own
//! writes) and rebuilds it. On PostgreSQL the same log then feeds a read-model table through
//! the transactional runner, which must agree with the in-memory read model.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use eventsource_core::prelude::*;
use eventsource_core::{Error, EventId, ExpectedVersion, NewEvent, ReadUntil, StreamWrite};
use eventsource_postgres::PgProjectionRunner;
use eventsource_tests::Balance;
use eventsource_tests::balances::Balances;
use eventsource_tests::pg_balances::PgBalances;
use eventsource_tests::wallet::{Wallet, WalletError, transfer};

use common::{WAIT, balance, wallet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_story_holds_on_the_in_memory_store() {
    wallet_story(common::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_story_holds_on_postgres_and_its_read_model_table_agrees() {
    let store = common::postgres().await;
    let read_model = wallet_story(store.clone()).await;

    // Given the story's log, when the transactional runner follows it into a table,
    PgBalances::create_table(&store).await.unwrap();
    let table = PgProjectionRunner::new(store.clone(), PgBalances)
        .batch_size(4)
        .spawn();
    let head = store.head().await.unwrap();
    table.wait_for(head, WAIT).await.unwrap();
    // then the table shows what the core runner's read model showed.
    assert_eq!(PgBalances::read(&store).await.unwrap(), read_model);

    // A command is in the table once the runner has reached its commit (read your writes).
    let repo = Repository::<Wallet, _>::new(store.clone());
    let done = repo.execute("ben", |w| w.pay(200, "cinema")).await.unwrap();
    table.wait_for(done.commit.position, WAIT).await.unwrap();
    let mut expected = read_model;
    expected.insert("ben".into(), balance("Ben", 4500, 4));
    assert_eq!(PgBalances::read(&store).await.unwrap(), expected);

    // A rebuild empties the table in the transaction that resets the checkpoint, then replays
    // the log: every event applied once more, none twice.
    table.rebuild().await.unwrap();
    table.wait_for(done.commit.position, WAIT).await.unwrap();
    assert_eq!(PgBalances::read(&store).await.unwrap(), expected);
    table.shutdown().await.unwrap();
}

/// The story. Every assertion is the same on every store; it returns the read model's final
/// content, for a store to compare its own read models with.
async fn wallet_story<S: EventStore>(store: S) -> BTreeMap<String, Balance> {
    let repo = Repository::<Wallet, S>::new(store.clone());
    let balances = Balances::default();
    let live = ProjectionRunner::new(store.clone(), balances.clone())
        .batch_size(2)
        .spawn();
    let ada = Wallet::stream_id("ada");
    let ben = Wallet::stream_id("ben");

    // Ada opens a wallet and tops it up; the read model shows it once it reached the commit.
    let opened = repo.execute("ada", |w| w.open("Ada")).await.unwrap();
    assert_eq!(opened.commit.version_of(&ada), Some(Version::new(1)));
    let topped_up = repo.execute("ada", |w| w.top_up(2500)).await.unwrap();
    live.wait_for(topped_up.commit.position, WAIT)
        .await
        .unwrap();
    assert_eq!(balances.all()["ada"], balance("Ada", 2500, 2));

    // A payment the balance does not cover is rejected, and nothing is written.
    let refused = repo.execute("ada", |w| w.pay(1_000_000, "yacht")).await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(WalletError::InsufficientFunds {
            balance: 2500,
            requested: 1_000_000
        }))
    ));
    assert_eq!(store.stream_version(&ada).await.unwrap(), Version::new(2));

    // A payment under an idempotency key, sent twice (the client lost the first reply): the
    // second returns the first commit without deciding again, and nothing is appended twice.
    let options = || {
        CommandOptions::with_metadata(Metadata::new().with_header("request", "order-17"))
            .idempotency_key("order-17")
    };
    let paid = repo
        .execute_with("ada", options(), |w| w.pay(1200, "bakery"))
        .await
        .unwrap();
    let mut decided_again = 0;
    let retried = repo
        .execute_with("ada", options(), |w| {
            decided_again += 1;
            w.pay(1200, "bakery")
        })
        .await
        .unwrap();
    assert_eq!(retried.commit, paid.commit);
    assert_eq!((retried.attempts, decided_again), (0, 0));
    assert_eq!(store.stream_version(&ada).await.unwrap(), Version::new(3));
    // The event's id comes from the key, and it carries the command's metadata.
    let recorded = store
        .event_by_id(EventId::derived("order-17", 0))
        .await
        .unwrap()
        .expect("the payment is stored under the id its key derives");
    assert_eq!(
        (&recorded.stream, recorded.version),
        (&ada, Version::new(3))
    );
    assert_eq!(
        recorded.metadata.headers.get("request").map(String::as_str),
        Some("order-17")
    );

    // Ben's wallet comes from the old system, its top-up stored as version 1 did: whole euros.
    store
        .append(vec![StreamWrite::new(
            ben.clone(),
            ExpectedVersion::NoStream,
            vec![
                NewEvent::new("wallet.opened", 1, r#"{"owner":"Ben"}"#),
                NewEvent::new("wallet.topped_up", 1, r#"{"euros":40}"#),
            ],
        )])
        .await
        .unwrap();
    let loaded = repo.load("ben").await.unwrap();
    assert_eq!(
        (loaded.state.balance, loaded.version),
        (4000, Version::new(2)),
        "40 euros upcast to 4000 cents"
    );

    // A transfer writes to both wallets in one commit; one the balance does not cover writes
    // to neither.
    let moved = repo
        .execute_many(["ada", "ben"], |[from, to]| transfer(from, to, 700))
        .await
        .unwrap();
    assert_eq!(moved.commit.version_of(&ada), Some(Version::new(4)));
    assert_eq!(moved.commit.version_of(&ben), Some(Version::new(3)));
    let refused = repo
        .execute_many(["ben", "ada"], |[from, to]| transfer(from, to, 1_000_000))
        .await;
    assert!(matches!(
        refused,
        Err(CommandError::Rejected(WalletError::InsufficientFunds {
            balance: 4700,
            ..
        }))
    ));
    assert_eq!(store.stream_version(&ada).await.unwrap(), Version::new(4));
    assert_eq!(store.stream_version(&ben).await.unwrap(), Version::new(3));

    repo.execute("ada", |w| w.top_up(300)).await.unwrap();
    let last = repo.execute("ada", |w| w.pay(400, "grocer")).await.unwrap();

    // The current state, and where it stands.
    let now = repo.load("ada").await.unwrap();
    assert_eq!(now.state, wallet("Ada", 500));
    assert_eq!(now.version, Version::new(6));
    assert_eq!(now.position, last.commit.position);

    // Snapshots were taken every 3 events, in the current schema, of exactly the state at
    // their version.
    let snapshot = |until| store.load_snapshot(&ada, Wallet::SNAPSHOT_VERSION, until);
    let newest = snapshot(ReadUntil::End)
        .await
        .unwrap()
        .expect("a snapshot at 6");
    assert_eq!(newest.version, Version::new(6));
    assert_eq!(Wallet::decode_snapshot(&newest.payload).unwrap(), now.state);
    let older = snapshot(ReadUntil::Version(Version::new(5)))
        .await
        .unwrap()
        .expect("a snapshot at 3");
    assert_eq!(older.version, Version::new(3));
    assert_eq!(
        Wallet::decode_snapshot(&older.payload).unwrap(),
        wallet("Ada", 1300)
    );
    let ben_snapshot = store
        .load_snapshot(&ben, Wallet::SNAPSHOT_VERSION, ReadUntil::End)
        .await
        .unwrap()
        .expect("ben's third event, written by the transfer, took a snapshot");
    assert_eq!(ben_snapshot.version, Version::new(3));

    // Time travel: by version (below, between and at snapshots), past the end, and by time.
    let at = |v| repo.load_at("ada", At::Version(Version::new(v)));
    assert_eq!(at(2).await.unwrap().state, wallet("Ada", 2500));
    assert_eq!(at(4).await.unwrap().state, wallet("Ada", 600));
    assert_eq!(at(6).await.unwrap().state, now.state);
    assert!(matches!(
        at(7).await,
        Err(Error::VersionNotFound { requested, actual, .. })
            if requested == Version::new(7) && actual == Version::new(6)
    ));
    let events = common::stored(&store, &ada).await;
    let fourth = events[3].recorded_at;
    // The longest prefix recorded at or before the time (events may share a timestamp).
    let prefix = events.iter().filter(|e| e.recorded_at <= fourth).count() as u64;
    let then = repo.load_at("ada", At::Time(fourth)).await.unwrap();
    assert_eq!(then.version, Version::new(prefix));
    assert_eq!(then.state, at(prefix).await.unwrap().state);
    let before = events[0].recorded_at - chrono::TimeDelta::milliseconds(1);
    let nothing = repo.load_at("ada", At::Time(before)).await.unwrap();
    assert_eq!(
        (nothing.state, nothing.version),
        (Wallet::default(), Version::ZERO)
    );

    // The live read model reaches the last commit and agrees with the aggregates.
    let expected = BTreeMap::from([
        ("ada".to_owned(), balance("Ada", 500, 6)),
        ("ben".to_owned(), balance("Ben", 4700, 3)),
    ]);
    live.wait_for(last.commit.position, WAIT).await.unwrap();
    assert_eq!(balances.all(), expected);
    assert_eq!(balances.taken_in(), 9);

    // A rebuild clears it and replays the whole log: the same read model, each event taken in
    // once since the reset.
    live.rebuild().await.unwrap();
    live.wait_for(last.commit.position, WAIT).await.unwrap();
    assert_eq!(balances.all(), expected);
    assert_eq!(balances.taken_in(), 9);
    live.shutdown().await.unwrap();
    expected
}
