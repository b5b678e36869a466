//! `Repository::with_cache`: a load starts from the state the cache remembers and reads only
//! the newer events; a command on it reads nothing before its append, and a stale state
//! never decides what is committed or returned; the state it remembers after a command is
//! the one a reload gives. (A conflict below the remembered version: `retry_reload.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Watched;
use eventsource_core::testing::fixtures::{BelowZero, Tally};
use eventsource_core::{
    Aggregate, Apply, CommandError, DomainEvent, Executed, Repository, RetryPolicy, Version,
};
use serde::{Deserialize, Serialize};

fn fold(from: &[u64]) -> Vec<(String, u64)> {
    from.iter().map(|v| ("tally-t".to_owned(), *v)).collect()
}

/// Runs `add(n)` on tally `t`; returns the (applied, value) of each state it decided on.
async fn add_seeing(
    repo: &Repository<Tally, Watched>,
    n: i64,
) -> (Vec<(u64, i64)>, Result<Executed, CommandError<BelowZero>>) {
    let mut seen = Vec::new();
    let result = repo
        .execute("t", |t| {
            seen.push((t.0.applied, t.0.value));
            t.0.add(n)
        })
        .await;
    (seen, result)
}

#[tokio::test]
async fn a_cached_repository_reads_only_the_events_after_the_state_it_remembers() {
    let store = Watched::default();
    let cached = Repository::<Tally, _>::new(store.clone()).with_cache(16);
    let plain = Repository::<Tally, _>::new(store.clone());
    for _ in 0..3 {
        cached.execute("t", |t| t.0.add(1)).await.unwrap();
    }
    assert_eq!(
        store.folds(),
        fold(&[1]),
        "only the first command reads: the others decide on the state the one before left"
    );
    for _ in 0..3 {
        plain.execute("t", |t| t.0.add(1)).await.unwrap();
    }
    assert_eq!(store.folds(), fold(&[1, 1, 1]), "without a cache: from 1");

    // Another writer's events are read, and only they (the read starts at the cached
    // version, 3, to see that the stream still holds it).
    common::add(&store.inner, "tally-t", &[10, 100]).await;
    let from_cache = cached.load("t").await.unwrap();
    assert_eq!(store.folds(), fold(&[3]));
    let reloaded = plain.load("t").await.unwrap();
    store.folds();
    assert_eq!(from_cache, reloaded, "state, version and position");
    assert_eq!((reloaded.version.get(), reloaded.state.0.value), (8, 116));

    // A clone shares the cache; with nothing new, a load reads the cached version alone.
    let again = cached.clone().load("t").await.unwrap();
    assert_eq!(store.folds(), fold(&[8]));
    assert_eq!(again, reloaded);

    // Time travel never starts from the cache.
    let past = cached
        .load_at("t", eventsource_core::At::Version(Version::new(2)))
        .await
        .unwrap();
    assert_eq!(store.folds(), fold(&[1]));
    assert_eq!(past.state.0.value, 2);

    // A command on a stale state: its append conflicts, it catches up and decides again.
    common::add(&store.inner, "tally-t", &[1000]).await;
    let (seen, commit) = add_seeing(&cached, 1).await;
    assert!(commit.is_ok());
    assert_eq!(seen, [(8, 116), (9, 1116)]);
    assert_eq!(
        store.folds(),
        fold(&[8]),
        "the conflict's catch-up, from the cached version"
    );

    // A rejection on a stale state is checked against the store before it is returned.
    common::add(&store.inner, "tally-t", &[5000]).await;
    let (seen, commit) = add_seeing(&cached, -2000).await;
    assert!(
        commit.is_ok(),
        "decided again on the newer state: {commit:?}"
    );
    assert_eq!(seen, [(10, 1117), (11, 6117)]);
    assert_eq!(store.folds(), fold(&[10]));
    // With nothing newer, the check reads nothing back and the rejection stands.
    let (seen, rejected) = add_seeing(&cached, -1_000_000).await;
    assert!(rejected.is_err());
    assert_eq!(seen, [(12, 4117)]);
    assert_eq!(store.folds(), fold(&[12]));

    cached.clear_cache();
    cached.load("t").await.unwrap();
    assert_eq!(
        store.folds(),
        fold(&[1]),
        "a cleared cache loads from the start"
    );
}

// An event whose encoding drops a field: the state a command leaves in the cache must be
// the one a reload gives, not the one its in-memory events would.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "note.taken")]
struct Noted {
    n: i64,
    #[serde(skip)]
    not_stored: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Aggregate)]
#[aggregate(name = "note", events(Noted))]
struct Notes {
    sum: i64,
}

impl Apply<Noted> for Notes {
    fn apply(&mut self, e: &Noted) {
        self.sum += e.n + e.not_stored;
    }
}

#[tokio::test]
async fn the_state_remembered_after_a_command_is_the_one_a_reload_gives() {
    let store = Watched::default();
    let cached = Repository::<Notes, _>::new(store.clone()).with_cache(16);
    cached
        .execute("a", |_| {
            Ok::<_, std::convert::Infallible>(Noted {
                n: 1,
                not_stored: 1000,
            })
        })
        .await
        .unwrap();
    let remembered = cached.load("a").await.unwrap();
    assert_eq!(
        store.folds(),
        [("note-a".to_owned(), 1), ("note-a".to_owned(), 1)],
        // (the command's own load; then the load after it, at the cached version 1)
        "the load starts from the state the command left"
    );
    let reloaded = Repository::<Notes, _>::new(store).load("a").await.unwrap();
    assert_eq!(reloaded.state.sum, 1, "what was stored");
    assert_eq!(remembered, reloaded);
}

#[tokio::test]
async fn a_stream_a_command_only_reads_is_checked_against_the_store() {
    let store = Watched::default();
    let cached = Repository::<Tally, _>::new(store.clone()).with_cache(16);
    cached
        .execute_many(["a", "b"], |[a, b]| {
            Ok::<_, BelowZero>([a.0.add(1)?, b.0.add(1)?])
        })
        .await
        .unwrap();
    common::add(&store.inner, "tally-b", &[41]).await;
    store.folds();
    // Writes to `a` what it saw of `b`: the append checks only `a`.
    let mut seen = Vec::new();
    cached
        .execute_many(["a", "b"], |[a, b]| {
            seen.push(b.0.value);
            Ok::<_, BelowZero>([vec![a.0.add(b.0.value)?], vec![]])
        })
        .await
        .unwrap();
    assert_eq!(seen, [1, 42], "decided again once `b` was found behind");
    assert_eq!(store.folds(), [("tally-b".to_owned(), 1)]);
    let a = Repository::<Tally, _>::new(store).load("a").await.unwrap();
    assert_eq!(a.state.0.value, 43);
}

/// A cached state that turns out to be behind costs no attempt of the retry policy: the
/// command never read the stream, so it lost no race on it.
#[tokio::test]
async fn a_stale_cached_state_costs_no_retry_attempt() {
    let store = Watched::default();
    let cached = Repository::<Tally, _>::new(store.clone())
        .with_retry(RetryPolicy::no_retry())
        .with_cache(16);
    cached.execute("t", |t| t.0.add(1)).await.unwrap();
    common::add(&store.inner, "tally-t", &[10]).await;
    let (seen, commit) = add_seeing(&cached, 1).await;
    assert!(commit.is_ok(), "{commit:?}");
    assert_eq!(seen, [(1, 1), (2, 11)]);
    // A real conflict after that catch-up is the first attempt's.
    common::add(&store.inner, "tally-t", &[10]).await;
    assert_exhausted_at_once(add_racing(&cached, &store, 4, 1).await);
    cached.load("t").await.unwrap();
    // The check before a rejection is no attempt either: a real conflict after it still
    // fails as the policy says, after one attempt.
    common::add(&store.inner, "tally-t", &[100]).await;
    assert_exhausted_at_once(add_racing(&cached, &store, 6, -1_000).await);
}

/// Runs a command on tally `t` that adds `n`, except on a state of `applied` events: there
/// it appends an event behind its own back (a real conflict) and adds 1.
async fn add_racing(
    repo: &Repository<Tally, Watched>,
    store: &Watched,
    applied: u64,
    n: i64,
) -> Result<Executed, CommandError<BelowZero>> {
    repo.execute("t", |t| {
        if t.0.applied != applied {
            return t.0.add(n);
        }
        futures::executor::block_on(common::add(&store.inner, "tally-t", &[1]));
        t.0.add(1)
    })
    .await
}

fn assert_exhausted_at_once(result: Result<Executed, CommandError<BelowZero>>) {
    assert!(
        matches!(
            result,
            Err(CommandError::RetriesExhausted { attempts: 1, .. })
        ),
        "{result:?}"
    );
}

/// With snapshots: they are taken of the state the cache keeps, and a load equals a fresh one.
#[tokio::test]
async fn snapshots_are_taken_of_the_cached_state() {
    use eventsource_core::testing::fixtures::Counter;
    use eventsource_core::{EventStore, ReadUntil, StreamId};

    let store = Watched::default();
    let cached = Repository::<Counter, _>::new(store.clone()).with_cache(16);
    for _ in 0..12 {
        cached.execute("c", |c| c.add(2)).await.unwrap();
    }
    let snapshot = store
        .load_snapshot(&StreamId::new("counter-c"), 1, ReadUntil::End)
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(snapshot.version, Version::new(10));
    let fresh = Repository::<Counter, _>::new(store.clone())
        .load("c")
        .await
        .unwrap();
    assert_eq!((fresh.version.get(), fresh.state.value), (12, 24));
    assert_eq!(cached.load("c").await.unwrap(), fresh);
}
