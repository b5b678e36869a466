//! A command that meets a conflict catches its aggregate up from the version it had loaded,
//! reading only the newer events, and decides again on the state the stream has now.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;

use common::Watched;
use eventsource_core::testing::fixtures::{CounterEvent, Tally};
use eventsource_core::{
    EventStore, ExpectedVersion, InMemoryStore, Repository, StreamWrite, Version,
};

/// Appends `n` to `stream` behind the command's back, from inside `decide` (the in-memory
/// store's append completes without waiting).
fn sneak(store: &InMemoryStore, stream: &str, n: i64) {
    futures::executor::block_on(store.append(vec![StreamWrite::new(
        stream,
        ExpectedVersion::Any,
        vec![CounterEvent::Added(n).to_new_event()],
    )]))
    .expect("a concurrent append");
}

#[tokio::test]
async fn a_retry_folds_only_the_events_after_the_loaded_version() {
    let store = Watched::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    for _ in 0..3 {
        repo.execute("t", |t| t.0.add(1)).await.unwrap();
    }
    store.folds();

    let mut seen = Vec::new();
    let commit = repo
        .execute("t", |t| {
            seen.push((t.0.applied, t.0.value));
            if seen.len() == 1 {
                sneak(&store.inner, "tally-t", 10);
            }
            t.0.add(1)
        })
        .await
        .unwrap();
    assert_eq!(
        seen,
        [(3, 3), (4, 13)],
        "the second decision sees the concurrent event"
    );
    assert_eq!(
        store.folds(),
        [("tally-t".to_owned(), 1), ("tally-t".to_owned(), 3)],
        "the retry reads from the version loaded (to check it is still the stream's), not from the start"
    );
    assert_eq!(commit.commit.streams[0].first_version, Version::new(5));
    let loaded = repo.load("t").await.unwrap();
    assert_eq!((loaded.version.get(), loaded.state.0.value), (5, 14));
    assert_eq!(loaded.position, commit.commit.position);
}

#[tokio::test]
async fn a_multi_aggregate_retry_catches_every_aggregate_up() {
    let store = Watched::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    repo.execute("a", |t| t.0.add(1)).await.unwrap();
    repo.execute("b", |t| t.0.add(2)).await.unwrap();
    store.folds();

    let mut seen = Vec::new();
    repo.execute_many(["a", "b"], |[a, b]| {
        seen.push((a.0.value, b.0.value));
        if seen.len() == 1 {
            sneak(&store.inner, "tally-b", 5);
        }
        Ok::<_, std::convert::Infallible>([
            vec![CounterEvent::Added(1)],
            vec![CounterEvent::Added(1)],
        ])
    })
    .await
    .unwrap();
    assert_eq!(seen, [(1, 2), (1, 7)]);
    let folds = store.folds();
    assert_eq!(
        folds,
        [
            ("tally-a".to_owned(), 1),
            ("tally-b".to_owned(), 1),
            ("tally-a".to_owned(), 1),
            ("tally-b".to_owned(), 1),
        ]
    );
    let b = repo.load("b").await.unwrap();
    assert_eq!((b.version.get(), b.state.0.value), (3, 8));
}

/// Also with a state cache: the state it remembers is dropped, not folded on.
#[tokio::test]
async fn a_stream_that_no_longer_holds_the_loaded_state_is_loaded_again_from_the_start() {
    for cached in [false, true] {
        let store = Watched::default();
        let repo = Repository::<Tally, _>::new(store.clone());
        let repo = if cached { repo.with_cache(16) } else { repo };
        for _ in 0..3 {
            repo.execute("t", |t| t.0.add(1)).await.unwrap();
        }
        store.folds();
        let mut decisions = 0;
        let executed = repo
            .execute("t", |t| {
                decisions += 1;
                if decisions == 1 {
                    // Another writer wins the race, and the stream's history is not the
                    // one the state was folded from any more.
                    sneak(&store.inner, "tally-t", 10);
                    store.rewritten.store(true, Ordering::SeqCst);
                }
                t.0.add(1)
            })
            .await
            .unwrap();
        // The cached command's first decision read nothing.
        let first_load: &[u64] = if cached { &[] } else { &[1] };
        let expected: Vec<(String, u64)> = first_load
            .iter()
            .chain(&[3, 1])
            .map(|v| ("tally-t".to_owned(), *v))
            .collect();
        assert_eq!(
            store.folds(),
            expected,
            "the catch-up finds another event at version 3 and loads from the start (cached: {cached})"
        );
        assert_eq!(executed.commit.streams[0].first_version, Version::new(5));
        assert_eq!((executed.attempts, executed.conflicts), (2, 1));
        let loaded = repo.load("t").await.unwrap();
        assert_eq!((loaded.version.get(), loaded.state.0.value), (5, 14));
    }
}

/// A stream read that hands out a gap (a broken store, a plan that lost the order) is a typed
/// error, never a fold into a state no history has.
#[tokio::test]
async fn a_fold_read_with_a_gap_is_corrupt_not_a_state() {
    let store = Watched::default();
    let repo = Repository::<Tally, _>::new(store.clone());
    for _ in 0..4 {
        repo.execute("t", |t| t.0.add(1)).await.unwrap();
    }
    store.skip_version.store(3, Ordering::SeqCst);
    match repo.load("t").await {
        Err(eventsource_core::Error::Store(eventsource_core::StoreError::Corrupt {
            version,
            ..
        })) => assert_eq!(version, Version::new(4)),
        other => panic!("expected Corrupt at version 4, got {other:?}"),
    }
    store.skip_version.store(0, Ordering::SeqCst);
    let loaded = repo.load("t").await.unwrap();
    assert_eq!((loaded.version.get(), loaded.state.0.value), (4, 4));
}
