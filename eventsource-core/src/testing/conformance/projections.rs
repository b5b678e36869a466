//! The projection runner on a store: catch-up, waiting, checkpoints and rebuilds, handler
//! errors and panics.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::projection::{ProjectionError, ProjectionRunner};
use crate::repository::Repository;
use crate::store::EventStore;
use crate::testing::fixtures::{AddedLog, BelowZero, Counter, CounterEvent};

/// A spawned projection catches up, follows live, lets a caller wait for a position (even one
/// of an event it filters out), records its checkpoint, and rebuilds from zero.
pub async fn projection_waits_checkpoints_and_rebuilds<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    for n in 1..=3 {
        repo.execute("c", |c| c.add(n)).await.expect("command");
    }
    let log = AddedLog::default();
    let seen = log.seen.clone();
    let handle = ProjectionRunner::new(store.clone(), log)
        .batch_size(2)
        .spawn();
    let wait = Duration::from_secs(10);
    let c = repo.execute("c", |c| c.add(4)).await.expect("command");
    handle
        .wait_for(c.commit.position, wait)
        .await
        .expect("caught up and live");
    let values = |seen: &parking_lot::Mutex<Vec<(String, u64, i64)>>| -> Vec<i64> {
        seen.lock().iter().map(|(_, _, n)| *n).collect()
    };
    assert_eq!(values(&seen), vec![1, 2, 3, 4]);

    let reset = repo
        .execute("c", |_| Ok::<_, BelowZero>(CounterEvent::Reset))
        .await
        .expect("reset");
    handle
        .wait_for(reset.commit.position, wait)
        .await
        .expect("an unhandled event still advances the checkpoint");
    assert_eq!(
        store
            .load_checkpoint("conformance.added-log")
            .await
            .expect("checkpoint"),
        Some(handle.checkpoint())
    );
    assert!(handle.checkpoint() >= reset.commit.position);

    handle.rebuild().await.expect("rebuild");
    handle
        .wait_for(reset.commit.position, wait)
        .await
        .expect("rebuilt");
    assert_eq!(
        values(&seen),
        vec![1, 2, 3, 4],
        "a rebuild replays from zero once"
    );
    handle.shutdown().await.expect("clean shutdown");
}

/// A handler error stops the projection with an error naming the event, and its checkpoint
/// stays before that event; a fixed projection resumes exactly there.
pub async fn projection_handler_error_stops_before_the_event<S: EventStore>(store: S) {
    let repo = Repository::<Counter, S>::new(store.clone());
    let mut commits = BTreeMap::new();
    for n in 1..=5 {
        commits.insert(n, repo.execute("c", |c| c.add(n)).await.expect("command"));
    }
    let failing = AddedLog {
        fail_on: Some(3),
        ..AddedLog::default()
    };
    let handle = ProjectionRunner::new(store.clone(), failing.clone()).spawn();
    match handle
        .wait_for(commits[&5].commit.position, Duration::from_secs(10))
        .await
    {
        Err(ProjectionError::Stopped {
            cause: Some(cause), ..
        }) => match &*cause {
            ProjectionError::Handler {
                stream,
                version,
                event_type,
                ..
            } => {
                assert_eq!(
                    (stream.as_str(), version.get(), event_type.as_str()),
                    ("counter-c", 3, "counter.added")
                );
            }
            other => panic!("expected a handler error, got {other:?}"),
        },
        other => panic!("expected the projection to stop, got {other:?}"),
    }
    assert!(matches!(
        handle.shutdown().await,
        Err(ProjectionError::Handler { .. })
    ));
    let checkpoint = store
        .load_checkpoint("conformance.added-log")
        .await
        .expect("load")
        .expect("saved");
    assert_eq!(
        checkpoint, commits[&2].commit.position,
        "the checkpoint stays before the failed event"
    );
    assert_eq!(failing.seen.lock().len(), 2);

    let fixed = AddedLog {
        seen: failing.seen.clone(),
        ..AddedLog::default()
    };
    let handle = ProjectionRunner::new(store.clone(), fixed).spawn();
    handle
        .wait_for(commits[&5].commit.position, Duration::from_secs(10))
        .await
        .expect("resumed");
    let ns: Vec<i64> = failing.seen.lock().iter().map(|(_, _, n)| *n).collect();
    assert_eq!(
        ns,
        vec![1, 2, 3, 4, 5],
        "resumed at the failed event, nothing twice"
    );
    handle.shutdown().await.expect("shutdown");
}

/// A handler that panics does not take the runner's task away unseen: the runner stops with
/// `HandlerPanicked` naming the event, in its status, in what a waiter gets and in what
/// `shutdown` returns; the checkpoint stays before the event. A `reset` that panics fails the
/// rebuild with `Reset`.
pub async fn a_panicking_handler_is_a_typed_error_in_the_status_naming_the_event<S: EventStore>(
    store: S,
) {
    let repo = Repository::<Counter, S>::new(store.clone());
    let mut last = None;
    for n in 1..=4 {
        last = Some(repo.execute("c", |c| c.add(n)).await.expect("command"));
    }
    let last = last.expect("commits").commit.position;
    let panicking = AddedLog {
        panic_on: Some(3),
        ..AddedLog::default()
    };
    let handle = ProjectionRunner::new(store.clone(), panicking.clone()).spawn();
    let waited = handle.wait_for(last, Duration::from_secs(10)).await;
    let named = |e: &ProjectionError| match e {
        ProjectionError::HandlerPanicked {
            stream,
            version,
            event_type,
            message,
            ..
        } => {
            assert_eq!(
                (stream.as_str(), version.get(), event_type.as_str()),
                ("counter-c", 3, "counter.added")
            );
            assert!(message.contains("told to panic on 3"), "{message}");
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    };
    match waited {
        Err(ProjectionError::Stopped {
            cause: Some(cause), ..
        }) => named(&cause),
        other => panic!("expected the projection to stop, got {other:?}"),
    }
    let status = handle.status();
    assert!(status.stopped);
    named(status.failed.as_deref().expect("the status says why"));
    match handle.shutdown().await {
        Err(e) => named(&e),
        Ok(()) => panic!("shutdown reports the panic"),
    }
    assert_eq!(panicking.seen.lock().len(), 2);
    let checkpoint = store
        .load_checkpoint("conformance.added-log")
        .await
        .expect("load");
    assert!(
        checkpoint.is_some_and(|c| c < last),
        "before the event: {checkpoint:?}"
    );

    let reset_panics = AddedLog {
        panic_on_reset: true,
        ..AddedLog::default()
    };
    let handle = ProjectionRunner::new(store.clone(), reset_panics).spawn();
    handle
        .wait_for(last, Duration::from_secs(10))
        .await
        .expect("caught up");
    match handle.rebuild().await {
        Err(ProjectionError::Reset { source, .. }) => {
            assert!(
                source.to_string().contains("told to panic in reset"),
                "{source}"
            );
        }
        other => panic!("expected Reset, got {other:?}"),
    }
    handle
        .shutdown()
        .await
        .expect("the runner survives a failed reset");
}
