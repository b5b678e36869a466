//! Helpers the topics share: writing, reading and asserting on what a store holds.

use bytes::Bytes;
use chrono::Utc;
use futures::TryStreamExt;

use crate::envelope::{NewEvent, RecordedEvent, Snapshot, StreamWrite};
use crate::error::StoreError;
use crate::ids::{ExpectedVersion, Position, StreamId, Version};
use crate::store::{EventStore, ReadUntil};
use crate::testing::fixtures::CounterEvent;

pub(super) fn added(n: i64) -> NewEvent {
    CounterEvent::Added(n).to_new_event()
}

pub(super) fn write(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> StreamWrite {
    StreamWrite::new(stream, expected, events)
}

pub(super) async fn read<S: EventStore>(store: &S, stream: &str) -> Vec<RecordedEvent> {
    let stream = StreamId::new(stream);
    store
        .read_stream(&stream, Version::FIRST, ReadUntil::End)
        .try_collect()
        .await
        .expect("read_stream")
}

pub(super) async fn read_all_events<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
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

pub(super) fn versions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.version.get()).collect()
}

pub(super) fn assert_conflict(
    result: Result<crate::Commit, StoreError>,
    stream: &str,
    actual: u64,
) {
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

pub(super) fn snapshot(version: u64, schema_version: u32, at: chrono::DateTime<Utc>) -> Snapshot {
    Snapshot {
        stream: StreamId::new("s"),
        version: Version::new(version),
        position: Position::new(1, version),
        event_recorded_at: at,
        schema_version,
        payload: Bytes::from(format!("{{\"v\":{version}}}")),
    }
}
