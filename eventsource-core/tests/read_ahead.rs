//! The projection runner reads the next page while it handles a full one and saves its
//! checkpoint, and that read-ahead never skips, repeats or reorders an event, also when a
//! handler fails in the middle of a catch-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Call, Watched};
use eventsource_core::testing::fixtures::AddedLog;
use eventsource_core::{EventStore, Position, Projection, ProjectionError, ProjectionRunner};

/// Appends `Added(1..=n)` to one stream, an event per commit; returns their positions.
async fn fill(store: &Watched, n: i64) -> Vec<Position> {
    let mut positions = Vec::new();
    for i in 1..=n {
        positions.push(common::add(&store.inner, "c", &[i]).await.position);
    }
    positions
}

fn values(log: &AddedLog) -> Vec<i64> {
    log.seen.lock().iter().map(|(_, _, n)| *n).collect()
}

#[tokio::test]
async fn the_next_page_is_read_while_a_full_page_is_handled_and_checkpointed() {
    let store = Watched::default();
    let positions = fill(&store, 10).await;
    let log = AddedLog::default();
    let mut runner = ProjectionRunner::new(store.clone(), log.clone()).batch_size(3);
    let reached = runner.catch_up().await.unwrap();
    assert_eq!(reached, positions[9]);
    assert_eq!(
        values(&log),
        (1..=10).collect::<Vec<_>>(),
        "each event once"
    );

    let calls = store.calls();
    let at = |call: Call| {
        calls
            .iter()
            .position(|c| *c == call)
            .unwrap_or_else(|| panic!("{call:?} not in {calls:?}"))
    };
    // Pages [1,2,3], [4,5,6], [7,8,9] are full: the page after each is read before its
    // checkpoint save has returned. [10] is not full: the end of the log is read after it.
    for end in [positions[2], positions[5], positions[8]] {
        assert!(
            at(Call::Read(end)) < at(Call::SaveEnd(end)),
            "the page after {end} was not read ahead: {calls:?}"
        );
    }
    assert!(
        at(Call::SaveEnd(positions[9])) < at(Call::Read(positions[9])),
        "a page that is not full is the end of the log: no read-ahead ({calls:?})"
    );
    let reads = calls.iter().filter(|c| matches!(c, Call::Read(_))).count();
    assert_eq!(reads, 5, "one read per page and one at the end: {calls:?}");
}

#[tokio::test]
async fn a_handler_failing_mid_catch_up_drops_the_page_read_ahead_and_resumes_exactly() {
    let store = Watched::default();
    let positions = fill(&store, 10).await;
    let failing = AddedLog {
        fail_on: Some(5),
        ..AddedLog::default()
    };
    let mut runner = ProjectionRunner::new(store.clone(), failing.clone()).batch_size(3);
    match runner.catch_up().await {
        Err(ProjectionError::Handler { version, .. }) => assert_eq!(version.get(), 5),
        other => panic!("expected a handler error, got {other:?}"),
    }
    assert_eq!(values(&failing), [1, 2, 3, 4]);
    assert!(
        store.calls().contains(&Call::Read(positions[5])),
        "the page after the failing one was read ahead"
    );
    assert_eq!(
        store.load_checkpoint(AddedLog::NAME).await.unwrap(),
        Some(positions[3]),
        "the checkpoint stops just before the failed event"
    );

    let fixed = AddedLog::default();
    let mut runner = ProjectionRunner::new(store.clone(), fixed.clone()).batch_size(3);
    assert_eq!(runner.catch_up().await.unwrap(), positions[9]);
    assert_eq!(values(&fixed), (5..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_spawned_runner_reads_ahead_while_catching_up_then_follows_live() {
    let store = Watched::default();
    let positions = fill(&store, 7).await;
    let log = AddedLog::default();
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .batch_size(3)
        .spawn();
    let wait = std::time::Duration::from_secs(10);
    handle.wait_for(positions[6], wait).await.unwrap();
    let more = fill(&store, 2).await;
    handle.wait_for(more[1], wait).await.unwrap();
    handle.shutdown().await.unwrap();
    assert_eq!(
        values(&log),
        [1, 2, 3, 4, 5, 6, 7, 1, 2],
        "each event once, in order"
    );
    let calls = store.calls();
    let at = |call: Call| calls.iter().position(|c| *c == call).unwrap();
    for end in [positions[2], positions[5]] {
        assert!(
            at(Call::Read(end)) < at(Call::SaveEnd(end)),
            "the page after {end} was not read ahead: {calls:?}"
        );
    }
}
