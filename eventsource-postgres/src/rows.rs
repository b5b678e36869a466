//! Decoding stored rows into the core's types. A row that cannot be decoded is
//! [`StoreError::Corrupt`], naming its stream and version.

use bytes::Bytes;
use chrono::{DateTime, Timelike, Utc};
use eventsource_core::{
    EventId, FoldEvent, Metadata, Position, ReadUntil, RecordedEvent, Snapshot, StoreError,
    StreamId, Version,
};
use sqlx::postgres::{PgRow, PgValueFormat};
use sqlx::{Row, ValueRef};
use uuid::Uuid;

/// Largest value a position part takes in SQL (`bigint`).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A position as its two `bigint` columns.
pub(crate) fn position_params(p: Position) -> (i64, i64) {
    (to_i64(p.commit()), to_i64(p.sequence()))
}

/// How far a read goes, as its statements take it: up to a version (the end is `i64::MAX`),
/// or up to a recorded-at time.
#[derive(Clone, Copy)]
pub(crate) enum Bound {
    Version(i64),
    Time(DateTime<Utc>),
}

/// `until` as its statements take it.
pub(crate) fn bound(until: ReadUntil) -> Bound {
    match until {
        ReadUntil::End => Bound::Version(i64::MAX),
        ReadUntil::Version(v) => Bound::Version(to_i64(v.get())),
        ReadUntil::Time(t) => Bound::Time(t),
    }
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
    let stream = Binary(row)
        .text(at)
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
/// The columns' types are fixed by the store's own SQL, and sqlx asks for every result in
/// binary format, so the values are read from their bytes ([`Binary`]) rather than through
/// sqlx's per-type decoders, which check the column's type and format again on every value.
/// Each value is still validated.
pub(crate) fn event_of(
    row: &PgRow,
    at: usize,
    stream: StreamId,
) -> Result<RecordedEvent, StoreError> {
    let cols = Binary(row);
    let version = cols
        .int8(at)
        .map_err(|e| corrupt(&stream, Version::ZERO, e))?;
    let version = valid_version(&stream, version)?;
    let c = |e: String| corrupt(&stream, version, e);
    let commit = cols.int8(at + 1).map_err(c)?;
    let seq = cols.int8(at + 2).map_err(c)?;
    let position = position_from(commit, seq)
        .ok_or_else(|| corrupt(&stream, version, format!("invalid position {commit}.{seq}")))?;
    let id = cols.uuid(at + 3).map_err(c)?;
    let event_type = cols.text(at + 4).map_err(c)?.to_owned();
    let schema_version = cols.int8(at + 5).map_err(c)?;
    let schema_version = valid_schema_version(&stream, version, schema_version)?;
    let payload = Bytes::copy_from_slice(cols.bytes(at + 6).map_err(c)?);
    let metadata = match cols.raw(at + 7).map_err(c)? {
        None => Metadata::default(),
        Some(b) => {
            jsonb(b).map_err(|e| corrupt(&stream, version, format!("invalid metadata: {e}")))?
        }
    };
    let recorded_at = cols.timestamptz(at + 8).map_err(c)?;
    Ok(RecordedEvent {
        id: EventId::from_uuid(id),
        stream,
        version,
        position,
        event_type,
        schema_version,
        payload,
        metadata,
        recorded_at,
    })
}

/// Decodes a row of `Sql::read_stream_fold`: version, commit, sequence, type, schema version,
/// payload.
pub(crate) fn fold_event(row: &PgRow, stream: &StreamId) -> Result<FoldEvent, StoreError> {
    let cols = Binary(row);
    let version = cols
        .int8(0)
        .map_err(|e| corrupt(stream, Version::ZERO, e))?;
    let version = valid_version(stream, version)?;
    let c = |e: String| corrupt(stream, version, e);
    let commit = cols.int8(1).map_err(c)?;
    let seq = cols.int8(2).map_err(c)?;
    let position =
        position_from(commit, seq).ok_or_else(|| c(format!("invalid position {commit}.{seq}")))?;
    let event_type = cols.text(3).map_err(c)?.to_owned();
    let schema_version = cols.int8(4).map_err(c)?;
    let payload = Bytes::copy_from_slice(cols.bytes(5).map_err(c)?);
    Ok(FoldEvent {
        version,
        position,
        event_type,
        schema_version: valid_schema_version(stream, version, schema_version)?,
        payload,
    })
}

/// Whether `row` carries an event (a row of `read_from_snapshot` may carry its snapshot
/// alone, with a NULL version).
pub(crate) fn has_event(row: &PgRow, stream: &StreamId) -> Result<bool, StoreError> {
    Binary(row)
        .raw(0)
        .map(|v| v.is_some())
        .map_err(|e| corrupt(stream, Version::ZERO, e))
}

/// The columns of a row, read from PostgreSQL's binary format (what sqlx requests for the
/// results of every statement it prepares). Errors say which column and why.
#[derive(Clone, Copy)]
pub(crate) struct Binary<'r>(pub(crate) &'r PgRow);

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl<'r> Binary<'r> {
    /// Column `i`'s bytes, `None` when it is NULL.
    pub(crate) fn raw(self, i: usize) -> Result<Option<&'r [u8]>, String> {
        // Matched, not mapped: `map_err` over sqlx's large result types copies the value
        // through the stack several times, and this runs for every column of every row.
        let value = match self.0.try_get_raw(i) {
            Ok(value) => value,
            Err(e) => return Err(format!("column {i}: {e}")),
        };
        if value.format() != PgValueFormat::Binary {
            return Err(format!("column {i}: not in binary format"));
        }
        if value.is_null() {
            return Ok(None);
        }
        // `as_bytes` fails only on NULL.
        Ok(value.as_bytes().ok())
    }

    /// Column `i`'s bytes; NULL is an error.
    pub(crate) fn bytes(self, i: usize) -> Result<&'r [u8], String> {
        self.raw(i)?
            .ok_or_else(|| format!("column {i}: unexpected NULL"))
    }

    fn fixed<const N: usize>(self, i: usize) -> Result<[u8; N], String> {
        fixed_of(i, self.bytes(i)?)
    }

    /// A `bigint` column.
    pub(crate) fn int8(self, i: usize) -> Result<i64, String> {
        int8_of(i, self.bytes(i)?)
    }

    /// A nullable `bigint` column.
    pub(crate) fn opt_int8(self, i: usize) -> Result<Option<i64>, String> {
        self.raw(i)?.map(|b| int8_of(i, b)).transpose()
    }

    /// A `uuid` column.
    pub(crate) fn uuid(self, i: usize) -> Result<Uuid, String> {
        self.fixed::<16>(i).map(Uuid::from_bytes)
    }

    /// A `text` column, checked to be UTF-8.
    pub(crate) fn text(self, i: usize) -> Result<&'r str, String> {
        text_of(i, self.bytes(i)?)
    }

    /// A nullable `text` column.
    pub(crate) fn opt_text(self, i: usize) -> Result<Option<&'r str>, String> {
        self.raw(i)?.map(|b| text_of(i, b)).transpose()
    }

    /// A `timestamptz` column (microseconds since 2000-01-01 UTC; the infinities are refused).
    pub(crate) fn timestamptz(self, i: usize) -> Result<DateTime<Utc>, String> {
        timestamptz_of(i, self.bytes(i)?)
    }
}

/// A `jsonb` value in binary format (a version byte, 1, then the JSON text).
fn jsonb<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    match b.split_first() {
        Some((1, json)) => serde_json::from_slice(json).map_err(|e| e.to_string()),
        Some((v, _)) => Err(format!("jsonb format version {v}, not 1")),
        None => Err("empty jsonb value".to_owned()),
    }
}

/// Column `i`'s bytes as `N` bytes.
fn fixed_of<const N: usize>(i: usize, b: &[u8]) -> Result<[u8; N], String> {
    <[u8; N]>::try_from(b).map_err(|_| format!("column {i}: {} bytes, not {N}", b.len()))
}

/// Column `i`'s bytes as a `timestamptz` (microseconds since 2000-01-01 UTC; the
/// infinities are refused).
fn timestamptz_of(i: usize, b: &[u8]) -> Result<DateTime<Utc>, String> {
    let micros = int8_of(i, b)?;
    micros
        .checked_add(PG_EPOCH_MICROS)
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(|| format!("column {i}: time out of range ({micros} µs)"))
}

/// Column `i`'s bytes as a `bigint`.
fn int8_of(i: usize, b: &[u8]) -> Result<i64, String> {
    fixed_of::<8>(i, b).map(i64::from_be_bytes)
}

/// Column `i`'s bytes as `text`, checked to be UTF-8.
fn text_of(i: usize, b: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(b).map_err(|e| format!("column {i}: {e}"))
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

/// Decodes a snapshot row: the stream, the schema version, then the six [`SnapshotFields`].
pub(crate) fn snapshot(row: &PgRow) -> Result<Snapshot, StoreError> {
    let cols = Binary(row);
    let stream = cols
        .text(0)
        .map_err(|e| corrupt(&StreamId::new("?"), Version::ZERO, e))?;
    let stream = StreamId::new(stream);
    let bad = |e: String| corrupt(&stream, Version::ZERO, format!("snapshot: {e}"));
    let schema_version = cols.int8(1).map_err(bad)?;
    let schema_version = u32::try_from(schema_version)
        .map_err(|_| bad(format!("invalid schema version {schema_version}")))?;
    let mut fields: SnapshotFields<'_> = [None; 6];
    for (i, field) in fields.iter_mut().enumerate() {
        *field = cols.raw(i + 2).map_err(bad)?;
    }
    snapshot_of(&stream, schema_version, fields, [2, 3, 4, 5, 6, 7])
}

/// The snapshot of `stream` in `schema_version` that column `at` of `row` carries as a
/// record of its six [`SnapshotFields`]; `None` when the column is NULL.
pub(crate) fn snapshot_at(
    row: &PgRow,
    stream: &StreamId,
    schema_version: u32,
    at: usize,
) -> Result<Option<Snapshot>, StoreError> {
    let bad = |e: String| corrupt(stream, Version::ZERO, format!("snapshot: {e}"));
    let Some(record) = Binary(row).raw(at).map_err(bad)? else {
        return Ok(None);
    };
    let fields = record_fields(record).map_err(|e| bad(format!("column {at}: {e}")))?;
    // The fields of one record column.
    snapshot_of(stream, schema_version, fields, [at; 6]).map(Some)
}

/// A snapshot's fields as stored, raw: version, commit, sequence, the recorded-at time of
/// its last event (microseconds, then the nanoseconds below them), payload.
type SnapshotFields<'r> = [Option<&'r [u8]>; 6];

/// A `record` value of `N` fields in binary format: the field count, then for each field
/// its type oid, its length (-1 for NULL) and its bytes.
fn record_fields<const N: usize>(b: &[u8]) -> Result<[Option<&[u8]>; N], String> {
    fn int4(b: &[u8], at: usize) -> Result<i32, String> {
        b.get(at..at + 4)
            .and_then(|x| <[u8; 4]>::try_from(x).ok())
            .map(i32::from_be_bytes)
            .ok_or_else(|| "a record cut short".to_owned())
    }
    if usize::try_from(int4(b, 0)?).ok() != Some(N) {
        return Err(format!("a record of {} fields, not {N}", int4(b, 0)?));
    }
    let mut fields = [None; N];
    let mut at = 4;
    for field in &mut fields {
        // Each field: its type oid (not checked: the statement fixes the types), its length.
        let len = int4(b, at + 4)?;
        at += 8;
        if let Ok(len) = usize::try_from(len) {
            *field = Some(b.get(at..at + len).ok_or("a record cut short")?);
            at += len;
        }
    }
    Ok(fields)
}

/// Decodes the snapshot of `stream` in `schema_version` from its stored fields.
/// `columns` says where each field came from, for errors.
fn snapshot_of(
    stream: &StreamId,
    schema_version: u32,
    f: SnapshotFields<'_>,
    columns: [usize; 6],
) -> Result<Snapshot, StoreError> {
    let field = |i: usize| f[i].ok_or_else(|| format!("column {}: unexpected NULL", columns[i]));
    let version = field(0)
        .and_then(|b| int8_of(columns[0], b))
        .map_err(|e| corrupt(stream, Version::ZERO, format!("snapshot: {e}")))?;
    // A negative version is refused, not read as zero: the repository would fold the
    // stream's events from its start on top of the snapshot's state.
    let version = u64::try_from(version).map(Version::new).map_err(|_| {
        corrupt(
            stream,
            Version::ZERO,
            format!("snapshot: invalid version {version}"),
        )
    })?;
    let c = |e: String| corrupt(stream, version, format!("snapshot: {e}"));
    let commit = field(1).and_then(|b| int8_of(columns[1], b)).map_err(c)?;
    let seq = field(2).and_then(|b| int8_of(columns[2], b)).map_err(c)?;
    let recorded = field(3)
        .and_then(|b| timestamptz_of(columns[3], b))
        .map_err(c)?;
    let nanos = field(4)
        .and_then(|b| fixed_of::<2>(columns[4], b))
        .map(i16::from_be_bytes)
        .map_err(c)?;
    let payload = Bytes::copy_from_slice(field(5).map_err(c)?);
    let bad = |what: &str| corrupt(stream, version, format!("snapshot: invalid {what}"));
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1000)
        .ok_or_else(|| bad("recorded-at nanoseconds"))?;
    let event_recorded_at = recorded
        .with_nanosecond(recorded.timestamp_subsec_micros() * 1000 + nanos)
        .ok_or_else(|| bad("recorded-at time"))?;
    Ok(Snapshot {
        stream: stream.clone(),
        version,
        position: position_from(commit, seq).ok_or_else(|| bad("position"))?,
        event_recorded_at,
        schema_version,
        payload,
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
