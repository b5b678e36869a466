//! Decoding stored rows into the core's types. A row that cannot be decoded is
//! [`StoreError::Corrupt`], naming its stream and version.

use bytes::Bytes;
use chrono::{DateTime, Timelike, Utc};
use eventsource_core::{
    EventId, FoldEvent, Metadata, Position, RecordedEvent, Snapshot, StoreError, StreamId, Version,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// Largest value a position part takes in SQL (`bigint`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A position as its two `bigint` columns.
pub(crate) fn position_params(p: Position) -> (i64, i64) {
    (to_i64(p.commit()), to_i64(p.sequence()))
}

/// A position from two `bigint` columns, if neither is negative.
pub(crate) fn position_from(commit: i64, seq: i64) -> Option<Position> {
    Some(Position::new(
        u64::try_from(commit).ok()?,
        u64::try_from(seq).ok()?,
    ))
}

fn corrupt(stream: &StreamId, version: Version, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        stream: stream.clone(),
        version,
        reason: reason.to_string(),
    }
}

/// Decodes an event row whose columns start at `at`: the stream, then `sql::EVENT_FIELDS`.
pub(crate) fn event(row: &PgRow, at: usize) -> Result<RecordedEvent, StoreError> {
    let stream: &str = row
        .try_get(at)
        .map_err(|e| corrupt(&StreamId::new("?"), Version::ZERO, e))?;
    event_in(row, at, stream, None)
}

/// [`event`] when the row's stream column (`at`) is already decoded as `stream`. In the rows
/// of a page, an event of the same stream as the one before (`previous`) shares its
/// [`StreamId`] (a log page mostly holds runs of one stream's events, and the id is then not
/// allocated again).
pub(crate) fn event_in(
    row: &PgRow,
    at: usize,
    stream: &str,
    previous: Option<&RecordedEvent>,
) -> Result<RecordedEvent, StoreError> {
    let stream = match previous {
        Some(p) if p.stream.as_str() == stream => p.stream.clone(),
        _ => StreamId::new(stream),
    };
    event_of(row, at + 1, stream)
}

/// Decodes an event row of a stream already known: the columns of `sql::EVENT_FIELDS`
/// from `at` on.
///
/// The columns' types are fixed by the store's own SQL, so the per-row type-compatibility
/// check is skipped (`try_get_unchecked`); values are still decoded and validated.
pub(crate) fn event_of(
    row: &PgRow,
    at: usize,
    stream: StreamId,
) -> Result<RecordedEvent, StoreError> {
    let version: i64 = row
        .try_get_unchecked(at)
        .map_err(|e| corrupt(&stream, Version::ZERO, e))?;
    let version = valid_version(&stream, version)?;
    let c = |e: sqlx::Error| corrupt(&stream, version, e);
    let commit: i64 = row.try_get_unchecked(at + 1).map_err(c)?;
    let seq: i64 = row.try_get_unchecked(at + 2).map_err(c)?;
    let position = position_from(commit, seq)
        .ok_or_else(|| corrupt(&stream, version, format!("invalid position {commit}.{seq}")))?;
    let id: Uuid = row.try_get_unchecked(at + 3).map_err(c)?;
    let event_type: String = row.try_get_unchecked(at + 4).map_err(c)?;
    let schema_version: i64 = row.try_get_unchecked(at + 5).map_err(c)?;
    let schema_version = valid_schema_version(&stream, version, schema_version)?;
    let payload: Vec<u8> = row.try_get_unchecked(at + 6).map_err(c)?;
    let metadata: Option<sqlx::types::Json<Metadata>> = row
        .try_get_unchecked(at + 7)
        .map_err(|e| corrupt(&stream, version, format!("invalid metadata: {e}")))?;
    let recorded_at: DateTime<Utc> = row.try_get_unchecked(at + 8).map_err(c)?;
    Ok(RecordedEvent {
        id: EventId::from_uuid(id),
        stream,
        version,
        position,
        event_type,
        schema_version,
        payload: Bytes::from(payload),
        metadata: metadata.map(|m| m.0).unwrap_or_default(),
        recorded_at,
    })
}

/// Decodes a row of `Sql::read_stream_fold`: version, type, schema version, payload.
pub(crate) fn fold_event(row: &PgRow, stream: &StreamId) -> Result<FoldEvent, StoreError> {
    let version: i64 = row
        .try_get_unchecked(0)
        .map_err(|e| corrupt(stream, Version::ZERO, e))?;
    let version = valid_version(stream, version)?;
    let c = |e: sqlx::Error| corrupt(stream, version, e);
    let event_type: String = row.try_get_unchecked(1).map_err(c)?;
    let schema_version: i64 = row.try_get_unchecked(2).map_err(c)?;
    let payload: Vec<u8> = row.try_get_unchecked(3).map_err(c)?;
    Ok(FoldEvent {
        version,
        event_type,
        schema_version: valid_schema_version(stream, version, schema_version)?,
        payload: Bytes::from(payload),
    })
}

fn valid_version(stream: &StreamId, version: i64) -> Result<Version, StoreError> {
    u64::try_from(version)
        .ok()
        .filter(|v| *v > 0)
        .map(Version::new)
        .ok_or_else(|| corrupt(stream, Version::ZERO, format!("invalid version {version}")))
}

fn valid_schema_version(
    stream: &StreamId,
    version: Version,
    schema_version: i64,
) -> Result<u32, StoreError> {
    u32::try_from(schema_version).map_err(|_| {
        corrupt(
            stream,
            version,
            format!("invalid schema version {schema_version}"),
        )
    })
}

/// Decodes a snapshot row.
pub(crate) fn snapshot(row: &PgRow) -> Result<Snapshot, StoreError> {
    let stream: String = row
        .try_get(0)
        .map_err(|e| corrupt(&StreamId::new("?"), Version::ZERO, e))?;
    let stream = StreamId::new(stream);
    let version: i64 = row
        .try_get(1)
        .map_err(|e| corrupt(&stream, Version::ZERO, e))?;
    let version = Version::new(u64::try_from(version).unwrap_or(0));
    let c = |e: sqlx::Error| corrupt(&stream, version, format!("snapshot: {e}"));
    let schema_version: i64 = row.try_get(2).map_err(c)?;
    let commit: i64 = row.try_get(3).map_err(c)?;
    let seq: i64 = row.try_get(4).map_err(c)?;
    let micros: DateTime<Utc> = row.try_get(5).map_err(c)?;
    let nanos: i16 = row.try_get(6).map_err(c)?;
    let payload: Vec<u8> = row.try_get(7).map_err(c)?;
    let bad = |what: &str| corrupt(&stream, version, format!("snapshot: invalid {what}"));
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1000)
        .ok_or_else(|| bad("recorded-at nanoseconds"))?;
    let event_recorded_at = micros
        .with_nanosecond(micros.timestamp_subsec_micros() * 1000 + nanos)
        .ok_or_else(|| bad("recorded-at time"))?;
    Ok(Snapshot {
        stream: stream.clone(),
        version,
        position: position_from(commit, seq).ok_or_else(|| bad("position"))?,
        event_recorded_at,
        schema_version: u32::try_from(schema_version).map_err(|_| bad("schema version"))?,
        payload: Bytes::from(payload),
    })
}

/// A time as the store keeps it: whole microseconds (what `timestamptz` holds) and the
/// nanoseconds below them.
pub(crate) fn split_nanos(t: DateTime<Utc>) -> (DateTime<Utc>, i16) {
    let sub_micro = t.timestamp_subsec_nanos() % 1000;
    let micros = t
        .with_nanosecond(t.timestamp_subsec_nanos() - sub_micro)
        .unwrap_or(t);
    (micros, i16::try_from(sub_micro).unwrap_or(0))
}
