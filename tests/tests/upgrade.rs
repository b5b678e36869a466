//! An upgrade, on both stores: streams written by version 1 of the application (its event
//! versions and payloads, its snapshots in snapshot schema 1, all written by the older code
//! itself, [`eventsource_tests::v1`]) are read and extended by the current one.
//!
//! The current aggregate loads them (upcasting the old top-ups, passing over the old-schema
//! snapshots, which would decode but mean euros where it counts cents), its commands append
//! new-version events after the old ones and take snapshots in the new schema, a projection
//! reads the mixed stream, and time travel into the old part works. The older code, still
//! running somewhere during a rolling deploy, refuses the new events instead of misreading
//! them.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use eventsource_core::prelude::*;
use eventsource_core::{DecodeError, Error, ProjectionError, ReadUntil};
use eventsource_postgres::PgProjectionRunner;
use eventsource_tests::balances::Balances;
use eventsource_tests::pg_balances::PgBalances;
use eventsource_tests::wallet::{Wallet, transfer};
use eventsource_tests::{Balance, v1};

use common::{balance, wallet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_written_by_version_1_are_read_and_extended_by_version_2_in_memory() {
    upgrade(common::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_written_by_version_1_are_read_and_extended_by_version_2_on_postgres() {
    let store = common::postgres().await;
    let read_model = upgrade(store.clone()).await;

    // The transactional read model reads the mixed stream too, and agrees with the core
    // runner's.
    PgBalances::create_table(&store).await.unwrap();
    let mut table = PgProjectionRunner::new(store.clone(), PgBalances).batch_size(3);
    let reached = table.catch_up().await.unwrap();
    assert_eq!(reached, store.head().await.unwrap());
    assert_eq!(PgBalances::read(&store).await.unwrap(), read_model);
}

/// The upgrade. Every assertion is the same on every store; it returns the read model's
/// content after the upgrade.
async fn upgrade<S: EventStore>(store: S) -> BTreeMap<String, Balance> {
    let cleo = Wallet::stream_id("cleo");

    // Given: version 1 of the application ran Cleo's wallet, in whole euros.
    let old = Repository::<v1::Wallet, S>::new(store.clone());
    old.execute("cleo", |w| w.open("Cleo")).await.unwrap();
    for euros in [20, 5, 10] {
        old.execute("cleo", |w| w.top_up(euros)).await.unwrap();
    }
    // What it stored: version 1 payloads, and snapshots at 2 and 4 in snapshot schema 1.
    assert_eq!(
        shapes(&store, &cleo).await,
        [
            r#"wallet.opened v1 {"owner":"Cleo"}"#,
            r#"wallet.topped_up v1 {"euros":20}"#,
            r#"wallet.topped_up v1 {"euros":5}"#,
            r#"wallet.topped_up v1 {"euros":10}"#,
        ]
    );
    let old_snapshot = store
        .load_snapshot(&cleo, v1::Wallet::SNAPSHOT_VERSION, ReadUntil::End)
        .await
        .unwrap()
        .expect("version 1 took a snapshot at 4");
    assert_eq!(
        (old_snapshot.version, old_snapshot.schema_version),
        (Version::new(4), 1)
    );
    // The trap: the old snapshot decodes as the current state, but 35 euros read as 35 cents.
    assert_eq!(
        Wallet::decode_snapshot(&old_snapshot.payload).unwrap(),
        wallet("Cleo", 35)
    );

    // When the current version takes over, it loads the old stream right: the old top-ups
    // upcast, the old-schema snapshots passed over.
    let repo = Repository::<Wallet, S>::new(store.clone());
    let loaded = repo.load("cleo").await.unwrap();
    assert_eq!(loaded.state, wallet("Cleo", 3500));
    assert_eq!(loaded.version, Version::new(4));

    // Its commands append new-version events after the old ones: a payment (a type version 1
    // did not have), a top-up in cents, and a transfer to a wallet opened by the new version.
    repo.execute("cleo", |w| w.pay(1250, "florist"))
        .await
        .unwrap();
    repo.execute("cleo", |w| w.top_up(300)).await.unwrap();
    repo.execute("dan", |w| w.open("Dan")).await.unwrap();
    let last = repo
        .execute_many(["cleo", "dan"], |[from, to]| transfer(from, to, 1000))
        .await
        .unwrap();
    let stored = shapes(&store, &cleo).await;
    assert_eq!(
        stored[4..],
        [
            r#"wallet.paid v1 {"cents":1250,"payee":"florist"}"#,
            r#"wallet.topped_up v2 {"cents":300}"#,
            r#"wallet.paid v1 {"cents":1000,"payee":"Dan"}"#,
        ]
    );
    let now = repo.load("cleo").await.unwrap();
    assert_eq!(now.state, wallet("Cleo", 1550));
    assert_eq!(now.version, Version::new(7));

    // It took a snapshot in its own schema at 6, of exactly the state there; the old
    // snapshots stay as they were, passed over.
    let new_snapshot = store
        .load_snapshot(&cleo, Wallet::SNAPSHOT_VERSION, ReadUntil::End)
        .await
        .unwrap()
        .expect("the current version took a snapshot at 6");
    assert_eq!(
        (new_snapshot.version, new_snapshot.schema_version),
        (Version::new(6), 2)
    );
    assert_eq!(
        Wallet::decode_snapshot(&new_snapshot.payload).unwrap(),
        wallet("Cleo", 2550)
    );
    let still_old = store
        .load_snapshot(&cleo, v1::Wallet::SNAPSHOT_VERSION, ReadUntil::End)
        .await
        .unwrap()
        .expect("the old snapshot is kept");
    assert_eq!(still_old, old_snapshot);

    // Time travel into the old part, where the old snapshots are (2 and 4), and across the
    // upgrade.
    let at = |v| repo.load_at("cleo", At::Version(Version::new(v)));
    assert_eq!(at(2).await.unwrap().state, wallet("Cleo", 2000));
    assert_eq!(at(3).await.unwrap().state, wallet("Cleo", 2500));
    assert_eq!(at(4).await.unwrap().state, wallet("Cleo", 3500));
    assert_eq!(at(5).await.unwrap().state, wallet("Cleo", 2250));
    assert_eq!(at(6).await.unwrap().state, wallet("Cleo", 2550));
    let events = common::stored(&store, &cleo).await;
    let second = events[1].recorded_at;
    // The longest prefix recorded at or before the time (events may share a timestamp).
    let prefix = events.iter().filter(|e| e.recorded_at <= second).count() as u64;
    let then = repo.load_at("cleo", At::Time(second)).await.unwrap();
    assert_eq!(then.version, Version::new(prefix));
    assert_eq!(then.state, at(prefix).await.unwrap().state);

    // A projection reads the mixed stream, old versions upcast.
    let balances = Balances::default();
    let mut runner = ProjectionRunner::new(store.clone(), balances.clone()).batch_size(3);
    let reached = runner.catch_up().await.unwrap();
    assert!(reached >= last.commit.position);
    let expected = BTreeMap::from([
        ("cleo".to_owned(), balance("Cleo", 1550, 7)),
        ("dan".to_owned(), balance("Dan", 1000, 2)),
    ]);
    assert_eq!(balances.all(), expected);

    // The older code, still running during a rolling deploy, refuses what it cannot read
    // (a type it never had, a version newer than it knows) instead of misreading it, and
    // says where.
    let refused = old.load("cleo").await.unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Decode { stream, version, event_type, source: DecodeError::UnknownEvent { .. }, .. }
                if stream == &cleo && *version == Version::new(5) && event_type == "wallet.paid"
        ),
        "{refused:?}"
    );
    let refused = old.load("dan").await.unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Decode {
                version,
                schema_version: 2,
                source: DecodeError::UnsupportedVersion { current: 1, .. },
                ..
            } if *version == Version::new(2)
        ),
        "{refused:?}"
    );
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_event_the_upcast_cannot_convert_is_refused_by_name_in_memory() {
    unconvertible(common::in_memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_event_the_upcast_cannot_convert_is_refused_by_name_on_postgres() {
    unconvertible(common::postgres().await).await;
}

/// A version 1 top-up too large to count in cents: the aggregate and the projection both
/// refuse it with an error naming the stream, version and type, and the projection's
/// checkpoint stays before it. Nothing reads it as some other amount.
async fn unconvertible<S: EventStore>(store: S) {
    let eve = Wallet::stream_id("eve");
    let old = Repository::<v1::Wallet, S>::new(store.clone());
    old.execute("eve", |w| w.open("Eve")).await.unwrap();
    old.execute("eve", |w| w.top_up(i64::MAX)).await.unwrap();

    let repo = Repository::<Wallet, S>::new(store.clone());
    let refused = repo.load("eve").await.unwrap_err();
    assert!(
        matches!(
            &refused,
            Error::Decode {
                stream,
                version,
                event_type,
                schema_version: 1,
                source: DecodeError::Upcast { from: 1, to: 2, .. },
            } if stream == &eve && *version == Version::new(2) && event_type == "wallet.topped_up"
        ),
        "{refused:?}"
    );

    let mut runner = ProjectionRunner::new(store.clone(), Balances::default());
    let stopped = runner.catch_up().await.unwrap_err();
    let ProjectionError::Handler {
        stream,
        version,
        position,
        source,
        ..
    } = &stopped
    else {
        panic!("expected the handler to refuse the event, got {stopped:?}");
    };
    assert_eq!((stream, *version), (&eve, Version::new(2)));
    assert!(
        matches!(
            source.downcast_ref::<DecodeError>(),
            Some(DecodeError::Upcast { .. })
        ),
        "{source:?}"
    );
    let checkpoint = store.load_checkpoint(Balances::NAME).await.unwrap();
    assert!(
        checkpoint < Some(*position),
        "the checkpoint {checkpoint:?} should stay before {position}"
    );
}

/// Every event of `stream` as stored: `<type> v<schema version> <payload>`.
async fn shapes<S: EventStore>(store: &S, stream: &StreamId) -> Vec<String> {
    common::stored(store, stream)
        .await
        .into_iter()
        .map(|e| {
            let payload = String::from_utf8_lossy(&e.payload);
            format!("{} v{} {payload}", e.event_type, e.schema_version)
        })
        .collect()
}
