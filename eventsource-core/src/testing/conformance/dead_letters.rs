//! Failure policies and dead letters: a poison event parks its stream (or is skipped) while
//! the rest of the log flows, its letters are durable, listed, retried in stream order and
//! discarded with a record; rebuilds fail fast; transient errors are tried again; instances
//! of one projection keep their own checkpoints and letters.

use std::time::Duration;

use crate::envelope::{Commit, StreamWrite};
use crate::error::StoreError;
use crate::ids::{ExpectedVersion, Position, StreamId};
use crate::projection::{
    DeadLetterSelect, FailurePolicy, OnFailure, ProjectionError, ProjectionRunner,
};
use crate::store::{DeadLetterQuery, DeadLetterReason, EventStore, ResolutionKind};
use crate::testing::fixtures::AddedLog;

use super::support::{added, write};

const WAIT: Duration = Duration::from_secs(20);

/// Appends `Added(n)` for each of `ns` to `stream`, one commit.
async fn add<S: EventStore>(store: &S, stream: &str, ns: &[i64]) -> Commit {
    let events = ns.iter().copied().map(added).collect();
    store
        .append(vec![write(stream, ExpectedVersion::Any, events)])
        .await
        .expect("append")
}

/// The amounts the projection saw for `stream`, in the order it saw them.
fn seen_of(log: &AddedLog, stream: &str) -> Vec<i64> {
    log.seen
        .lock()
        .iter()
        .filter(|(s, _, _)| s == stream)
        .map(|(_, _, n)| *n)
        .collect()
}

/// A poison event in live mode, with 4 writers going on: under the park policy its stream's
/// later events wait as dead letters in order while every other stream flows; `wait_for`
/// says which positions were passed by; after the fix, a retry hands the stream's letters
/// to the handler in stream order, the stream goes on live, and no letter is left pending.
pub async fn a_poison_event_parks_its_stream_while_others_flow_and_a_retry_replays_it_in_order<
    S: EventStore,
>(
    store: S,
) {
    let log = AddedLog::default();
    log.poisoned.lock().insert(666);
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .batch_size(7)
        .on_failure(FailurePolicy::default().live(OnFailure::ParkStream))
        .spawn();
    let before = add(&store, "p", &[1, 2]).await;
    handle.wait_for(before.position, WAIT).await.expect("live");

    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 1..=25 {
                    add(&store, &format!("w{w}"), &[n]).await;
                }
            })
        })
        .collect();
    let poison = add(&store, "p", &[666]).await;
    let after_poison = add(&store, "p", &[3, 4]).await;
    let mut last = after_poison.position;
    for writer in writers {
        writer.await.expect("writer");
    }
    last = last.max(store.head().await.expect("head"));

    let reached = handle
        .wait_for(last, WAIT)
        .await
        .expect("passed the poison");
    for w in 0..4 {
        assert_eq!(
            seen_of(&log, &format!("w{w}")),
            (1..=25).collect::<Vec<_>>(),
            "every other stream flows, in order"
        );
    }
    assert_eq!(
        seen_of(&log, "p"),
        vec![1, 2],
        "the parked stream's later events wait"
    );
    let parked: Vec<Position> = vec![after_poison.first_position, after_poison.position];
    assert!(!reached.reflects(poison.position));
    assert!(parked.iter().all(|p| !reached.reflects(*p)));
    assert!(reached.reflects(before.position));
    assert_eq!(
        reached.dead_lettered,
        [vec![poison.position], parked.clone()].concat()
    );

    let letters = store
        .dead_letters("conformance.added-log", &DeadLetterQuery::pending())
        .await
        .expect("letters");
    let listed: Vec<(Position, DeadLetterReason)> = letters
        .iter()
        .map(|l| (l.event.position, l.reason))
        .collect();
    assert_eq!(
        listed,
        vec![
            (poison.position, DeadLetterReason::Failed),
            (parked[0], DeadLetterReason::Parked),
            (parked[1], DeadLetterReason::Parked),
        ],
        "letters in stream order: the failure, then what waits behind it"
    );
    assert!(
        letters[0].error.contains("666 is poison"),
        "{}",
        letters[0].error
    );
    assert!(letters.iter().all(|l| l.attempts == 1 && l.is_pending()));
    assert_eq!(letters[0].event.stream, StreamId::new("p"));

    // A retry before the fix fails again: one more attempt, the stream still parked.
    let again = handle
        .retry_dead_letters(DeadLetterSelect::Stream(StreamId::new("p")))
        .await
        .expect("retry");
    assert!(again.handled.is_empty());
    assert_eq!(again.failed, vec![letters[0].event.id]);
    let first = &store
        .dead_letters("conformance.added-log", &DeadLetterQuery::pending())
        .await
        .expect("letters")[0];
    assert_eq!(first.attempts, 2);
    assert!(first.last_failed_at >= first.first_failed_at);

    // The fix, then the retry: in stream order, and the stream goes on live.
    log.poisoned.lock().clear();
    let retried = handle
        .retry_dead_letters(DeadLetterSelect::All)
        .await
        .expect("retry");
    assert_eq!(retried.handled.len(), 3);
    assert!(retried.failed.is_empty());
    assert_eq!(seen_of(&log, "p"), vec![1, 2, 666, 3, 4]);
    let later = add(&store, "p", &[5]).await;
    let reached = handle.wait_for(later.position, WAIT).await.expect("live");
    assert!(reached.is_complete(), "{reached:?}");
    assert_eq!(seen_of(&log, "p"), vec![1, 2, 666, 3, 4, 5]);
    assert!(
        store
            .dead_letters("conformance.added-log", &DeadLetterQuery::pending())
            .await
            .expect("letters")
            .is_empty()
    );
    let all = store
        .dead_letters("conformance.added-log", &DeadLetterQuery::all())
        .await
        .expect("letters");
    assert_eq!(all.len(), 3, "resolved letters are kept");
    assert!(all.iter().all(|l| {
        l.resolution
            .is_some_and(|r| r.kind == ResolutionKind::Retried)
    }));
    handle.shutdown().await.expect("shutdown");
}

/// Under the skip policy a poison event becomes a dead letter and its stream's later events
/// are handled; a discard resolves it with a record, and a runner started later finds the
/// letters where the first left them.
pub async fn a_skipped_event_is_a_durable_letter_and_a_discard_is_recorded<S: EventStore>(
    store: S,
) {
    let log = AddedLog::default();
    log.poisoned.lock().insert(13);
    add(&store, "s", &[1, 13, 2]).await;
    let policy = FailurePolicy::default().live(OnFailure::Skip);
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .on_failure(policy)
        .spawn();
    let last = add(&store, "s", &[3]).await;
    let reached = handle.wait_for(last.position, WAIT).await.expect("passed");
    assert_eq!(seen_of(&log, "s"), vec![1, 2, 3]);
    assert_eq!(reached.dead_lettered.len(), 1);
    handle.shutdown().await.expect("shutdown");

    // Another runner: the letter is still there, and still counted.
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .on_failure(policy)
        .spawn();
    let reached = handle.wait_for(last.position, WAIT).await.expect("passed");
    assert_eq!(
        reached.dead_lettered.len(),
        1,
        "the letter survives a restart"
    );
    assert_eq!(
        handle
            .discard_dead_letters(DeadLetterSelect::All)
            .await
            .expect("discard"),
        1
    );
    let reached = handle.wait_for(last.position, WAIT).await.expect("passed");
    assert!(reached.is_complete());
    assert!(handle.status().dead_letters.is_empty());
    let all = store
        .dead_letters("conformance.added-log", &DeadLetterQuery::all())
        .await
        .expect("letters");
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].resolution.map(|r| r.kind),
        Some(ResolutionKind::Discarded)
    );
    assert_eq!(
        seen_of(&log, "s"),
        vec![1, 2, 3],
        "a discard handles nothing"
    );
    handle.shutdown().await.expect("shutdown");
}

/// A rebuild keeps its own default (stop): it fails fast on a poison event, naming it, and
/// never hangs, even when the live policy skips.
pub async fn a_rebuild_fails_fast_on_a_poison_event_and_names_it<S: EventStore>(store: S) {
    let log = AddedLog::default();
    add(&store, "r", &[1, 2]).await;
    let poison = add(&store, "r", &[99]).await;
    add(&store, "r", &[3]).await;
    log.poisoned.lock().insert(99);
    let mut runner = ProjectionRunner::new(store.clone(), log.clone())
        .on_failure(FailurePolicy::default().live(OnFailure::Skip));
    let rebuilt = tokio::time::timeout(WAIT, runner.rebuild())
        .await
        .expect("a rebuild never hangs on a poison event");
    match rebuilt {
        Err(ProjectionError::Handler {
            position, version, ..
        }) => {
            assert_eq!(position, poison.position);
            assert_eq!(version.get(), 3);
        }
        other => panic!("expected the poison event named, got {other:?}"),
    }
    assert_eq!(seen_of(&log, "r"), vec![1, 2]);
    assert!(
        store
            .dead_letters("conformance.added-log", &DeadLetterQuery::all())
            .await
            .expect("letters")
            .is_empty()
    );
}

/// An error its handler marks transient is tried again with backoff and, once it goes
/// through, leaves no trace; one that keeps failing goes to the policy after the attempts.
pub async fn transient_errors_are_tried_again_then_go_to_the_policy<S: EventStore>(store: S) {
    let log = AddedLog::default();
    log.transient_failures
        .store(2, std::sync::atomic::Ordering::SeqCst);
    add(&store, "t", &[1, 2]).await;
    let policy = FailurePolicy::default()
        .live(OnFailure::Skip)
        .transient_attempts(3);
    let mut runner = ProjectionRunner::new(store.clone(), log.clone()).on_failure(policy);
    runner.catch_up().await.expect("caught up");
    assert_eq!(
        seen_of(&log, "t"),
        vec![1, 2],
        "handled once, after two tries"
    );
    assert!(
        store
            .dead_letters("conformance.added-log", &DeadLetterQuery::all())
            .await
            .expect("letters")
            .is_empty()
    );

    log.transient_failures
        .store(100, std::sync::atomic::Ordering::SeqCst);
    let stuck = add(&store, "t", &[3]).await;
    add(&store, "t", &[4]).await;
    log.transient_failures
        .store(3, std::sync::atomic::Ordering::SeqCst);
    runner.catch_up().await.expect("caught up");
    let letters = store
        .dead_letters("conformance.added-log", &DeadLetterQuery::pending())
        .await
        .expect("letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event.position, stuck.position);
    assert!(
        letters[0].error.contains("transient"),
        "{}",
        letters[0].error
    );
    assert_eq!(seen_of(&log, "t"), vec![1, 2, 4]);
}

/// One projection type runs as several instances, each under a name set at run time with a
/// filter of its own: each keeps its own checkpoint and dead letters. A name outside the
/// store's limits is refused.
pub async fn instances_named_at_run_time_keep_their_own_checkpoints_and_letters<S: EventStore>(
    store: S,
) {
    add(&store, "tenant-a.1", &[1, 7]).await;
    add(&store, "tenant-b.1", &[2, 7]).await;
    let policy = FailurePolicy::default().live(OnFailure::Skip);
    let mut instances = Vec::new();
    for tenant in ["a", "b"] {
        let log = AddedLog::default();
        if tenant == "b" {
            log.poisoned.lock().insert(7);
        }
        let prefix = format!("tenant-{tenant}.");
        let runner = ProjectionRunner::new(store.clone(), log.clone())
            .named(&format!("added-log/{tenant}"))
            .expect("a name within the limits")
            .filter(move |e| e.stream.as_str().starts_with(&prefix))
            .on_failure(policy);
        assert_eq!(runner.name(), format!("added-log/{tenant}"));
        instances.push((tenant, log, runner));
    }
    for (tenant, log, runner) in &mut instances {
        let reached = runner.catch_up().await.expect("caught up");
        assert_eq!(
            store
                .load_checkpoint(&format!("added-log/{tenant}"))
                .await
                .expect("checkpoint"),
            Some(reached)
        );
        let stream = format!("tenant-{tenant}.1");
        let expected = if *tenant == "a" { vec![1, 7] } else { vec![2] };
        assert_eq!(seen_of(log, &stream), expected);
    }
    assert!(
        store
            .dead_letters("added-log/a", &DeadLetterQuery::all())
            .await
            .expect("letters")
            .is_empty()
    );
    assert_eq!(
        store
            .dead_letters("added-log/b", &DeadLetterQuery::all())
            .await
            .expect("letters")
            .len(),
        1
    );
    assert_eq!(
        store
            .load_checkpoint("conformance.added-log")
            .await
            .expect("checkpoint"),
        None,
        "the type's own name is untouched"
    );
    for bad in [String::new(), "nul\0name".to_owned(), "x".repeat(3000)] {
        assert!(matches!(
            ProjectionRunner::new(store.clone(), AddedLog::default()).named(&bad),
            Err(StoreError::InvalidRequest(_))
        ));
    }
}

/// An event that cannot be decoded (a corrupt payload of a listed type) goes through the
/// same policy as a handler's error: under skip it is a dead letter naming why, and the
/// stream's next event is handled.
pub async fn an_undecodable_event_goes_through_the_failure_policy<S: EventStore>(store: S) {
    use crate::envelope::NewEvent;
    add(&store, "u", &[1]).await;
    let corrupt = store
        .append(vec![StreamWrite::new(
            "u",
            ExpectedVersion::Any,
            vec![NewEvent::new("counter.added", 1, &b"{not json"[..])],
        )])
        .await
        .expect("append");
    add(&store, "u", &[2]).await;
    let log = AddedLog::default();
    let mut runner = ProjectionRunner::new(store.clone(), log.clone())
        .on_failure(FailurePolicy::default().live(OnFailure::Skip));
    runner.catch_up().await.expect("caught up");
    assert_eq!(seen_of(&log, "u"), vec![1, 2]);
    let letters = store
        .dead_letters("conformance.added-log", &DeadLetterQuery::pending())
        .await
        .expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.position, corrupt.position);
    assert_eq!(letters[0].event.payload.as_ref(), b"{not json");
    assert_eq!(letters[0].reason, DeadLetterReason::Failed);
}

/// A letter deep in a parked stream (behind more letters than one read of them takes) is
/// found by its event id: discarded alone, or retried with the letters before it.
pub async fn one_letter_deep_in_a_parked_stream_is_found_by_its_event<S: EventStore>(store: S) {
    let log = AddedLog::default();
    log.poisoned.lock().insert(0);
    let ns: Vec<i64> = (0..300).collect();
    let commit = add(&store, "deep", &ns).await;
    let mut runner = ProjectionRunner::new(store.clone(), log.clone())
        .batch_size(100)
        .on_failure(FailurePolicy::default().live(OnFailure::ParkStream));
    runner.catch_up().await.expect("caught up");
    let handle = runner.spawn();
    handle
        .wait_for(commit.position, WAIT)
        .await
        .expect("passed");
    let mut letters = Vec::new();
    let mut query = DeadLetterQuery::pending().limit(100);
    loop {
        let page = store
            .dead_letters("conformance.added-log", &query)
            .await
            .expect("letters");
        let Some(last) = page.last() else { break };
        query = query.after(last.event.position);
        letters.extend(page);
    }
    assert_eq!(letters.len(), 300);
    let deep = letters[280].event.id;
    assert_eq!(
        handle
            .discard_dead_letters(DeadLetterSelect::Event(deep))
            .await
            .expect("discard"),
        1,
        "the letter behind 280 others is found"
    );
    log.poisoned.lock().clear();
    let target = letters[290].event.id;
    let retried = handle
        .retry_dead_letters(DeadLetterSelect::Event(target))
        .await
        .expect("retry");
    assert_eq!(
        retried.handled.len(),
        290,
        "the letters up to it, the discarded one aside"
    );
    let seen = seen_of(&log, "deep");
    let expected: Vec<i64> = (0..=290).filter(|n| *n != 280).collect();
    assert_eq!(seen, expected, "in stream order");
    assert_eq!(handle.status().dead_letters.len(), 9);
    handle.shutdown().await.expect("shutdown");
}
