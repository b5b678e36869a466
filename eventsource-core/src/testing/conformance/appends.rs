//! Appends: expected versions and their conflicts, atomic multi-stream appends, commit
//! positions, racing writers and the empty append.

use super::support::{added, assert_conflict, read, read_all_events, versions, write};
use crate::envelope::StreamWrite;
use crate::error::StoreError;
use crate::ids::{ExpectedVersion, Position, StreamId, Version};
use crate::store::EventStore;

/// A wrong `Exact` version is a typed conflict, and nothing of the append is written.
pub async fn exact_version_conflict_writes_nothing<S: EventStore>(store: S) {
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![added(1), added(2)],
        )])
        .await
        .expect("append");
    let head = store.head().await.expect("head");
    let result = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(1)),
            vec![added(3), added(4)],
        )])
        .await;
    assert_conflict(result, "s", 2);
    assert_eq!(versions(&read(&store, "s").await), vec![1, 2]);
    assert_eq!(
        store.head().await.expect("head"),
        head,
        "nothing reached the log"
    );
}

/// `NoStream` on a stream with events is a conflict that writes nothing.
pub async fn no_stream_conflict_writes_nothing<S: EventStore>(store: S) {
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![added(1)])])
        .await
        .expect("append");
    assert_conflict(
        store
            .append(vec![write("s", ExpectedVersion::NoStream, vec![added(2)])])
            .await,
        "s",
        1,
    );
    assert_conflict(
        store
            .append(vec![write(
                "s",
                ExpectedVersion::Exact(Version::ZERO),
                vec![added(2)],
            )])
            .await,
        "s",
        1,
    );
    assert_eq!(versions(&read(&store, "s").await), vec![1]);
}

/// `StreamExists` on a missing stream is a conflict that writes nothing.
pub async fn stream_exists_conflict_writes_nothing<S: EventStore>(store: S) {
    assert_conflict(
        store
            .append(vec![write(
                "s",
                ExpectedVersion::StreamExists,
                vec![added(1)],
            )])
            .await,
        "s",
        0,
    );
    assert!(read(&store, "s").await.is_empty());
    store
        .append(vec![write("s", ExpectedVersion::NoStream, vec![added(1)])])
        .await
        .expect("append");
    store
        .append(vec![write(
            "s",
            ExpectedVersion::StreamExists,
            vec![added(2)],
        )])
        .await
        .expect("append");
    assert_eq!(versions(&read(&store, "s").await), vec![1, 2]);
}

/// `Any` appends at the end whatever the version.
pub async fn any_version_appends_at_the_end<S: EventStore>(store: S) {
    for n in 1..=3 {
        let c = store
            .append(vec![write("s", ExpectedVersion::Any, vec![added(n)])])
            .await
            .expect("append");
        assert_eq!(c.streams[0].last_version.get(), n as u64);
    }
}

/// When one stream of a multi-stream append conflicts, no stream is written.
pub async fn multi_stream_append_is_atomic<S: EventStore>(store: S) {
    store
        .append(vec![write("b", ExpectedVersion::Any, vec![added(1)])])
        .await
        .expect("append");
    let head = store.head().await.expect("head");
    let result = store
        .append(vec![
            write("a", ExpectedVersion::NoStream, vec![added(1), added(2)]),
            write("b", ExpectedVersion::NoStream, vec![added(3)]),
        ])
        .await;
    assert_conflict(result, "b", 1);
    assert!(
        read(&store, "a").await.is_empty(),
        "the other stream was not written"
    );
    assert_eq!(versions(&read(&store, "b").await), vec![1]);
    assert_eq!(store.head().await.expect("head"), head);
}

/// A multi-stream append writes every stream, numbered in request order, in one commit.
pub async fn multi_stream_append_commits_every_stream<S: EventStore>(store: S) {
    let commit = store
        .append(vec![
            write("b", ExpectedVersion::NoStream, vec![added(1), added(2)]),
            write("a", ExpectedVersion::NoStream, vec![added(3)]),
        ])
        .await
        .expect("append");
    assert_eq!(commit.streams.len(), 2);
    assert_eq!(commit.streams[0].stream.as_str(), "b");
    assert_eq!(commit.streams[1].stream.as_str(), "a");
    assert_eq!(commit.event_count(), 3);
    let log = read_all_events(&store).await;
    let order: Vec<(&str, u64)> = log
        .iter()
        .map(|e| (e.stream.as_str(), e.version.get()))
        .collect();
    assert_eq!(
        order,
        vec![("b", 1), ("b", 2), ("a", 1)],
        "log order follows the request"
    );
    assert_eq!(commit.first_position, log[0].position);
    assert_eq!(commit.position, log[2].position);
}

/// Every commit's events come after the previous commit's in the log.
pub async fn positions_increase_across_commits<S: EventStore>(store: S) {
    let mut last = Position::ZERO;
    for i in 0..20 {
        let stream = format!("s{}", i % 3);
        let c = store
            .append(vec![write(
                &stream,
                ExpectedVersion::Any,
                vec![added(i), added(i)],
            )])
            .await
            .expect("append");
        assert!(
            c.first_position > last,
            "commit {i} starts after the previous one"
        );
        assert!(c.position > c.first_position);
        last = c.position;
    }
    let log = read_all_events(&store).await;
    assert_eq!(log.len(), 40);
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(store.head().await.expect("head"), last);
}

/// Writers that append at the same exact version at the same moment: exactly one commits, the
/// others get a typed conflict naming a version the winner reached (never another error),
/// round after round.
pub async fn racing_exact_appends_commit_one_and_conflict_the_rest<S: EventStore>(store: S) {
    const WRITERS: usize = 6;
    const ROUNDS: usize = 15;
    let stream = StreamId::new("race");
    let mut at = 0u64;
    for round in 0..ROUNDS {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(WRITERS));
        let expected = if at == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(Version::new(at))
        };
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let (store, barrier, stream) = (store.clone(), barrier.clone(), stream.clone());
            // Single events and batches, so every append path races.
            let events = match (w + round) % 3 {
                0 => vec![added(w as i64)],
                _ => vec![added(w as i64), added(-(w as i64))],
            };
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store
                    .append(vec![StreamWrite::new(stream, expected, events)])
                    .await
            }));
        }
        let mut won = Vec::new();
        let mut conflicts = Vec::new();
        for task in tasks {
            match task.await.expect("writer") {
                Ok(commit) => won.push(commit),
                Err(StoreError::Conflict { actual, .. }) => conflicts.push(actual),
                Err(other) => panic!("round {round}: expected a conflict, got {other:?}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: exactly one writer commits");
        let reached = won[0].streams[0].last_version;
        assert_eq!(won[0].streams[0].first_version.get(), at + 1);
        for actual in conflicts {
            assert_eq!(
                actual, reached,
                "round {round}: a conflict reports the winner's version"
            );
        }
        at = reached.get();
    }
    let stored = read(&store, "race").await;
    assert_eq!(versions(&stored), (1..=at).collect::<Vec<_>>());
}

/// An append with no events checks nothing and writes nothing.
pub async fn an_empty_append_is_a_no_op<S: EventStore>(store: S) {
    let c = store.append(vec![]).await.expect("empty append");
    assert!(c.is_empty());
    let c = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(7)),
            vec![],
        )])
        .await
        .expect("a write with no events is a no-op, even with an unmet expectation");
    assert!(c.is_empty());
    assert_eq!(c.position, Position::ZERO);
    assert!(read(&store, "s").await.is_empty());
}
