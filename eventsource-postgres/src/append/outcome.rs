//! What an append came to: the commit, where each event landed, and the recorded events
//! inline projections are handed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use eventsource_core::{
    Commit, CommittedStream, EventId, NewEvent, Position, RecordedEvent, StoreError, StreamId,
    StreamWrite, Version,
};

/// The error for a reply no append can give.
pub(super) fn corrupt_reply(what: &str) -> StoreError {
    StoreError::backend(
        "appending",
        false,
        format!("append_events returned an impossible row: {what}"),
    )
}

/// What an append came to.
pub(crate) enum Outcome {
    /// The events were written in this call: the commit, and where each event landed (for
    /// inline projections; the direct path leaves it empty outside their transaction, where
    /// only the commit is handed on, see `direct::append`).
    Written(Commit, Vec<WrittenEvent>),
    /// The events were already stored: the original commit.
    AlreadyStored(Commit),
}

/// Where one written event landed.
pub(crate) struct WrittenEvent {
    pub(super) id: EventId,
    pub(super) stream: StreamId,
    pub(super) version: Version,
    pub(super) position: Position,
    pub(super) recorded_at: DateTime<Utc>,
}

/// The commit describing `events` (in any order), streams in the order of the request.
pub(super) fn commit_of(writes: &[StreamWrite], events: &[WrittenEvent]) -> Commit {
    let mut per_stream: HashMap<&StreamId, CommittedStream> = HashMap::new();
    let mut first_position: Option<Position> = None;
    let mut position = Position::ZERO;
    for e in events {
        first_position = Some(first_position.map_or(e.position, |p| p.min(e.position)));
        position = position.max(e.position);
        let c = per_stream
            .entry(&e.stream)
            .or_insert_with(|| CommittedStream {
                stream: e.stream.clone(),
                first_version: e.version,
                last_version: e.version,
                last_position: e.position,
                last_recorded_at: e.recorded_at,
            });
        c.first_version = c.first_version.min(e.version);
        if e.version >= c.last_version {
            c.last_version = e.version;
            c.last_position = e.position;
            c.last_recorded_at = e.recorded_at;
        }
    }
    let streams = writes
        .iter()
        .filter_map(|w| per_stream.remove(&w.stream))
        .collect();
    Commit {
        streams,
        first_position: first_position.unwrap_or(Position::ZERO),
        position,
    }
}

/// The recorded events of a fresh commit, rebuilt from the request and where each landed
/// (for inline projections), in position order.
pub(super) fn recorded(writes: &[StreamWrite], written: &[WrittenEvent]) -> Vec<RecordedEvent> {
    let by_id: HashMap<EventId, &NewEvent> = writes
        .iter()
        .flat_map(|w| &w.events)
        .map(|e| (e.id, e))
        .collect();
    let mut out: Vec<RecordedEvent> = written
        .iter()
        .filter_map(|w| {
            let e = by_id.get(&w.id)?;
            Some(RecordedEvent {
                id: w.id,
                stream: w.stream.clone(),
                version: w.version,
                position: w.position,
                event_type: e.event_type.clone(),
                schema_version: e.schema_version,
                payload: e.payload.clone(),
                metadata: e.metadata.clone(),
                recorded_at: w.recorded_at,
            })
        })
        .collect();
    out.sort_by_key(|e| e.position);
    out
}
