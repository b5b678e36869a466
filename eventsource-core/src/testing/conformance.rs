//! The store conformance suite: every invariant of [`crate::store`] as a public async test
//! function that any store runs from its own tests. The in-memory store and PostgreSQL run the
//! same functions, unchanged.
//!
//! Each function takes a fresh, empty store and panics (through `assert!`) when the store breaks
//! the contract. Run them all with [`conformance_tests!`](crate::conformance_tests), which
//! expands to one `#[tokio::test]` per case:
//!
//! ```ignore
//! mod conformance {
//!     eventsource_core::conformance_tests!(|| async { eventsource_core::InMemoryStore::new() });
//! }
//! ```
//!
//! The factory is called once per test and must return a store that shares nothing with the
//! stores of other tests (for PostgreSQL: a fresh schema).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};

use super::fixtures::{AddedLog, BelowZero, Counter, CounterEvent};
use crate::envelope::{NewEvent, RecordedEvent, Snapshot, StreamWrite};
use crate::error::{CommandError, Error, StoreError};
use crate::ids::{EventId, ExpectedVersion, Position, StreamId, Version};
use crate::metadata::Metadata;
use crate::projection::{ProjectionError, ProjectionRunner};
use crate::repository::{At, CommandOptions, Repository};
use crate::store::{EventStore, ReadUntil};
use crate::subscription::subscribe;

/// Expands to one `#[tokio::test]` per conformance case, each with a store from `$make`
/// (a closure returning a future of a fresh store).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            versions_start_at_one_without_gaps,
            a_missing_stream_reads_empty,
            stream_reads_honour_from_and_until_version,
            time_travel_reads_return_the_recorded_prefix,
            fold_reads_agree_with_stream_reads,
            exact_version_conflict_writes_nothing,
            no_stream_conflict_writes_nothing,
            stream_exists_conflict_writes_nothing,
            any_version_appends_at_the_end,
            multi_stream_append_is_atomic,
            multi_stream_append_commits_every_stream,
            positions_increase_across_commits,
            read_all_pages_filters_and_reports_scanned_to,
            page_streams_agree_with_read_all_and_miss_nothing,
            the_same_batch_again_returns_the_first_commit,
            a_reused_event_id_with_other_content_is_rejected,
            a_partial_repeat_is_rejected,
            exact_appends_check_the_version_and_the_ids,
            racing_exact_appends_commit_one_and_conflict_the_rest,
            malformed_appends_are_rejected_and_write_nothing,
            strings_outside_the_limits_are_rejected_alike_and_those_inside_round_trip,
            an_empty_append_is_a_no_op,
            events_are_found_by_id,
            payload_metadata_and_odd_stream_ids_round_trip,
            snapshots_are_selected_by_schema_version_and_bound,
            checkpoints_round_trip,
            waiting_for_events_wakes_on_append,
            concurrent_writers_and_a_live_subscriber_lose_nothing,
            repository_retries_conflicts_until_every_command_commits,
            hot_stream_commands_never_give_up_and_none_starves,
            the_writers_lock_excludes_every_other_appender_until_released,
            writers_locks_are_granted_in_the_order_asked,
            a_dropped_writers_lock_is_released,
            no_retry_still_fails_at_the_first_lost_race,
            repository_rejections_reach_the_caller_and_write_nothing,
            repository_uses_snapshots_and_ignores_bad_ones,
            a_snapshot_its_stream_does_not_hold_is_never_believed,
            repository_time_travel_by_version_and_time,
            idempotency_key_returns_the_first_commit,
            metadata_flows_into_recorded_events,
            multi_aggregate_command_commits_atomically,
            projection_waits_checkpoints_and_rebuilds,
            projection_handler_error_stops_before_the_event,
            a_panicking_handler_is_a_typed_error_in_the_status_naming_the_event,
            undecodable_events_are_typed_errors_naming_stream_version_and_type,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store = ($make)().await;
                $crate::testing::conformance::$case(store).await;
            }
        )*
    };
}

fn added(n: i64) -> NewEvent {
    CounterEvent::Added(n).to_new_event()
}

fn write(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite::new(stream, expected, events)
}

async fn read<S: EventStore>(store: &S, stream: &str) -> Vec<RecordedEvent> {
    let stream = StreamId::new(stream);
    store
        .read_stream(&stream, Version::FIRST, ReadUntil::End)
        .try_collect()
        .await
        .expect("read_stream")
}

async fn read_all_events<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    let mut after = Position::ZERO;
    loop {
        let page = store.read_all(after, 100, None).await.expect("read_all");
        if page.events.is_empty() && page.scanned_to <= after {
            return all;
        }
        after = page.scanned_to;
        all.extend(page.events);
    }
}

fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

fn assert_conflict(result: Result<crate::Commit, StoreError>, stream: &str, actual: u64) {
    match result {
        Err(StoreError::Conflict {
            stream: s,
            actual: a,
            ..
        }) => {
            assert_eq!(s.as_str(), stream, "conflict names the stream");
            assert_eq!(a.get(), actual, "conflict reports the actual version");
        }
        other => panic!("expected a conflict on {stream}, got {other:?}"),
    }
}

/// Versions are 1, 2, 3, ... without gaps across appends, and the commit reports them.
pub async fn versions_start_at_one_without_gaps<S: EventStore>(store: S) {
    let c1 = store
        .append(vec![write(
            "s",
            ExpectedVersion::NoStream,
            vec![added(1), added(2), added(3)],
        )])
        .await
        .expect("first append");
    assert_eq!(c1.streams.len(), 1);
    assert_eq!(
        (
            c1.streams[0].first_version.get(),
            c1.streams[0].last_version.get()
        ),
        (1, 3)
    );
    let c2 = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(3)),
            vec![added(4), added(5)],
        )])
        .await
        .expect("second append");
    assert_eq!(
        (
            c2.streams[0].first_version.get(),
            c2.streams[0].last_version.get()
        ),
        (4, 5)
    );
    let events = read(&store, "s").await;
    assert_eq!(versions(&events), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        store
            .stream_version(&StreamId::new("s"))
            .await
            .expect("version")
            .get(),
        5
    );
    assert_eq!(
        c2.position, events[4].position,
        "the commit position is its last event's"
    );
    assert_eq!(c2.first_position, events[3].position);
    assert_eq!(c2.streams[0].last_position, events[4].position);
}

/// A stream nobody wrote to reads as empty at version zero.
pub async fn a_missing_stream_reads_empty<S: EventStore>(store: S) {
    assert!(read(&store, "nobody").await.is_empty());
    assert_eq!(
        store
            .stream_version(&StreamId::new("nobody"))
            .await
            .expect("version"),
        Version::ZERO
    );
    assert_eq!(store.head().await.expect("head"), Position::ZERO);
}

/// `from` and `ReadUntil::Version` bound a stream read, both inclusive.
pub async fn stream_reads_honour_from_and_until_version<S: EventStore>(store: S) {
    let events: Vec<NewEvent> = (1..=10).map(added).collect();
    store
        .append(vec![write("s", ExpectedVersion::Any, events)])
        .await
        .expect("append");
    let stream = StreamId::new("s");
    let part: Vec<RecordedEvent> = store
        .read_stream(
            &stream,
            Version::new(4),
            ReadUntil::Version(Version::new(7)),
        )
        .try_collect()
        .await
        .expect("read");
    assert_eq!(versions(&part), vec![4, 5, 6, 7]);
    let tail: Vec<RecordedEvent> = store
        .read_stream(&stream, Version::new(9), ReadUntil::End)
        .try_collect()
        .await
        .expect("read");
    assert_eq!(versions(&tail), vec![9, 10]);
    let none: Vec<RecordedEvent> = store
        .read_stream(&stream, Version::new(11), ReadUntil::End)
        .try_collect()
        .await
        .expect("read");
    assert!(none.is_empty());
}

/// `ReadUntil::Time(t)` returns the events recorded at or before `t`, and `recorded_at` never
/// decreases within a stream.
pub async fn time_travel_reads_return_the_recorded_prefix<S: EventStore>(store: S) {
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![added(1), added(2)],
        )])
        .await
        .expect("append");
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![added(3)])])
        .await
        .expect("append");
    let all = read(&store, "s").await;
    assert!(
        all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at),
        "recorded_at never decreases"
    );
    let t = all[1].recorded_at;
    assert!(
        all[2].recorded_at > t,
        "the later append was recorded later"
    );
    let stream = StreamId::new("s");
    let prefix: Vec<RecordedEvent> = store
        .read_stream(&stream, Version::FIRST, ReadUntil::Time(t))
        .try_collect()
        .await
        .expect("read");
    assert_eq!(versions(&prefix), vec![1, 2]);
    let before: Vec<RecordedEvent> = store
        .read_stream(
            &stream,
            Version::FIRST,
            ReadUntil::Time(all[0].recorded_at - chrono::Duration::seconds(1)),
        )
        .try_collect()
        .await
        .expect("read");
    assert!(before.is_empty());
}

/// `read_stream_for_fold` returns exactly the matching fields of `read_stream`, for every
/// start and bound (what repository loads and time travel read).
pub async fn fold_reads_agree_with_stream_reads<S: EventStore>(store: S) {
    let stream = StreamId::new("fold");
    for i in 0..3 {
        store
            .append(vec![write(
                "fold",
                ExpectedVersion::Any,
                vec![added(i), added(10 + i)],
            )])
            .await
            .expect("append");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let all = read(&store, "fold").await;
    assert_eq!(all.len(), 6);
    let middle = all[3].recorded_at;
    for (from, until) in [
        (Version::FIRST, ReadUntil::End),
        (Version::new(2), ReadUntil::End),
        (Version::FIRST, ReadUntil::Version(Version::new(4))),
        (Version::new(3), ReadUntil::Time(middle)),
        (Version::new(9), ReadUntil::End),
    ] {
        let full: Vec<crate::FoldEvent> = store
            .read_stream(&stream, from, until)
            .map_ok(crate::FoldEvent::from)
            .try_collect()
            .await
            .expect("read_stream");
        let folded: Vec<crate::FoldEvent> = store
            .read_stream_for_fold(&stream, from, until)
            .try_collect()
            .await
            .expect("read_stream_for_fold");
        assert_eq!(folded, full, "from {from} until {until:?}");
    }
    let missing: Vec<crate::FoldEvent> = store
        .read_stream_for_fold(&StreamId::new("nothing"), Version::FIRST, ReadUntil::End)
        .try_collect()
        .await
        .expect("a missing stream");
    assert!(missing.is_empty());
}

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

/// `read_all` honours its limit and type filter, and `scanned_to` moves past filtered events so
/// a reader that handles nothing still advances.
pub async fn read_all_pages_filters_and_reports_scanned_to<S: EventStore>(store: S) {
    let reset = CounterEvent::Reset.to_new_event();
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![added(1), reset, added(2), added(3)],
        )])
        .await
        .expect("append");
    let page = store.read_all(Position::ZERO, 2, None).await.expect("page");
    assert_eq!(page.events.len(), 2);
    assert_eq!(page.scanned_to, page.events[1].position);
    let next = store
        .read_all(page.scanned_to, 10, None)
        .await
        .expect("page");
    assert_eq!(versions(&next.events), vec![3, 4]);

    let only_resets = store
        .read_all(Position::ZERO, 10, Some(&["counter.reset"]))
        .await
        .expect("page");
    assert_eq!(only_resets.events.len(), 1);
    assert_eq!(only_resets.events[0].event_type, "counter.reset");
    let head = store.head().await.expect("head");
    assert!(
        only_resets.scanned_to >= head,
        "a filtered read still scans to the head"
    );
    let after = store
        .read_all(only_resets.scanned_to, 10, None)
        .await
        .expect("page");
    assert!(after.events.is_empty());
    assert!(
        after.scanned_to >= only_resets.scanned_to,
        "scanned_to never goes back"
    );

    let nothing = store
        .read_all(Position::ZERO, 10, Some(&["no.such.type"]))
        .await
        .expect("page");
    assert!(nothing.events.is_empty());
    assert!(nothing.scanned_to >= head);
}

/// The pages of `read_all_pages(after, limit, types)`, checked to hold 1..=`limit` events
/// each, in position order, each starting after the one before and ending at or before its
/// `scanned_to`; then the pages `read_all` reads on from the last `scanned_to` until one
/// finds nothing new. Returns every event seen and where the reader got to.
async fn stream_then_read_on<S: EventStore>(
    store: &S,
    after: Position,
    limit: usize,
    types: Option<&[&str]>,
) -> (Vec<RecordedEvent>, Position) {
    let mut seen: Vec<RecordedEvent> = Vec::new();
    let mut at = after;
    let mut pages = store.read_all_pages(after, limit, types);
    while let Some(page) = pages.next().await {
        let page = page.expect("a streamed page");
        assert!(
            (1..=limit).contains(&page.events.len()),
            "a streamed page holds 1..={limit} events, not {}",
            page.events.len()
        );
        for e in &page.events {
            assert!(e.position > at, "streamed pages are in position order");
            at = e.position;
        }
        assert!(page.scanned_to >= at, "scanned_to covers the page");
        at = page.scanned_to;
        seen.extend(page.events);
    }
    drop(pages);
    loop {
        let page = store.read_all(at, limit, types).await.expect("read_all");
        if page.events.is_empty() && page.scanned_to <= at {
            return (seen, at);
        }
        for e in &page.events {
            assert!(e.position > at, "read_all goes on in position order");
        }
        at = page.scanned_to;
        seen.extend(page.events);
    }
}

fn ids(events: &[RecordedEvent]) -> Vec<EventId> {
    events.iter().map(|e| e.id).collect()
}

/// `read_all_pages` hands out the same events as paging with `read_all` (whole log, filtered,
/// from the middle, across however many queries a store splits it into), and a reader that
/// goes on with `read_all` where the stream ended misses nothing appended meanwhile, also
/// while writers race it.
pub async fn page_streams_agree_with_read_all_and_miss_nothing<S: EventStore>(store: S) {
    for i in 0..40 {
        let events = if i % 4 == 3 {
            vec![CounterEvent::Reset.to_new_event(), added(i)]
        } else {
            vec![added(i), added(i + 1), added(i + 2)]
        };
        store
            .append(vec![write(
                &format!("s-{}", i % 3),
                ExpectedVersion::Any,
                events,
            )])
            .await
            .expect("append");
    }
    let log = read_all_events(&store).await;
    assert_eq!(log.len(), 30 * 3 + 10 * 2);

    let (whole, _) = stream_then_read_on(&store, Position::ZERO, 3, None).await;
    assert_eq!(ids(&whole), ids(&log), "the whole log, each event once");

    let resets: Vec<RecordedEvent> = log
        .iter()
        .filter(|e| e.event_type == "counter.reset")
        .cloned()
        .collect();
    let (filtered, reached) =
        stream_then_read_on(&store, Position::ZERO, 2, Some(&["counter.reset"])).await;
    assert_eq!(ids(&filtered), ids(&resets), "only the type asked for");
    assert!(
        reached >= store.head().await.expect("head"),
        "a filtered reader still gets past the events it skipped"
    );

    let (tail, _) = stream_then_read_on(&store, log[49].position, 4, None).await;
    assert_eq!(ids(&tail), ids(&log[50..]), "from the middle");

    // A stream that is only partly read, then writers, then the rest: nothing is skipped.
    let mut pages = store.read_all_pages(Position::ZERO, 5, None);
    let first = pages.next().await.expect("a page").expect("a page");
    assert_eq!(ids(&first.events), ids(&log[..5]));
    drop(pages);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..15 {
                    store
                        .append(vec![write(
                            &format!("w-{w}"),
                            ExpectedVersion::Any,
                            vec![added(i), added(i)],
                        )])
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    let (raced, raced_to) = stream_then_read_on(&store, first.scanned_to, 5, None).await;
    for w in writers {
        w.await.expect("writer");
    }
    let (rest, _) = stream_then_read_on(&store, raced_to, 5, None).await;
    let final_log = read_all_events(&store).await;
    assert_eq!(final_log.len(), log.len() + 4 * 15 * 2);
    let mut seen = first.events;
    seen.extend(raced);
    seen.extend(rest);
    assert_eq!(
        ids(&seen),
        ids(&final_log),
        "streamed while writers raced, then read on: every event once, in order"
    );
}

/// Appending the same events again (same ids) writes nothing and returns the first commit.
pub async fn the_same_batch_again_returns_the_first_commit<S: EventStore>(store: S) {
    let batch = vec![added(1), added(2)];
    let first = store
        .append(vec![write("s", ExpectedVersion::NoStream, batch.clone())])
        .await
        .expect("append");
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![added(3)])])
        .await
        .expect("append");
    let again = store
        .append(vec![write("s", ExpectedVersion::NoStream, batch)])
        .await
        .expect("a repeat is not an error, even with a stale expected version");
    assert_eq!(again.streams, first.streams);
    assert_eq!(again.position, first.position);
    assert_eq!(again.first_position, first.first_position);
    assert_eq!(versions(&read(&store, "s").await), vec![1, 2, 3]);
}

/// An id already stored with another payload, or on another stream, is an error.
pub async fn a_reused_event_id_with_other_content_is_rejected<S: EventStore>(store: S) {
    let original = added(1);
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![original.clone()],
        )])
        .await
        .expect("append");
    let other_payload = added(2).with_id(original.id);
    match store
        .append(vec![write("s", ExpectedVersion::Any, vec![other_payload])])
        .await
    {
        Err(StoreError::EventIdReused {
            id, stored_stream, ..
        }) => {
            assert_eq!(id, original.id);
            assert_eq!(stored_stream.as_str(), "s");
        }
        other => panic!("expected EventIdReused, got {other:?}"),
    }
    let other_stream = original.clone();
    assert!(matches!(
        store
            .append(vec![write("t", ExpectedVersion::Any, vec![other_stream])])
            .await,
        Err(StoreError::EventIdReused { .. })
    ));
    assert_eq!(read(&store, "s").await.len(), 1);
    assert!(read(&store, "t").await.is_empty());
}

/// An append that repeats only some events of an earlier one is rejected and writes nothing.
pub async fn a_partial_repeat_is_rejected<S: EventStore>(store: S) {
    let first = added(1);
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![first.clone()])])
        .await
        .expect("append");
    let result = store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![first, added(2)],
        )])
        .await;
    assert!(
        matches!(result, Err(StoreError::EventIdReused { .. })),
        "got {result:?}"
    );
    assert_eq!(read(&store, "s").await.len(), 1);
}

/// Appends at an exact version (what a repository sends) keep every promise the other
/// expectations keep: an expected version ahead of the stream is a conflict (never a gap), a
/// repeat at a stale version returns the first commit, and an id reused with other content
/// is rejected even when the version matches, for one event and for a batch.
pub async fn exact_appends_check_the_version_and_the_ids<S: EventStore>(store: S) {
    let first = added(1);
    let commit = store
        .append(vec![write(
            "s",
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )])
        .await
        .expect("append");
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(1)),
            vec![added(2)],
        )])
        .await
        .expect("append");
    let ahead = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(5)),
            vec![added(3)],
        )])
        .await;
    assert_conflict(ahead, "s", 2);
    let again = store
        .append(vec![write(
            "s",
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )])
        .await
        .expect("a repeat at a stale version returns the first commit");
    assert_eq!(again.position, commit.position);
    assert_eq!(again.streams, commit.streams);
    let reused = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(2)),
            vec![added(9).with_id(first.id)],
        )])
        .await;
    assert!(
        matches!(reused, Err(StoreError::EventIdReused { id, .. }) if id == first.id),
        "got {reused:?}"
    );
    let reused_in_batch = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(2)),
            vec![added(3), added(9).with_id(first.id)],
        )])
        .await;
    assert!(
        matches!(reused_in_batch, Err(StoreError::EventIdReused { .. })),
        "got {reused_in_batch:?}"
    );
    let on_other_stream = store
        .append(vec![write(
            "t",
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )])
        .await;
    assert!(
        matches!(on_other_stream, Err(StoreError::EventIdReused { .. })),
        "got {on_other_stream:?}"
    );
    assert_eq!(versions(&read(&store, "s").await), vec![1, 2]);
    assert!(read(&store, "t").await.is_empty());
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

/// `count` random characters of four UTF-8 bytes each: text that does not compress.
fn wide_text(count: usize) -> String {
    (0..count)
        .map(|_| char::from_u32(fastrand::u32(0x1F300..0x1F5FF)).unwrap_or('x'))
        .collect()
}

/// The strings a store is handed obey the limits of [`crate::store::input`] on every store:
/// a NUL character, an empty name or one over 2,048 bytes (stream ids, type names, checkpoint
/// names, metadata header names) and a header value over 64 KiB are `InvalidRequest` on every
/// call that takes them, and write nothing; the longest valid ones, which do not compress,
/// round-trip.
pub async fn strings_outside_the_limits_are_rejected_alike_and_those_inside_round_trip<
    S: EventStore,
>(
    store: S,
) {
    use crate::store::input::{MAX_HEADER_VALUE_BYTES, MAX_NAME_BYTES};
    fn rejected<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
        assert!(
            matches!(result, Err(StoreError::InvalidRequest(_))),
            "{what}: expected InvalidRequest, got {result:?}"
        );
    }
    let too_long = StreamId::new(wide_text(MAX_NAME_BYTES / 4) + "x");
    let with_nul = StreamId::new("a\0b");
    for bad in [&too_long, &with_nul] {
        rejected(
            "append",
            store
                .append(vec![write(
                    bad.as_str(),
                    ExpectedVersion::Any,
                    vec![added(1)],
                )])
                .await,
        );
        rejected(
            "read_stream",
            store
                .read_stream(bad, Version::FIRST, ReadUntil::End)
                .try_collect::<Vec<_>>()
                .await,
        );
        rejected(
            "read_stream_for_fold",
            store
                .read_stream_for_fold(bad, Version::FIRST, ReadUntil::End)
                .try_collect::<Vec<_>>()
                .await,
        );
        rejected("stream_version", store.stream_version(bad).await);
        rejected(
            "lock_streams",
            store.lock_streams(std::slice::from_ref(bad)).await,
        );
        rejected(
            "load_snapshot",
            store.load_snapshot(bad, 1, ReadUntil::End).await,
        );
        let mut snap = snapshot(1, 1, Utc::now());
        snap.stream = bad.clone();
        rejected("save_snapshot", store.save_snapshot(snap).await);
        rejected("load_checkpoint", store.load_checkpoint(bad.as_str()).await);
        rejected(
            "save_checkpoint",
            store.save_checkpoint(bad.as_str(), Position::ZERO).await,
        );
        rejected(
            "read_all types",
            store
                .read_all(Position::ZERO, 10, Some(&[bad.as_str()]))
                .await,
        );
        rejected(
            "read_all_pages types",
            store
                .read_all_pages(Position::ZERO, 10, Some(&[bad.as_str()]))
                .try_collect::<Vec<_>>()
                .await,
        );
    }
    let mut bad_events = Vec::new();
    for ty in ["", "t\0", &"t".repeat(MAX_NAME_BYTES + 1)] {
        bad_events.push(NewEvent::new(ty, 1, Bytes::from_static(b"{}")));
    }
    let header = |name: &str, value: String| {
        let mut e = added(1);
        e.metadata = Metadata::new().with_header(name, value);
        e
    };
    bad_events.push(header("user\0", "x".into()));
    bad_events.push(header("", "x".into()));
    bad_events.push(header("user", "a\0b".into()));
    bad_events.push(header("user", "v".repeat(MAX_HEADER_VALUE_BYTES + 1)));
    bad_events.push(header(&"h".repeat(MAX_NAME_BYTES + 1), "x".into()));
    for e in bad_events {
        let shown = format!("{:?}", e.event_type.chars().take(10).collect::<String>());
        rejected(
            &format!("append of type {shown}"),
            store
                .append(vec![write("s", ExpectedVersion::Any, vec![added(1), e])])
                .await,
        );
    }
    assert_eq!(
        store.head().await.expect("head"),
        Position::ZERO,
        "nothing written"
    );

    // The longest valid strings, which do not compress.
    let longest = StreamId::new(wide_text(MAX_NAME_BYTES / 4));
    assert_eq!(longest.as_str().len(), MAX_NAME_BYTES);
    let ty = wide_text(MAX_NAME_BYTES / 4);
    let mut event = NewEvent::new(ty.clone(), 1, Bytes::from_static(b"{}"));
    event.metadata = Metadata::new()
        .with_header(
            wide_text(MAX_NAME_BYTES / 4),
            "v".repeat(MAX_HEADER_VALUE_BYTES),
        )
        .with_header("empty", "");
    store
        .append(vec![write(
            longest.as_str(),
            ExpectedVersion::NoStream,
            vec![event.clone()],
        )])
        .await
        .expect("the longest valid strings are stored");
    let got = read(&store, longest.as_str()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].event_type.as_str(), &got[0].metadata),
        (ty.as_str(), &event.metadata)
    );
    assert_eq!(
        store.stream_version(&longest).await.expect("version"),
        Version::FIRST
    );
    let page = store
        .read_all(Position::ZERO, 10, Some(&[ty.as_str()]))
        .await
        .expect("read_all");
    assert_eq!(page.events.len(), 1);
    let mut snap = snapshot(1, 1, got[0].recorded_at);
    snap.stream = longest.clone();
    snap.position = got[0].position;
    store.save_snapshot(snap).await.expect("save_snapshot");
    assert!(
        store
            .load_snapshot(&longest, 1, ReadUntil::End)
            .await
            .expect("load_snapshot")
            .is_some()
    );
    let lock = store
        .lock_streams(std::slice::from_ref(&longest))
        .await
        .expect("lock");
    lock.release().await.expect("release");
    let checkpoint = wide_text(MAX_NAME_BYTES / 4);
    store
        .save_checkpoint(&checkpoint, got[0].position)
        .await
        .expect("save_checkpoint");
    assert_eq!(
        store
            .load_checkpoint(&checkpoint)
            .await
            .expect("load_checkpoint"),
        Some(got[0].position)
    );
}

/// Malformed requests are typed errors and write nothing.
pub async fn malformed_appends_are_rejected_and_write_nothing<S: EventStore>(store: S) {
    let empty_id = store
        .append(vec![write("", ExpectedVersion::Any, vec![added(1)])])
        .await;
    assert!(
        matches!(empty_id, Err(StoreError::InvalidRequest(_))),
        "got {empty_id:?}"
    );
    let twice = store
        .append(vec![
            write("s", ExpectedVersion::Any, vec![added(1)]),
            write("s", ExpectedVersion::Any, vec![added(2)]),
        ])
        .await;
    assert!(
        matches!(twice, Err(StoreError::InvalidRequest(_))),
        "got {twice:?}"
    );
    let e = added(1);
    let same_id = store
        .append(vec![write("s", ExpectedVersion::Any, vec![e.clone(), e])])
        .await;
    assert!(
        matches!(same_id, Err(StoreError::InvalidRequest(_))),
        "got {same_id:?}"
    );
    assert_eq!(store.head().await.expect("head"), Position::ZERO);
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

/// Stored events are found by id; unknown ids are `None`.
pub async fn events_are_found_by_id<S: EventStore>(store: S) {
    let e = added(5);
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![added(1), e.clone()],
        )])
        .await
        .expect("append");
    let found = store
        .event_by_id(e.id)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.version.get(), 2);
    assert_eq!(found.payload, e.payload);
    assert!(
        store
            .event_by_id(EventId::new_random())
            .await
            .expect("lookup")
            .is_none()
    );
}

/// Payloads come back byte for byte; metadata and stream ids with quotes and unicode survive.
pub async fn payload_metadata_and_odd_stream_ids_round_trip<S: EventStore>(store: S) {
    let stream = "order-'; DROP TABLE events; --\"ü€😀";
    let payload = Bytes::from_static("{\"note\":\"it's \\\"quoted\\\" ü€😀\",\"n\":1}".as_bytes());
    let metadata = Metadata::new()
        .with_correlation_id(uuid::Uuid::new_v4())
        .with_causation_id(uuid::Uuid::new_v4())
        .with_header("tenant", "acme ü");
    let e = NewEvent::new("odd.event", 3, payload.clone()).with_metadata(metadata.clone());
    store
        .append(vec![write(
            stream,
            ExpectedVersion::NoStream,
            vec![e.clone()],
        )])
        .await
        .expect("append");
    let got = read(&store, stream).await;
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert_eq!(got.stream.as_str(), stream);
    assert_eq!(got.id, e.id);
    assert_eq!(got.event_type, "odd.event");
    assert_eq!(got.schema_version, 3);
    assert_eq!(got.payload, payload);
    assert_eq!(got.metadata, metadata);
    let age = Utc::now() - got.recorded_at;
    assert!(
        age < chrono::Duration::minutes(5) && age > chrono::Duration::minutes(-5),
        "recorded_at is now"
    );
}

fn snapshot(version: u64, schema_version: u32, at: chrono::DateTime<Utc>) -> Snapshot {
    Snapshot {
        stream: StreamId::new("s"),
        version: Version::new(version),
        position: Position::new(1, version),
        event_recorded_at: at,
        schema_version,
        payload: Bytes::from(format!("{{\"v\":{version}}}")),
    }
}

/// `load_snapshot` returns the newest snapshot of the asked schema version within the bound.
pub async fn snapshots_are_selected_by_schema_version_and_bound<S: EventStore>(store: S) {
    let stream = StreamId::new("s");
    assert!(
        store
            .load_snapshot(&stream, 1, ReadUntil::End)
            .await
            .expect("load")
            .is_none()
    );
    let t0 = Utc::now() - chrono::Duration::minutes(10);
    let t = |m| t0 + chrono::Duration::minutes(m);
    for s in [
        snapshot(3, 1, t(1)),
        snapshot(5, 1, t(2)),
        snapshot(7, 2, t(3)),
    ] {
        store.save_snapshot(s).await.expect("save");
    }
    let v = |s: Option<Snapshot>| s.map(|s| s.version.get());
    assert_eq!(
        v(store
            .load_snapshot(&stream, 1, ReadUntil::End)
            .await
            .expect("load")),
        Some(5)
    );
    assert_eq!(
        v(store
            .load_snapshot(&stream, 2, ReadUntil::End)
            .await
            .expect("load")),
        Some(7)
    );
    assert_eq!(
        v(store
            .load_snapshot(&stream, 3, ReadUntil::End)
            .await
            .expect("load")),
        None
    );
    let until4 = ReadUntil::Version(Version::new(4));
    assert_eq!(
        v(store.load_snapshot(&stream, 1, until4).await.expect("load")),
        Some(3)
    );
    assert_eq!(
        v(store.load_snapshot(&stream, 2, until4).await.expect("load")),
        None
    );
    let at = ReadUntil::Time(t(1) + chrono::Duration::seconds(30));
    assert_eq!(
        v(store.load_snapshot(&stream, 1, at).await.expect("load")),
        Some(3)
    );
    let got = store
        .load_snapshot(&stream, 1, ReadUntil::End)
        .await
        .expect("load")
        .expect("some");
    assert_eq!(got, snapshot(5, 1, t(2)), "a snapshot round-trips");
    let mut replaced = snapshot(5, 1, t(2));
    replaced.payload = Bytes::from_static(b"{\"v\":\"new\"}");
    store
        .save_snapshot(replaced.clone())
        .await
        .expect("replace");
    assert_eq!(
        store
            .load_snapshot(&stream, 1, ReadUntil::End)
            .await
            .expect("load"),
        Some(replaced)
    );
}

/// Checkpoints are absent until saved, then read back, then overwritten.
pub async fn checkpoints_round_trip<S: EventStore>(store: S) {
    assert_eq!(store.load_checkpoint("p").await.expect("load"), None);
    store
        .save_checkpoint("p", Position::new(3, 9))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("p").await.expect("load"),
        Some(Position::new(3, 9))
    );
    store
        .save_checkpoint("p", Position::new(4, 1))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("p").await.expect("load"),
        Some(Position::new(4, 1))
    );
    assert_eq!(
        store.load_checkpoint("q").await.expect("load"),
        None,
        "names are separate"
    );
}

/// A reader waiting at the head is woken by an append.
pub async fn waiting_for_events_wakes_on_append<S: EventStore>(store: S) {
    let head = store.head().await.expect("head");
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                store.wait_for_events(head).await.expect("wait");
                if store.head().await.expect("head") > head {
                    return;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![added(1)])])
        .await
        .expect("append");
    tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter woke")
        .expect("the waiter did not fail");
}

/// Several writer tasks on one stream (optimistic, retrying on conflict) and on many streams,
/// while a live subscriber reads: the subscriber sees every event exactly once, in position
/// order, each stream's versions gap-free and in order.
pub async fn concurrent_writers_and_a_live_subscriber_lose_nothing<S: EventStore>(store: S) {
    const HOT_WRITERS: usize = 4;
    const HOT_APPENDS: usize = 25;
    const SPREAD_WRITERS: usize = 4;
    const SPREAD_APPENDS: usize = 40;
    let total = HOT_WRITERS * HOT_APPENDS + SPREAD_WRITERS * SPREAD_APPENDS * 2;

    let subscriber = {
        let events = subscribe(store.clone(), Position::ZERO, 32);
        tokio::spawn(async move {
            events
                .take(total)
                .try_collect::<Vec<RecordedEvent>>()
                .await
                .expect("subscription")
        })
    };
    let mut writers = Vec::new();
    for w in 0..HOT_WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let hot = StreamId::new("hot");
            for i in 0..HOT_APPENDS {
                loop {
                    let v = store.stream_version(&hot).await.expect("version");
                    let e = added((w * 1000 + i) as i64);
                    match store
                        .append(vec![StreamWrite::new(
                            hot.clone(),
                            ExpectedVersion::Exact(v),
                            vec![e],
                        )])
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Conflict { .. }) => tokio::task::yield_now().await,
                        Err(e) => panic!("append failed: {e}"),
                    }
                }
            }
        }));
    }
    for w in 0..SPREAD_WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..SPREAD_APPENDS {
                let stream = format!("spread-{w}-{}", i % 5);
                let events = vec![added(i as i64), added(i as i64)];
                store
                    .append(vec![write(&stream, ExpectedVersion::Any, events)])
                    .await
                    .expect("append");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    let seen = tokio::time::timeout(Duration::from_secs(60), subscriber)
        .await
        .expect("the subscriber saw every event in time")
        .expect("subscriber task");
    assert_eq!(seen.len(), total);
    let ids: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), total, "no event seen twice");
    assert!(
        seen.windows(2).all(|w| w[0].position < w[1].position),
        "position order"
    );
    let mut per_stream: HashMap<&str, Vec<u64>> = HashMap::new();
    for e in &seen {
        per_stream
            .entry(e.stream.as_str())
            .or_default()
            .push(e.version.get());
    }
    for (stream, vs) in &per_stream {
        let expected: Vec<u64> = (1..=vs.len() as u64).collect();
        assert_eq!(vs, &expected, "stream {stream} is gap-free and in order");
    }
    assert_eq!(per_stream["hot"].len(), HOT_WRITERS * HOT_APPENDS);
    let stored = read_all_events(&store).await;
    assert_eq!(
        stored.iter().map(|e| e.id).collect::<Vec<_>>(),
        seen.iter().map(|e| e.id).collect::<Vec<_>>()
    );
}

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
        let repo = repo.clone();
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
                let repo = Repository::<Counter, S>::new(store.clone());
                let repo = if cached { repo.with_cache(64) } else { repo };
                let id = format!("hot-{run}-{cached}-{tasks}");
                let report = deposits_on_one_stream(&[repo], &id, tasks, commands).await;
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
