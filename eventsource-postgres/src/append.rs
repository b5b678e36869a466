//! Appends: the request as arrays, the direct statements and the call of `append_events`,
//! and turning their rows into a [`Commit`] or a typed error.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use eventsource_core::{
    Commit, CommittedStream, EventId, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StoreError, StreamId, StreamWrite, Version,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::rows::{position_from, to_i64};

/// The request as the arrays `append_events` and the batch statement take, borrowed from the
/// request (no payload is copied).
pub(crate) struct AppendParams<'a> {
    streams: Vec<&'a str>,
    expected: Vec<i64>,
    write_of: Vec<i32>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    schema_versions: Vec<i64>,
    payloads: Vec<&'a [u8]>,
    metadata: Vec<Option<String>>,
}

impl<'a> AppendParams<'a> {
    /// Binds the per-event arrays, in the order both statements take them next: ids, types,
    /// schema versions, payloads, metadata.
    fn bind_events<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q>
    where
        'a: 'q,
    {
        query
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.schema_versions)
            .bind(&self.payloads)
            .bind(&self.metadata)
    }
}

/// A statement with its arguments being bound.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

fn expected_code(e: ExpectedVersion) -> i64 {
    match e {
        ExpectedVersion::Any => -1,
        ExpectedVersion::StreamExists => -2,
        ExpectedVersion::NoStream => 0,
        ExpectedVersion::Exact(v) => to_i64(v.get()),
    }
}

/// An event's metadata as the JSON text its column takes (`None` when empty).
fn metadata_json(e: &NewEvent) -> Result<Option<String>, StoreError> {
    if e.metadata.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(&e.metadata).map(Some).map_err(|err| {
        StoreError::InvalidRequest(format!("event {}: metadata cannot be encoded: {err}", e.id))
    })
}

impl<'a> AppendParams<'a> {
    fn new(writes: &'a [StreamWrite]) -> Result<Self, StoreError> {
        let n: usize = writes.iter().map(|w| w.events.len()).sum();
        let mut p = AppendParams {
            streams: Vec::with_capacity(writes.len()),
            expected: Vec::with_capacity(writes.len()),
            write_of: Vec::with_capacity(n),
            ids: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            schema_versions: Vec::with_capacity(n),
            payloads: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
        };
        for (i, w) in writes.iter().enumerate() {
            p.streams.push(w.stream.as_str());
            p.expected.push(expected_code(w.expected));
            let index = i32::try_from(i + 1)
                .map_err(|_| StoreError::InvalidRequest("too many streams in one append".into()))?;
            for e in &w.events {
                p.write_of.push(index);
                p.ids.push(*e.id.as_uuid());
                p.types.push(&e.event_type);
                p.schema_versions.push(i64::from(e.schema_version));
                p.payloads.push(&e.payload);
                p.metadata.push(metadata_json(e)?);
            }
        }
        Ok(p)
    }
}

/// An append request, with its arrays built on first use: a single-event append at an exact
/// version (every repository command) binds scalars and never needs them.
pub(crate) struct Request<'a> {
    pub(crate) writes: &'a [StreamWrite],
    params: std::sync::OnceLock<AppendParams<'a>>,
}

impl<'a> Request<'a> {
    pub(crate) fn new(writes: &'a [StreamWrite]) -> Self {
        Self {
            writes,
            params: std::sync::OnceLock::new(),
        }
    }

    fn params(&self) -> Result<&AppendParams<'a>, StoreError> {
        if let Some(p) = self.params.get() {
            return Ok(p);
        }
        let built = AppendParams::new(self.writes)?;
        Ok(self.params.get_or_init(|| built))
    }
}

/// One row `append_events` returned.
pub(crate) struct AppendRow {
    status: i16,
    stream: Option<String>,
    version: Option<i64>,
    commit: Option<i64>,
    seq: Option<i64>,
    recorded_at: Option<DateTime<Utc>>,
    id: Option<Uuid>,
    reason: Option<String>,
}

const WRITTEN: i16 = 0;
const ALREADY_STORED: i16 = 1;
const CONFLICT: i16 = 2;
const ID_REUSED: i16 = 3;
const XID_TOO_LARGE: i16 = 4;
const LOCKED: i16 = 5;

fn decode_row(row: &PgRow) -> Result<AppendRow, sqlx::Error> {
    Ok(AppendRow {
        status: row.try_get(0)?,
        stream: row.try_get(1)?,
        version: row.try_get(2)?,
        commit: row.try_get(3)?,
        seq: row.try_get(4)?,
        recorded_at: row.try_get(5)?,
        id: row.try_get(6)?,
        reason: row.try_get(7)?,
    })
}

/// Runs one attempt on `conn` (one round trip): `append_events`, under the streams' locks;
/// `check_ids`: look the event ids up first. Its rows as an outcome.
pub(crate) async fn call(
    conn: &mut PgConnection,
    sql: &crate::sql::Sql,
    request: &Request<'_>,
    check_ids: bool,
) -> Result<Result<Outcome, StoreError>, sqlx::Error> {
    let p = match request.params() {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let query = sqlx::query(&sql.append)
        .bind(&p.streams)
        .bind(&p.expected)
        .bind(&p.write_of);
    let rows = p.bind_events(query).bind(check_ids).fetch_all(conn).await?;
    let rows: Result<Vec<AppendRow>, sqlx::Error> = rows.iter().map(decode_row).collect();
    Ok(outcome(request.writes, rows?))
}

/// The expected version of an append the direct path can take (`Sql::append_one`): one
/// stream at an exact version (`NoStream` is version 0).
pub(crate) fn direct_expected(writes: &[StreamWrite]) -> Option<i64> {
    match writes {
        [w] => match w.expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(to_i64(v.get())),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        },
        _ => None,
    }
}

/// What a direct-path call came to.
pub(crate) enum Direct {
    /// The events were written.
    Written(Outcome),
    /// The stream was not at the expected version; nothing was written.
    Conflict(StoreError),
    /// The stream was not at the expected version and some event ids are stored: only
    /// `append_events` with `check_ids` tells a retried append from a conflict.
    StoredIds,
}

/// Runs the direct path for the request (one write, at `expected`) on `conn`: one round
/// trip, and a second (`conflict_probe`) when one event was not written.
pub(crate) async fn call_direct(
    conn: &mut PgConnection,
    sql: &crate::sql::Sql,
    request: &Request<'_>,
    expected: i64,
) -> Result<Result<Direct, StoreError>, sqlx::Error> {
    let Some(write) = request.writes.first() else {
        return Ok(Err(corrupt_reply("no write")));
    };
    if let [e] = write.events.as_slice() {
        let metadata = match metadata_json(e) {
            Ok(m) => m,
            Err(err) => return Ok(Err(err)),
        };
        let row = sqlx::query(&sql.append_one)
            .bind(write.stream.as_str())
            .bind(expected)
            .bind(e.id.as_uuid())
            .bind(e.event_type.as_str())
            .bind(i64::from(e.schema_version))
            .bind(e.payload.as_ref())
            .bind(metadata)
            .fetch_optional(&mut *conn)
            .await?;
        return match row {
            Some(row) => Ok(one_written(request.writes, write, expected, &row)),
            None => probe_conflict(conn, sql, request, expected).await,
        };
    }
    let p = match request.params() {
        Ok(p) => p,
        Err(err) => return Ok(Err(err)),
    };
    let query = sqlx::query(&sql.append_batch)
        .bind(write.stream.as_str())
        .bind(expected);
    let rows = p.bind_events(query).fetch_all(conn).await?;
    Ok(direct_outcome(request.writes, write, expected, &rows))
}

/// The row of a written one-event direct append: its commit, sequence and recorded-at time.
fn one_written(
    writes: &[StreamWrite],
    write: &StreamWrite,
    expected: i64,
    row: &PgRow,
) -> Result<Direct, StoreError> {
    let bad = |_| corrupt_reply("a direct append row");
    let commit: i64 = row.try_get(0).map_err(bad)?;
    let seq: i64 = row.try_get(1).map_err(bad)?;
    let recorded_at: DateTime<Utc> = row.try_get(2).map_err(bad)?;
    written(writes, write, expected + 1, commit, [seq], recorded_at)
}

/// What a direct append wrote: `write`'s events numbered from version `first` on, in request
/// order, with their sequences, in one commit at one recorded-at time.
fn written(
    writes: &[StreamWrite],
    write: &StreamWrite,
    first: i64,
    commit: i64,
    seqs: impl IntoIterator<Item = i64>,
    recorded_at: DateTime<Utc>,
) -> Result<Direct, StoreError> {
    let first = u64::try_from(first).map_err(|_| corrupt_reply("a version"))?;
    let mut events = Vec::with_capacity(write.events.len());
    for ((version, seq), event) in (first..).zip(seqs).zip(&write.events) {
        events.push(WrittenEvent {
            id: event.id,
            stream: write.stream.clone(),
            version: Version::new(version),
            position: position_from(commit, seq).ok_or_else(|| corrupt_reply("a position"))?,
            recorded_at,
        });
    }
    if events.len() != write.events.len() {
        return Err(corrupt_reply("fewer sequences than events"));
    }
    let commit = commit_of(writes, &events);
    Ok(Direct::Written(Outcome::Written(commit, events)))
}

/// Why a direct append at `expected` on `write` wrote nothing: its stream is at `actual`;
/// `locked`: another session holds the stream's writers' lock. A stream at the expected
/// version that was not written was kept out by the lock.
fn not_written(write: &StreamWrite, expected: i64, actual: i64, locked: bool) -> Direct {
    if locked && actual == expected {
        return Direct::Conflict(StoreError::StreamLocked {
            stream: write.stream.clone(),
        });
    }
    Direct::Conflict(StoreError::Conflict {
        stream: write.stream.clone(),
        expected: write.expected,
        actual: Version::new(u64::try_from(actual).unwrap_or(0)),
    })
}

fn direct_outcome(
    writes: &[StreamWrite],
    write: &StreamWrite,
    expected: i64,
    rows: &[PgRow],
) -> Result<Direct, StoreError> {
    let bad = |_| corrupt_reply("a direct append row");
    let [row] = rows else {
        return Err(corrupt_reply("not one row"));
    };
    let seqs: Option<Vec<i64>> = row.try_get(3).map_err(bad)?;
    let Some(seqs) = seqs else {
        let stored: Option<bool> = row.try_get(5).map_err(bad)?;
        if stored == Some(true) {
            return Ok(Direct::StoredIds);
        }
        let actual: i64 = row.try_get(0).map_err(bad)?;
        let locked: Option<bool> = row.try_get(6).map_err(bad)?;
        return Ok(not_written(write, expected, actual, locked == Some(true)));
    };
    let first: Option<i64> = row.try_get(1).map_err(bad)?;
    let commit: Option<i64> = row.try_get(2).map_err(bad)?;
    let recorded_at: Option<DateTime<Utc>> = row.try_get(4).map_err(bad)?;
    let (Some(first), Some(commit), Some(recorded_at)) = (first, commit, recorded_at) else {
        return Err(corrupt_reply("a null column"));
    };
    if first != expected + 1 || seqs.len() != write.events.len() {
        return Err(corrupt_reply("versions outside the append"));
    }
    // The events were numbered from the expected version on, in request order.
    written(writes, write, first, commit, seqs, recorded_at)
}

/// After a one-event direct append at `expected` wrote nothing, or a direct append met
/// [`is_version_taken`](crate::errors::is_version_taken): a conflict with the stream's actual version, the stream locked by
/// another session, or [`Direct::StoredIds`] when some event ids are stored (one read-only
/// round trip: cheaper than deciding it in `append_events`).
pub(crate) async fn probe_conflict(
    conn: &mut PgConnection,
    sql: &crate::sql::Sql,
    request: &Request<'_>,
    expected: i64,
) -> Result<Result<Direct, StoreError>, sqlx::Error> {
    let Some(write) = request.writes.first() else {
        return Ok(Err(corrupt_reply("no write")));
    };
    let ids: Vec<Uuid> = write.events.iter().map(|e| *e.id.as_uuid()).collect();
    let (actual, stored, locked): (i64, bool, bool) = sqlx::query_as(&sql.conflict_probe)
        .bind(write.stream.as_str())
        .bind(&ids)
        .fetch_one(conn)
        .await?;
    Ok(Ok(if stored {
        Direct::StoredIds
    } else {
        not_written(write, expected, actual, locked)
    }))
}

fn corrupt_reply(what: &str) -> StoreError {
    StoreError::backend(
        "appending",
        false,
        format!("append_events returned an impossible row: {what}"),
    )
}

/// What an append came to.
pub(crate) enum Outcome {
    /// The events were written in this call.
    Written(Commit, Vec<WrittenEvent>),
    /// The events were already stored: the original commit.
    AlreadyStored(Commit),
}

/// Where one written event landed.
pub(crate) struct WrittenEvent {
    pub(crate) id: EventId,
    pub(crate) stream: StreamId,
    pub(crate) version: Version,
    pub(crate) position: Position,
    pub(crate) recorded_at: DateTime<Utc>,
}

/// Interprets the rows of one call.
pub(crate) fn outcome(writes: &[StreamWrite], rows: Vec<AppendRow>) -> Result<Outcome, StoreError> {
    let Some(first) = rows.first() else {
        return Err(corrupt_reply("no rows"));
    };
    match first.status {
        CONFLICT => {
            let stream = StreamId::new(first.stream.clone().unwrap_or_default());
            let expected = writes
                .iter()
                .find(|w| w.stream == stream)
                .map_or(ExpectedVersion::Any, |w| w.expected);
            let actual = Version::new(
                first
                    .version
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
            );
            Err(StoreError::Conflict {
                stream,
                expected,
                actual,
            })
        }
        ID_REUSED => Err(StoreError::EventIdReused {
            id: EventId::from_uuid(first.id.unwrap_or_default()),
            stored_stream: StreamId::new(first.stream.clone().unwrap_or_default()),
            reason: first.reason.clone().unwrap_or_default(),
        }),
        LOCKED => Err(StoreError::StreamLocked {
            stream: StreamId::new(first.stream.clone().unwrap_or_default()),
        }),
        XID_TOO_LARGE => Err(StoreError::Config(format!(
            "the cluster's xid8 {} does not fit a position (2^48)",
            first.commit.unwrap_or_default()
        ))),
        WRITTEN | ALREADY_STORED => {
            let status = first.status;
            let mut events = Vec::with_capacity(rows.len());
            for r in rows {
                if r.status != status {
                    return Err(corrupt_reply("mixed statuses"));
                }
                let (Some(stream), Some(version), Some(commit), Some(seq), Some(at), Some(id)) =
                    (r.stream, r.version, r.commit, r.seq, r.recorded_at, r.id)
                else {
                    return Err(corrupt_reply("a null column"));
                };
                let version = u64::try_from(version).map_err(|_| corrupt_reply("a version"))?;
                events.push(WrittenEvent {
                    id: EventId::from_uuid(id),
                    stream: StreamId::new(stream),
                    version: Version::new(version),
                    position: position_from(commit, seq)
                        .ok_or_else(|| corrupt_reply("a position"))?,
                    recorded_at: at,
                });
            }
            let commit = commit_of(writes, &events);
            Ok(if status == WRITTEN {
                Outcome::Written(commit, events)
            } else {
                Outcome::AlreadyStored(commit)
            })
        }
        other => Err(corrupt_reply(&format!("status {other}"))),
    }
}

/// The commit describing `events` (in any order), streams in the order of the request.
fn commit_of(writes: &[StreamWrite], events: &[WrittenEvent]) -> Commit {
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
pub(crate) fn recorded(writes: &[StreamWrite], written: &[WrittenEvent]) -> Vec<RecordedEvent> {
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
