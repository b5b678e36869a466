//! Streams: versions without gaps, bounded reads, time travel and fold reads.

use std::time::Duration;

use futures::TryStreamExt;

use super::support::{added, read, versions, write};
use crate::envelope::{NewEvent, RecordedEvent};
use crate::ids::{ExpectedVersion, Position, StreamId, Version};
use crate::store::{EventStore, ReadUntil};

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
