//! Commands through the repository: retries and hot streams, rejections, snapshots, time
//! travel, idempotency keys, metadata, commands over several aggregates, undecodable events.

use bytes::Bytes;
use chrono::Utc;

use super::support::{added, read, write};
use crate::envelope::{NewEvent, Snapshot};
use crate::error::{CommandError, Error};
use crate::ids::{ExpectedVersion, Position, StreamId, Version};
use crate::metadata::Metadata;
use crate::repository::{At, CommandOptions, Repository};
use crate::store::{EventStore, ReadUntil};
use crate::testing::fixtures::{BelowZero, Counter, CounterEvent};

/// Concurrent commands on one aggregate all commit through reload-and-retry; the final
/// version is exactly the number of commands.
pub async fn repository_retries_conflicts_until_every_command_commits<S: EventStore>(store: S) {
    const TASKS: usize = 6;
    const COMMANDS: usize = 10;
    // Six writers on one stream with the default policy: a command that keeps losing runs
    // under the writers' lock, so none gives up, however slow the store.
    let repo = Repository::<Counter, S>::new(store.clone());
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        // A repository each, as six processes would have: they race.
        let repo = Repository::<Counter, S>::new(store.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..COMMANDS {
                repo.execute("c", |c| c.add(1)).await.expect("command");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let loaded = repo.load("c").await.expect("load");
    assert_eq!(loaded.version.get(), (TASKS * COMMANDS) as u64);
    assert_eq!(loaded.state.value, (TASKS * COMMANDS) as i64);
    assert_eq!(loaded.state.applied, (TASKS * COMMANDS) as u64);
}

/// Writers racing on one stream with the default policy, with and without the state cache:
/// 8 x 250 and 32 x 60 deposits. Every command commits exactly once (no `RetriesExhausted`
/// from contention alone), and none starves: a command that keeps losing runs under the
/// writers' lock, so no command needs more than a handful of appends.
pub async fn hot_stream_commands_never_give_up_and_none_starves<S: EventStore>(store: S) {
    use super::contention::{deposits_on_one_stream, race_runs};
    for run in 0..race_runs() {
        for cached in [false, true] {
            for (tasks, commands) in [(8, 250), (32, 60)] {
                // Four repositories, as four processes would have: the commands of one queue
                // in its process, those of different ones race.
                let repos: Vec<_> = (0..4)
                    .map(|_| {
                        let repo = Repository::<Counter, S>::new(store.clone());
                        if cached { repo.with_cache(64) } else { repo }
                    })
                    .collect();
                let id = format!("hot-{run}-{cached}-{tasks}");
                let report = deposits_on_one_stream(&repos, &id, tasks, commands).await;
                eprintln!(
                    "hot stream, {tasks} x {commands}, cached: {cached}: slowest command {:?}, \
                     at most {} appends, {} serialized, {} lost races",
                    report.slowest, report.most_attempts, report.serialized, report.conflicts
                );
                // Three lost races at most before the lock, one attempt under it, and one
                // free retry for a cached state that was behind.
                assert!(
                    report.most_attempts <= 5,
                    "a command starved: {} appends ({report:?})",
                    report.most_attempts
                );
            }
        }
    }
}

/// `RetryPolicy::no_retry()` and an optimistic policy fail at their first lost race, even when
/// the stream is locked by another writer: only the default escalates.
pub async fn no_retry_still_fails_at_the_first_lost_race<S: EventStore>(store: S) {
    use crate::repository::RetryPolicy;
    let stream = <Counter as crate::aggregate::Aggregate>::stream_id("c");
    let repo = Repository::<Counter, S>::new(store.clone());
    repo.execute("c", |c| c.add(1)).await.expect("seed");
    for policy in [RetryPolicy::no_retry(), RetryPolicy::optimistic(1)] {
        let strict = Repository::<Counter, S>::new(store.clone()).with_retry(policy);
        let mut decisions = 0;
        let result = strict
            .execute("c", |c| {
                decisions += 1;
                // Another writer wins the race (the suite runs on a multi-threaded runtime).
                tokio::task::block_in_place(|| {
                    tokio::runtime::Handle::current().block_on(repo.execute("c", |c| c.add(1)))
                })
                .expect("racer");
                c.add(1)
            })
            .await;
        match result {
            Err(CommandError::RetriesExhausted { attempts: 1, .. }) => {}
            other => panic!("{policy:?}: expected RetriesExhausted after 1 attempt: {other:?}"),
        }
        assert_eq!(decisions, 1);
    }
    let lock = store
        .lock_streams(std::slice::from_ref(&stream))
        .await
        .expect("lock");
    let strict = Repository::<Counter, S>::new(store.clone()).with_retry(RetryPolicy::no_retry());
    match strict.execute("c", |c| c.add(1)).await {
        Err(CommandError::RetriesExhausted { attempts: 1, .. }) => {}
        other => panic!("a locked stream is a lost race: {other:?}"),
    }
    lock.release().await.expect("release");
    let executed = repo.execute("c", |c| c.add(1)).await.expect("released");
    assert_eq!((executed.attempts, executed.conflicts), (1, 0));
}

/// A domain error reaches the caller typed and nothing is written; a decision with no events
/// commits nothing.
pub async fn repository_rejections_reach_the_caller_and_write_nothing<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    repo.execute("c", |c| c.add(2)).await.expect("command");
    match repo.execute("c", |c| c.add(-5)).await {
        Err(CommandError::Rejected(BelowZero)) => {}
        other => panic!("expected the domain error, got {other:?}"),
    }
    let none = repo
        .execute("c", |_| Ok::<_, BelowZero>(None::<CounterEvent>))
        .await
        .expect("empty decision");
    assert!(none.commit.is_empty());
    assert_eq!(repo.load("c").await.expect("load").version.get(), 1);
}

/// Snapshots are written every `SNAPSHOT_EVERY` events, used on load, and ignored (never
/// misread) when their schema differs or their payload is corrupt.
pub async fn repository_uses_snapshots_and_ignores_bad_ones<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    for _ in 0..12 {
        repo.execute("c", |c| c.add(1)).await.expect("command");
    }
    let stream = StreamId::new("counter-c");
    let snap = store
        .load_snapshot(&stream, 1, ReadUntil::End)
        .await
        .expect("load")
        .expect("a snapshot");
    assert_eq!(snap.version.get(), 10, "snapshots every 5 events");
    let state: Counter = serde_json::from_slice(&snap.payload).expect("snapshot payload");
    assert_eq!(
        state,
        Counter {
            value: 10,
            applied: 10
        },
        "a snapshot is exactly the state at its version"
    );
    let loaded = repo.load("c").await.expect("load");
    assert_eq!(
        (
            loaded.version.get(),
            loaded.state.value,
            loaded.state.applied
        ),
        (12, 12, 12)
    );
    let events = read(&store, "counter-c").await;
    assert_eq!(
        loaded.position, events[11].position,
        "a load reports its last event's position"
    );
    let at10 = repo
        .load_at("c", At::Version(Version::new(10)))
        .await
        .expect("load_at");
    assert_eq!(
        (at10.version.get(), at10.position),
        (10, events[9].position),
        "a load that folds nothing after its snapshot reports the snapshot's position"
    );

    // A corrupt snapshot of the current schema is skipped, not misread.
    let mut corrupt = snap.clone();
    corrupt.version = Version::new(11);
    corrupt.payload = Bytes::from_static(b"{\"value\": \"not a number\"");
    store.save_snapshot(corrupt).await.expect("save");
    let loaded = repo
        .load("c")
        .await
        .expect("load despite a corrupt snapshot");
    assert_eq!(
        (
            loaded.version.get(),
            loaded.state.value,
            loaded.state.applied
        ),
        (12, 12, 12)
    );

    // A snapshot of another schema version is never decoded, even when it is newer.
    let mut other_schema = snap;
    other_schema.version = Version::new(12);
    other_schema.schema_version = 99;
    other_schema.payload = Bytes::from_static(b"{\"value\": 1000, \"applied\": 1}");
    store.save_snapshot(other_schema).await.expect("save");
    let loaded = repo.load("c").await.expect("load");
    assert_eq!(loaded.state.value, 12);
}

/// A snapshot is believed only when its stream holds an event at the snapshot's version with
/// the snapshot's position. One ahead of its stream (the events restored from an older backup
/// than the snapshots, or a snapshot written by hand) or of another history (same version,
/// other position) is passed over for an older snapshot or the start, in `load`, `load_at`
/// and commands.
pub async fn a_snapshot_its_stream_does_not_hold_is_never_believed<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    for _ in 0..7 {
        repo.execute("c", |c| c.add(1)).await.expect("command");
    }
    let stream = StreamId::new("counter-c");
    let events = read(&store, "counter-c").await;
    let good = store
        .load_snapshot(&stream, 1, ReadUntil::End)
        .await
        .expect("load")
        .expect("the snapshot at 5");
    assert_eq!(good.version.get(), 5);
    let forged = |version: u64, position: Position, value: i64| Snapshot {
        stream: stream.clone(),
        version: Version::new(version),
        position,
        event_recorded_at: Utc::now(),
        schema_version: 1,
        payload: Bytes::from(
            serde_json::to_vec(&Counter {
                value,
                applied: version,
            })
            .expect("encode"),
        ),
    };
    // Ahead of the stream (version 40 of a stream at 7), and at version 6 with another
    // position than the stream's event 6.
    store
        .save_snapshot(forged(40, Position::new(u64::MAX >> 20, 1), 1_000))
        .await
        .expect("save");
    store
        .save_snapshot(forged(6, events[3].position, 2_000))
        .await
        .expect("save");
    for _ in 0..2 {
        let loaded = repo.load("c").await.expect("load");
        assert_eq!(
            (
                loaded.version.get(),
                loaded.state.value,
                loaded.state.applied
            ),
            (7, 7, 7),
            "from the matching snapshot at 5 and the stream"
        );
        assert_eq!(loaded.position, events[6].position);
    }
    let at6 = repo
        .load_at("c", At::Version(Version::new(6)))
        .await
        .expect("load_at");
    assert_eq!((at6.version.get(), at6.state.value), (6, 6));
    let executed = repo.execute("c", |c| c.add(1)).await.expect("command");
    assert_eq!(
        (executed.attempts, executed.conflicts),
        (1, 0),
        "the command appends at the stream's real version at once"
    );
    assert_eq!(executed.commit.streams[0].first_version, Version::new(8));

    // With no snapshot matching, from the start.
    let fresh = Repository::<Counter, S>::new(store.clone());
    store
        .save_snapshot(forged(5, events[0].position, 3_000))
        .await
        .expect("save over the good one");
    let loaded = fresh.load("c").await.expect("load");
    assert_eq!((loaded.version.get(), loaded.state.value), (8, 8));
}

/// `load_at` reconstructs the state at a version (ignoring snapshots above it) and at a time.
pub async fn repository_time_travel_by_version_and_time<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    for n in 1..=7 {
        repo.execute("c", |c| c.add(n)).await.expect("command");
    }
    let at3 = repo
        .load_at("c", At::Version(Version::new(3)))
        .await
        .expect("load_at");
    let events = read(&store, "counter-c").await;
    assert_eq!(
        (at3.version.get(), at3.state.value, at3.state.applied),
        (3, 6, 3)
    );
    assert_eq!(at3.position, events[2].position);
    let at6 = repo
        .load_at("c", At::Version(Version::new(6)))
        .await
        .expect("load_at");
    assert_eq!(
        (at6.version.get(), at6.state.value),
        (6, 21),
        "uses the snapshot at 5, not above"
    );
    assert_eq!(at6.position, events[5].position);
    match repo.load_at("c", At::Version(Version::new(8))).await {
        Err(Error::VersionNotFound {
            requested, actual, ..
        }) => {
            assert_eq!((requested.get(), actual.get()), (8, 7));
        }
        other => panic!("expected VersionNotFound, got {other:?}"),
    }
    let at_time = repo
        .load_at("c", At::Time(events[3].recorded_at))
        .await
        .expect("load_at");
    assert!(
        at_time.version.get() >= 4,
        "every event recorded at or before t is included"
    );
    assert!(events[at_time.version.get() as usize - 1].recorded_at <= events[3].recorded_at);
    assert_eq!(
        at_time.position,
        events[at_time.version.get() as usize - 1].position
    );
    let before = repo
        .load_at(
            "c",
            At::Time(events[0].recorded_at - chrono::Duration::seconds(1)),
        )
        .await
        .expect("load_at");
    assert_eq!(
        (before.version, before.position),
        (Version::ZERO, Position::ZERO)
    );
}

/// A command retried with the same idempotency key returns the first commit and appends
/// nothing, even though deciding again would now fail.
pub async fn idempotency_key_returns_the_first_commit<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    repo.execute("c", |c| c.add(1)).await.expect("command");
    let opts = CommandOptions::default().idempotency_key("request-42");
    let first = repo
        .execute_with("c", opts.clone(), |c| c.add(-1))
        .await
        .expect("first");
    let again = repo
        .execute_with("c", opts, |c| c.add(-1))
        .await
        .expect("a retry returns the first commit");
    assert_eq!(first.commit, again.commit);
    assert_eq!(
        (first.attempts, again.attempts),
        (1, 0),
        "the repeat appends nothing"
    );
    let loaded = repo.load("c").await.expect("load");
    assert_eq!((loaded.version.get(), loaded.state.value), (2, 0));
}

/// Repeats of one request racing each other (a client retrying before the first answer came,
/// through this process and another) commit it once, and every one of them answers that
/// commit: none decides again on the state the first one made, none fails.
pub async fn racing_repeats_of_one_idempotency_key_commit_once<S: EventStore>(store: S) {
    let repos = [
        Repository::<Counter, S>::new(store.clone()),
        Repository::<Counter, S>::new(store.clone()),
    ];
    for round in 0..10u64 {
        let key = format!("request-{round}");
        let mut tasks = Vec::new();
        for t in 0..8 {
            let repo = repos[t % 2].clone();
            let opts = CommandOptions::default().idempotency_key(key.clone());
            tasks.push(tokio::spawn(async move {
                // What it writes depends on the state it decides on: a repeat deciding on the
                // state the first one made would write other events under the same ids.
                repo.execute_with("once", opts, |c| c.add(c.value + 1))
                    .await
            }));
        }
        let mut commits = Vec::new();
        for task in tasks {
            let done = task
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("round {round}: a repeat failed: {e}"));
            commits.push(done.commit);
        }
        assert!(
            commits.iter().all(|c| *c == commits[0]),
            "round {round}: every repeat answers the one commit: {commits:?}"
        );
        let loaded = repos[0].load("once").await.expect("load");
        assert_eq!(
            (loaded.version.get(), loaded.state.value),
            (round + 1, (1_i64 << (round + 1)) - 1),
            "round {round}: committed once, each round doubling the value plus one"
        );
    }
}

/// Metadata set on a command is recorded with each of its events.
pub async fn metadata_flows_into_recorded_events<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    let correlation = uuid::Uuid::new_v4();
    let causation = uuid::Uuid::new_v4();
    let metadata = Metadata::new()
        .with_correlation_id(correlation)
        .with_causation_id(causation)
        .with_header("user", "ada");
    let opts = CommandOptions::with_metadata(metadata.clone());
    repo.execute_with("c", opts, |c| {
        Ok::<_, BelowZero>(vec![c.add(1)?, c.add(2)?])
    })
    .await
    .expect("command");
    let events = read(&store, "counter-c").await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e.metadata == metadata));
}

/// A command over two aggregates commits both or neither.
pub async fn multi_aggregate_command_commits_atomically<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    repo.execute("a", |c| c.add(10)).await.expect("seed");
    let commit = repo
        .execute_many(["a", "b"], |[a, b]| {
            Ok::<_, BelowZero>([a.add(-4)?, b.add(4)?])
        })
        .await
        .expect("transfer");
    assert_eq!(commit.commit.streams.len(), 2);
    let rejected = repo
        .execute_many(["a", "b"], |[a, b]| {
            Ok::<_, BelowZero>([a.add(-100)?, b.add(100)?])
        })
        .await;
    assert!(matches!(rejected, Err(CommandError::Rejected(BelowZero))));
    let (a, b) = (
        repo.load("a").await.expect("a"),
        repo.load("b").await.expect("b"),
    );
    assert_eq!((a.state.value, b.state.value), (6, 4));
    assert_eq!((a.version.get(), b.version.get()), (2, 1));
}

/// Loading a stream holding a corrupt payload, an unknown type or an unsupported version fails
/// with an error naming the stream, the version and the type, and writes nothing.
pub async fn undecodable_events_are_typed_errors_naming_stream_version_and_type<S: EventStore>(
    store: S,
) {
    let repo = Repository::<Counter, S>::new(store.clone());
    let cases = [
        (
            "corrupt",
            NewEvent::new("counter.added", 1, &b"{\"n\": \"seven\"}"[..]),
            "counter.added",
            1,
        ),
        (
            "unknown",
            NewEvent::new("counter.exploded", 1, &b"{}"[..]),
            "counter.exploded",
            1,
        ),
        (
            "future",
            NewEvent::new("counter.added", 9, &b"{\"n\": 1}"[..]),
            "counter.added",
            9,
        ),
    ];
    for (id, bad, name, schema) in cases {
        let stream = format!("counter-{id}");
        store
            .append(vec![write(
                &stream,
                ExpectedVersion::Any,
                vec![added(1), bad],
            )])
            .await
            .expect("append");
        match repo.load(id).await {
            Err(Error::Decode {
                stream: s,
                version,
                event_type,
                schema_version,
                ..
            }) => {
                assert_eq!(s.as_str(), stream);
                assert_eq!(version.get(), 2);
                assert_eq!((event_type.as_str(), schema_version), (name, schema));
            }
            other => panic!("expected a decode error for {id}, got {other:?}"),
        }
        let result = repo.execute(id, |c| c.add(1)).await;
        assert!(
            matches!(result, Err(CommandError::Failed(Error::Decode { .. }))),
            "got {result:?}"
        );
        assert_eq!(
            read(&store, &stream).await.len(),
            2,
            "a failed command writes nothing"
        );
    }
}
