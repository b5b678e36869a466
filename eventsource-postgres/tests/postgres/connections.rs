//! The connections the store keeps between its operations, and the per-stream lock's.

use std::time::Duration;

use eventsource_core::{EventStore, ExpectedVersion, ReadUntil, StreamId, Version};
use futures::TryStreamExt;

use crate::common::{self, event, write};

/// The store keeps the connections its statements finished on, but only for a moment: code
/// sharing its pool gets every connection back, without waiting out the pool's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_the_store_keeps_go_back_to_a_shared_pool() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::builder()
        .max_connections(2)
        .reuse_connections(2)
        .listen(false)
        .connect(&common::database_url())
        .await
        .unwrap();
    // Two tasks at once, so both of the pool's connections are used and then kept.
    let mut tasks = Vec::new();
    for t in 0..2u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("s{t}");
            for i in 0..20u64 {
                store
                    .append(vec![write(
                        &stream,
                        ExpectedVersion::Exact(Version::new(i)),
                        vec![event(i)],
                    )])
                    .await
                    .unwrap();
                let read: Vec<_> = store
                    .read_stream(
                        &StreamId::new(stream.as_str()),
                        Version::FIRST,
                        ReadUntil::End,
                    )
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(read.len() as u64, i + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(store.pool().size(), 2, "both connections were used");
    // The pool's own timeout is 10 s; the store hands its connections back within 50 ms.
    let both = tokio::time::timeout(Duration::from_secs(2), async {
        let a = store.pool().acquire().await.unwrap();
        let b = store.pool().acquire().await.unwrap();
        (a, b)
    })
    .await
    .expect("the store handed its kept connections back to the pool");
    drop(both);
    // And the store works on, through the pool's connections again.
    assert_eq!(
        store.stream_version(&StreamId::new("s1")).await.unwrap(),
        Version::new(20)
    );
}

/// A `lock_stream` given up while it waits (a timeout) must not leave its connection to take
/// the lock once granted and keep it: another process would then wait forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_given_up_while_waiting_is_never_taken_and_kept() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    let other = common::same_schema(&store, &common::database_url()).await;
    let stream = StreamId::new("hot");
    for _ in 0..3 {
        let held = store.lock_stream(&stream).await.unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(200), store.lock_stream(&stream));
        assert!(waiting.await.is_err(), "the lock is held: the second waits");
        held.release().await.unwrap();
        // Another process takes the lock: the waiter given up must not have it.
        let taken = tokio::time::timeout(Duration::from_secs(5), other.lock_stream(&stream))
            .await
            .expect("the lock a waiter gave up on is free")
            .unwrap();
        taken.release().await.unwrap();
    }
    // The store works on.
    let lock = store.lock_stream(&stream).await.unwrap();
    store
        .append(vec![write(
            "hot",
            ExpectedVersion::NoStream,
            vec![event(1)],
        )])
        .await
        .unwrap();
    lock.release().await.unwrap();
}
