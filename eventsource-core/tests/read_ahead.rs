//! The projection runner reads the next pages (`LogFeed`: one stream of pages, on a task of
//! its own) while it handles a full one and saves its checkpoint, and that read-ahead never
//! skips, repeats or reorders an event, also when a handler fails in the middle of a
//! catch-up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Call, Watched};
use eventsource_core::testing::fixtures::AddedLog;
use std::time::Duration;

use eventsource_core::{
    EventStore, HandlerError, Position, Projection, ProjectionError, ProjectionRunner,
    RecordedEvent,
};

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

/// Fails on the event at `fail_at`, once the store has seen the read after `read_started`
/// begin (so the failure comes while that read is under way).
struct FailsWhileReading {
    store: Watched,
    fail_at: Position,
    read_started: Position,
}

impl Projection for FailsWhileReading {
    const NAME: &'static str = "test.fails-while-reading";
    type Context = ();

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        if event.position != self.fail_at {
            return Ok(());
        }
        let started = Call::Read(self.read_started);
        for _ in 0..2000 {
            if self.store.calls().contains(&started) {
                return Err("failed while the next page was read".into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err("the next page was never read ahead".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_batch_does_not_wait_for_the_page_read_ahead_and_stops_that_read() {
    let store = Watched::default();
    let positions = fill(&store, 10).await;
    // The read of the page after [1,2,3] never returns by itself.
    *store.stall_read_after.lock() = Some(positions[2]);
    let failing = FailsWhileReading {
        store: store.clone(),
        fail_at: positions[1],
        read_started: positions[2],
    };
    let mut runner = ProjectionRunner::new(store.clone(), failing).batch_size(3);
    let wait = Duration::from_secs(20);
    match tokio::time::timeout(wait, runner.catch_up()).await {
        Ok(Err(ProjectionError::Handler {
            version, source, ..
        })) => {
            assert_eq!(version.get(), 2);
            assert_eq!(source.to_string(), "failed while the next page was read");
        }
        Ok(other) => panic!("expected a handler error, got {other:?}"),
        Err(_) => panic!("the failed catch-up waited for the page read ahead"),
    }
    let stopped = async {
        while !store.calls().contains(&Call::ReadDropped(positions[2])) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(wait, stopped)
        .await
        .expect("the read ahead was never stopped");
    assert_eq!(
        store
            .load_checkpoint(FailsWhileReading::NAME)
            .await
            .unwrap(),
        Some(positions[0]),
        "the checkpoint stops just before the failed event"
    );
}

#[tokio::test]
async fn a_spawned_runner_reads_ahead_while_catching_up_then_follows_live() {
    let store = Watched::default();
    let positions = fill(&store, 7).await;
    let log = AddedLog::default();
    let handle = ProjectionRunner::new(store.clone(), log.clone())
        .batch_size(3)
        .spawn();
    let wait = Duration::from_secs(10);
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

#[test]
fn outside_a_tokio_runtime_the_pages_are_read_on_the_runners_own_task() {
    let store = Watched::default();
    let positions = futures::executor::block_on(fill(&store, 10));
    let log = AddedLog::default();
    let mut runner = ProjectionRunner::new(store.clone(), log.clone()).batch_size(3);
    let reached = futures::executor::block_on(runner.catch_up()).unwrap();
    assert_eq!(reached, positions[9]);
    assert_eq!(
        values(&log),
        (1..=10).collect::<Vec<_>>(),
        "each event once"
    );
    assert!(
        store.calls().contains(&Call::Read(positions[2])),
        "the page after a full one was read"
    );
}
