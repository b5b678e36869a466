//! The writers' lock: exclusion, the order it is granted in, release on drop.

use std::time::Duration;

use super::support::{added, read, write};
use crate::error::StoreError;
use crate::ids::{ExpectedVersion, StreamId, Version};
use crate::store::EventStore;

/// While a writers' lock is held, every other append to its streams (exact, any version,
/// several streams) fails with `StreamLocked` and writes nothing; other streams are not
/// affected; the lock's own appends go through; once released, others write again.
pub async fn the_writers_lock_excludes_every_other_appender_until_released<S: EventStore>(
    store: S,
) {
    let (a, b) = (StreamId::new("a"), StreamId::new("b"));
    store
        .append(vec![write("a", ExpectedVersion::NoStream, vec![added(1)])])
        .await
        .expect("seed");
    let mut lock = store
        .lock_streams(&[b.clone(), a.clone(), a.clone()])
        .await
        .expect("lock");
    assert_eq!(lock.streams(), &[a.clone(), b.clone()], "sorted, once each");
    let locked_out = [
        vec![write(
            "a",
            ExpectedVersion::Exact(Version::new(1)),
            vec![added(2)],
        )],
        vec![write("a", ExpectedVersion::Any, vec![added(2)])],
        vec![write(
            "b",
            ExpectedVersion::NoStream,
            vec![added(2), added(3)],
        )],
        vec![
            write("c", ExpectedVersion::Any, vec![added(2)]),
            write("b", ExpectedVersion::Any, vec![added(2)]),
        ],
    ];
    for writes in locked_out {
        match store.append(writes.clone()).await {
            Err(StoreError::StreamLocked { stream }) => {
                assert!(
                    stream == a || stream == b,
                    "names a locked stream: {stream}"
                );
            }
            other => panic!("expected StreamLocked for {writes:?}, got {other:?}"),
        }
    }
    assert_eq!(read(&store, "a").await.len(), 1, "nothing written to a");
    assert!(read(&store, "b").await.is_empty(), "nothing written to b");
    assert!(read(&store, "c").await.is_empty(), "nothing written to c");
    store
        .append(vec![write("c", ExpectedVersion::NoStream, vec![added(9)])])
        .await
        .expect("another stream is not locked");
    let commit = lock
        .append(vec![
            write("a", ExpectedVersion::Exact(Version::new(1)), vec![added(2)]),
            write("b", ExpectedVersion::NoStream, vec![added(3)]),
        ])
        .await
        .expect("the lock's own append");
    assert_eq!(commit.streams.len(), 2);
    match lock
        .append(vec![write(
            "a",
            ExpectedVersion::Exact(Version::new(1)),
            vec![added(4)],
        )])
        .await
    {
        Err(StoreError::Conflict { actual, .. }) => assert_eq!(actual, Version::new(2)),
        other => panic!("the lock's appends still check versions: {other:?}"),
    }
    lock.release().await.expect("release");
    store
        .append(vec![write(
            "a",
            ExpectedVersion::Exact(Version::new(2)),
            vec![added(5)],
        )])
        .await
        .expect("released: others write again");
    assert_eq!(read(&store, "a").await.len(), 3);
}

/// Lockers of one stream get the lock in the order they asked for it, each waiting until the
/// one before released it.
pub async fn writers_locks_are_granted_in_the_order_asked<S: EventStore>(store: S) {
    let stream = StreamId::new("queue");
    let first = store
        .lock_streams(std::slice::from_ref(&stream))
        .await
        .expect("first");
    let order = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    for i in 0..4 {
        let (store, stream, order) = (store.clone(), stream.clone(), order.clone());
        waiters.push(tokio::spawn(async move {
            let lock = store
                .lock_streams(std::slice::from_ref(&stream))
                .await
                .expect("lock");
            order.lock().push(i);
            lock.release().await.expect("release");
        }));
        // Each waiter queues before the next one asks.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(order.lock().is_empty(), "nobody gets a held lock");
    first.release().await.expect("release");
    for w in waiters {
        tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("every waiter is served")
            .expect("waiter");
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3]);
}

/// A writers' lock dropped without `release` (a command given up, a panic) is released too.
pub async fn a_dropped_writers_lock_is_released<S: EventStore>(store: S) {
    let stream = StreamId::new("dropped");
    let lock = store
        .lock_streams(std::slice::from_ref(&stream))
        .await
        .expect("lock");
    drop(lock);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match store
            .append(vec![write(
                "dropped",
                ExpectedVersion::NoStream,
                vec![added(1)],
            )])
            .await
        {
            Ok(_) => break,
            Err(StoreError::StreamLocked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!("the dropped lock is released: {other:?}"),
        }
    }
    let again = tokio::time::timeout(
        Duration::from_secs(10),
        store.lock_streams(std::slice::from_ref(&stream)),
    )
    .await
    .expect("the lock can be taken again")
    .expect("lock");
    again.release().await.expect("release");
}

/// An append repeated with the same events (a retry after a lost answer) gets its first
/// commit even while another holds the writers' lock of its streams: told "locked", a
/// repository would catch up, decide again and commit the command a second time.
pub async fn a_repeated_append_gets_its_first_commit_while_its_stream_is_locked<S: EventStore>(
    store: S,
) {
    let appends = [
        vec![write("r1", ExpectedVersion::NoStream, vec![added(1)])],
        vec![write("r2", ExpectedVersion::Any, vec![added(1), added(2)])],
        vec![
            write("r3", ExpectedVersion::NoStream, vec![added(1)]),
            write("r4", ExpectedVersion::NoStream, vec![added(2), added(3)]),
        ],
    ];
    for writes in appends {
        let first = store.append(writes.clone()).await.expect("first append");
        let streams: Vec<StreamId> = writes.iter().map(|w| w.stream.clone()).collect();
        let lock = store.lock_streams(&streams).await.expect("lock");
        let again = store.append(writes.clone()).await;
        assert_eq!(
            again.as_ref().ok(),
            Some(&first),
            "a repeat of {streams:?} while locked: {again:?}"
        );
        lock.release().await.expect("release");
        for w in &writes {
            assert_eq!(
                read(&store, w.stream.as_str()).await.len(),
                w.events.len(),
                "written once: {}",
                w.stream
            );
        }
    }
}
