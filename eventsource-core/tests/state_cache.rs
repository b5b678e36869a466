//! `Repository::with_cache`: a load starts from the state the cache remembers and reads only
//! the newer events; a command on it reads nothing before its append, and a stale state
//! never decides what is committed or returned; the state it remembers after a command is
//! the one a reload gives. (A conflict below the remembered version: `retry_reload.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Watched;
use eventsource_core::testing::fixtures::{BelowZero, Tally};
use eventsource_core::{Aggregate, Apply, CommandError, Commit, DomainEvent, Repository, Version};
use serde::{Deserialize, Serialize};

fn fold(from: &[u64]) -> Vec<(String, u64)> {
    from.iter().map(|v| ("tally-t".to_owned(), *v)).collect()
}

/// Runs `add(n)` on tally `t`; returns the (applied, value) of each state it decided on.
async fn add_seeing(
    repo: &Repository<Tally, Watched>,
    n: i64,
) -> (Vec<(u64, i64)>, Result<Commit, CommandError<BelowZero>>) {
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

    // Another writer's events are read, and only they.
    common::add(&store.inner, "tally-t", &[10, 100]).await;
    let from_cache = cached.load("t").await.unwrap();
    assert_eq!(store.folds(), fold(&[4]));
    let reloaded = plain.load("t").await.unwrap();
    store.folds();
    assert_eq!(from_cache, reloaded, "state, version and position");
    assert_eq!((reloaded.version.get(), reloaded.state.0.value), (8, 116));

    // A clone shares the cache; a load with nothing new reads nothing before the version.
    let again = cached.clone().load("t").await.unwrap();
    assert_eq!(store.folds(), fold(&[9]));
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
    assert_eq!(store.folds(), fold(&[9]), "the conflict's catch-up");

    // A rejection on a stale state is checked against the store before it is returned.
    common::add(&store.inner, "tally-t", &[5000]).await;
    let (seen, commit) = add_seeing(&cached, -2000).await;
    assert!(
        commit.is_ok(),
        "decided again on the newer state: {commit:?}"
    );
    assert_eq!(seen, [(10, 1117), (11, 6117)]);
    assert_eq!(store.folds(), fold(&[11]));
    // With nothing newer, the check reads nothing back and the rejection stands.
    let (seen, rejected) = add_seeing(&cached, -1_000_000).await;
    assert!(rejected.is_err());
    assert_eq!(seen, [(12, 4117)]);
    assert_eq!(store.folds(), fold(&[13]));

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
        [("note-a".to_owned(), 1), ("note-a".to_owned(), 2)],
        // (the command's own load, then the load after it)
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
    assert_eq!(store.folds(), [("tally-b".to_owned(), 2)]);
    let a = Repository::<Tally, _>::new(store).load("a").await.unwrap();
    assert_eq!(a.state.0.value, 43);
}
