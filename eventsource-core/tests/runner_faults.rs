//! The projection runner rides out transient faults of its store: it pauses, says so in its
//! status, and goes on from the durable checkpoint, handling every event (at least once on
//! the core's backend). What retrying cannot fix stops it, typed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Watched;
use eventsource_core::testing::fixtures::AddedLog;
use eventsource_core::{
    EventStore, Position, ProjectionError, ProjectionRunner, StoreError, subscribe,
};
use futures::StreamExt;

async fn add_events(store: &Watched, n: i64) -> Position {
    let mut last = Position::ZERO;
    for i in 1..=n {
        last = common::add(&store.inner, "counter-c", &[i]).await.position;
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_error_saving_the_checkpoint_does_not_stop_the_runner() {
    let store = Watched::default();
    let first = add_events(&store, 5).await;
    store.failing_saves.store(1, Ordering::SeqCst);
    let log = AddedLog::default();
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .batch_size(2)
        .spawn();
    handle
        .wait_for(first, Duration::from_secs(10))
        .await
        .expect("the runner rode the fault out");
    let status = handle.status();
    assert!(!status.stopped && status.failed.is_none());
    assert!(
        status.retrying.is_none(),
        "cleared once a batch went through"
    );
    let more = add_events(&store, 3).await;
    handle
        .wait_for(more, Duration::from_secs(10))
        .await
        .expect("live");
    let seen: HashSet<(u64, i64)> = log.seen.lock().iter().map(|(_, v, n)| (*v, *n)).collect();
    assert_eq!(seen.len(), 8, "every event handled (at least once)");
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_it_waits_out_a_fault_the_status_says_why_and_that_it_is_transient() {
    let store = Watched::default();
    let last = add_events(&store, 3).await;
    // Enough failed reads to see the pause (the backoff doubles from 50 ms).
    store.failing_reads.store(4, Ordering::SeqCst);
    let handle = ProjectionRunner::new(store.clone(), AddedLog::default()).spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let retrying = loop {
        if let Some(e) = handle.status().retrying {
            break e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the status says it retries"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(retrying.is_transient(), "{retrying:?}");
    assert!(matches!(
        &*retrying,
        ProjectionError::Store {
            source: StoreError::Backend {
                retryable: true,
                ..
            },
            ..
        }
    ));
    handle
        .wait_for(last, Duration::from_secs(10))
        .await
        .expect("resumed");
    assert!(handle.status().retrying.is_none());
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_rides_out_transient_faults_too() {
    let store = Watched::default();
    let last = add_events(&store, 6).await;
    store.failing_reads.store(2, Ordering::SeqCst);
    store.failing_saves.store(2, Ordering::SeqCst);
    let log = AddedLog::default();
    let mut runner = ProjectionRunner::new(store.clone(), log.clone()).batch_size(2);
    assert_eq!(runner.catch_up().await.expect("caught up"), last);
    let seen: HashSet<u64> = log.seen.lock().iter().map(|(_, v, _)| *v).collect();
    assert_eq!(seen.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_rides_out_transient_faults_and_yields_each_event_once() {
    let store = Watched::default();
    add_events(&store, 4).await;
    let mut sub = subscribe(store.clone(), Position::ZERO, 2);
    let mut versions = Vec::new();
    for round in 0..3 {
        store.failing_reads.store(2, Ordering::SeqCst);
        if round > 0 {
            add_events(&store, 2).await;
        }
        while versions.len() < 4 + round * 2 {
            let e = tokio::time::timeout(Duration::from_secs(10), sub.next())
                .await
                .expect("the subscription goes on")
                .expect("never ends")
                .expect("a transient fault is not an error");
            versions.push(e.version.get());
        }
    }
    assert_eq!(
        versions,
        (1..=8).collect::<Vec<u64>>(),
        "in order, nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_write_that_fails_stops_the_runner_before_the_checkpoint_passes_the_event() {
    use eventsource_core::projection::{FailurePolicy, OnFailure};
    use eventsource_core::store::DeadLetterQuery;
    let store = Watched::default();
    let before = common::add(&store.inner, "counter-c", &[1]).await.position;
    let poison = common::add(&store.inner, "counter-c", &[2]).await.position;
    common::add(&store.inner, "counter-c", &[3]).await;
    store.failing_letters.store(true, Ordering::SeqCst);
    let log = AddedLog::default();
    log.poisoned.lock().insert(2);
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .on_failure(FailurePolicy::default().live(OnFailure::Skip))
        .spawn();
    let stopped = async {
        while !handle.status().stopped {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the runner stops");
    let ended = handle.shutdown().await;
    assert!(
        matches!(&ended, Err(ProjectionError::Store { source, .. }) if !source.is_retryable()),
        "{ended:?}"
    );
    let saved = store
        .inner
        .load_checkpoint("conformance.added-log")
        .await
        .unwrap();
    assert!(
        saved.is_some_and(|c| c >= before && c < poison),
        "{saved:?}"
    );
    let seen: Vec<i64> = log.seen.lock().iter().map(|(_, _, n)| *n).collect();
    assert_eq!(
        seen,
        vec![1],
        "nothing after the event that could not be dead-lettered"
    );
    assert!(
        store
            .inner
            .dead_letters("conformance.added-log", &DeadLetterQuery::all())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_that_empties_the_read_model_but_cannot_save_the_checkpoint_at_zero_stops() {
    let store = Watched::default();
    let last = add_events(&store, 4).await;
    let log = AddedLog::default();
    let handle = ProjectionRunner::new(store.clone(), log.clone()).spawn();
    handle
        .wait_for(last, Duration::from_secs(10))
        .await
        .expect("caught up");
    // On this backend the reset and the checkpoint at zero are two writes: the second fails.
    store.failing_saves.store(1, Ordering::SeqCst);
    let rebuilt = handle.rebuild().await;
    assert!(rebuilt.is_err(), "{rebuilt:?}");
    let ended = tokio::time::timeout(Duration::from_secs(10), handle.shutdown())
        .await
        .expect("stopped");
    assert!(
        ended.is_err(),
        "the runner stops rather than go on from the old checkpoint"
    );
    assert!(log.seen.lock().is_empty(), "the read model was emptied");
    // A runner started again rebuilds from where it is durable: nothing is left out.
    let mut again = ProjectionRunner::new(store.clone(), log.clone());
    again.rebuild().await.expect("rebuilt");
    assert_eq!(log.seen.lock().len(), 4);
}
