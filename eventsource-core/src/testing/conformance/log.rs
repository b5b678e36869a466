//! The log across streams: `read_all` and its page streams, events by id, waiting for events
//! and a live subscriber.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};

use super::support::{added, read_all_events, versions, write};
use crate::envelope::{RecordedEvent, StreamWrite};
use crate::error::StoreError;
use crate::ids::{EventId, ExpectedVersion, Position, StreamId};
use crate::store::EventStore;
use crate::subscription::subscribe;
use crate::testing::fixtures::CounterEvent;

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
