//! The direct append: one stream at an exact version, one plain statement that takes no lock
//! (`Sql::append_one` for one event, `Sql::append_batch` for more), and the read-only probe
//! that explains an append it did not write.

use chrono::{DateTime, Utc};
use eventsource_core::{ExpectedVersion, NewEvent, StoreError, StreamWrite, Version};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::AttemptError;
use super::outcome::{Outcome, WrittenEvent, commit_of, corrupt_reply};
use super::request::{Request, metadata_json};
use crate::errors::is_version_taken;
use crate::rows::{position_from, to_i64};
use crate::sql::Sql;

/// The expected version of an append the direct path can take (`Sql::append_one`): one
/// stream at an exact version (`NoStream` is version 0).
pub(super) fn expected(writes: &[StreamWrite]) -> Option<i64> {
    match writes {
        [w] => match w.expected {
            ExpectedVersion::NoStream => Some(0),
            ExpectedVersion::Exact(v) => Some(to_i64(v.get())),
            ExpectedVersion::Any | ExpectedVersion::StreamExists => None,
        },
        _ => None,
    }
}

/// What a direct append came to, when it neither failed nor met a conflict (those are
/// errors).
pub(super) enum Direct {
    /// The events were written.
    Written(Outcome),
    /// Nothing was written, and the direct statements cannot tell why: some event ids are
    /// stored (a retried append, or a conflict), or the stream is at the expected version
    /// and no longer locked (the writers' lock that kept the insert out was released, or a
    /// writer caught the stream up, before the look at why). Only `append_events` with
    /// `check_ids`, under the locks, decides.
    Undecided,
}

/// Runs the direct path for the request (one write, at `expected`) on `conn`: one round
/// trip, and a second ([`probe`]) when one event was not written or the insert lost the race
/// for its version (`in_transaction`: `conn` is in a transaction, which that failed insert
/// aborted; the caller retries through `append_events` instead). A transaction is for inline
/// projections, which are handed every event's position: the append lists them (a batch
/// whose sequences another insert interleaved reads them in a second round trip); outside
/// one, only the commit is built, from the first and last events.
pub(super) async fn append(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &Request<'_>,
    expected: i64,
    in_transaction: bool,
) -> Result<Direct, AttemptError> {
    let Some(write) = request.writes.first() else {
        return Err(corrupt_reply("no write").into());
    };
    match insert(conn, sql, request, write, expected, in_transaction).await {
        Err(AttemptError::Sql(e)) if is_version_taken(&e) && !in_transaction => {
            probe(conn, sql, write, expected).await
        }
        other => other,
    }
}

/// The direct statement for the request, whose one write is `write`. `each_position`: the
/// caller needs every event's position (inline projections), not only the commit's.
async fn insert(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &Request<'_>,
    write: &StreamWrite,
    expected: i64,
    each_position: bool,
) -> Result<Direct, AttemptError> {
    let span = if let [e] = write.events.as_slice() {
        let row = sqlx::query(&sql.append_one)
            .bind(write.stream.as_str())
            .bind(expected)
            .bind(e.id.as_uuid())
            .bind(e.event_type.as_str())
            .bind(i64::from(e.schema_version))
            .bind(e.payload.as_ref())
            .bind(metadata_json(e)?)
            .fetch_optional(&mut *conn)
            .await?;
        match row {
            Some(row) => one_span(&row)?,
            None => return probe(conn, sql, write, expected).await,
        }
    } else {
        let query = request.batch_query(&sql.append_batch, write, expected)?;
        let rows = query.fetch_all(&mut *conn).await?;
        match batch_span(write, expected, &rows)? {
            Some(span) => span,
            None => return Ok(Direct::Undecided),
        }
    };
    if !each_position {
        return Ok(span.commit_of(request.writes, write, expected + 1)?);
    }
    let count = i64::try_from(write.events.len()).map_err(|_| corrupt_reply("a count"))?;
    let seqs: Vec<i64> = if span.last_seq.checked_sub(span.first_seq) == Some(count - 1) {
        // The events took the sequences from the first to the last.
        (span.first_seq..=span.last_seq).collect()
    } else {
        // A concurrent insert took some in between: read them, in the append's own
        // transaction (its rows, whatever commits meanwhile).
        let last = expected
            .checked_add(count)
            .ok_or_else(|| corrupt_reply("a version"))?;
        let seqs: Vec<i64> = sqlx::query_scalar(&sql.batch_seqs)
            .bind(write.stream.as_str())
            .bind(expected)
            .bind(last)
            .fetch_all(conn)
            .await?;
        if seqs.len() != write.events.len()
            || seqs.first() != Some(&span.first_seq)
            || seqs.last() != Some(&span.last_seq)
        {
            return Err(corrupt_reply("sequences other than the append's").into());
        }
        seqs
    };
    Ok(written(
        request.writes,
        write,
        expected + 1,
        span.commit,
        seqs,
        span.recorded_at,
    )?)
}

/// Where a direct append's events landed: one commit part, the first and last event's
/// sequences (rising with the versions), one recorded-at time.
struct Span {
    commit: i64,
    first_seq: i64,
    last_seq: i64,
    recorded_at: DateTime<Utc>,
}

impl Span {
    /// The outcome of `write`, written from version `first` on, without each event's
    /// position: its first and last events say where the commit begins and ends, which is
    /// all a caller without inline projections is handed.
    fn commit_of(
        &self,
        writes: &[StreamWrite],
        write: &StreamWrite,
        first: i64,
    ) -> Result<Direct, StoreError> {
        let (Some(head), Some(tail)) = (write.events.first(), write.events.last()) else {
            return Err(corrupt_reply("no events"));
        };
        let first = u64::try_from(first).map_err(|_| corrupt_reply("a version"))?;
        let count = u64::try_from(write.events.len()).map_err(|_| corrupt_reply("a count"))?;
        let end = |event: &NewEvent, version: u64, seq: i64| {
            Ok::<_, StoreError>(WrittenEvent {
                id: event.id,
                stream: write.stream.clone(),
                version: Version::new(version),
                position: position_from(self.commit, seq)
                    .ok_or_else(|| corrupt_reply("a position"))?,
                recorded_at: self.recorded_at,
            })
        };
        let ends = [
            end(head, first, self.first_seq)?,
            end(tail, first + count - 1, self.last_seq)?,
        ];
        Ok(Direct::Written(Outcome::Written(
            commit_of(writes, &ends),
            Vec::new(),
        )))
    }
}

/// The row of a written one-event direct append: its commit, sequence and recorded-at time.
fn one_span(row: &PgRow) -> Result<Span, StoreError> {
    let bad = |_| corrupt_reply("a direct append row");
    let seq: i64 = row.try_get(1).map_err(bad)?;
    Ok(Span {
        commit: row.try_get(0).map_err(bad)?,
        first_seq: seq,
        last_seq: seq,
        recorded_at: row.try_get(2).map_err(bad)?,
    })
}

/// The row of a batch direct append: where it landed, or, when it wrote nothing, a conflict,
/// the stream locked, or `None` ([`Direct::Undecided`]).
fn batch_span(
    write: &StreamWrite,
    expected: i64,
    rows: &[PgRow],
) -> Result<Option<Span>, StoreError> {
    let bad = |_| corrupt_reply("a direct append row");
    let [row] = rows else {
        return Err(corrupt_reply("not one row"));
    };
    let actual: i64 = row.try_get(0).map_err(bad)?;
    let count: i64 = row.try_get(1).map_err(bad)?;
    if count == 0 {
        let stored: Option<bool> = row.try_get(6).map_err(bad)?;
        let locked: Option<bool> = row.try_get(7).map_err(bad)?;
        let (stored, locked) = (stored == Some(true), locked == Some(true));
        return match not_written(write, expected, actual, stored, locked) {
            Some(error) => Err(error),
            None => Ok(None),
        };
    }
    let commit: Option<i64> = row.try_get(2).map_err(bad)?;
    let first_seq: Option<i64> = row.try_get(3).map_err(bad)?;
    let last_seq: Option<i64> = row.try_get(4).map_err(bad)?;
    let recorded_at: Option<DateTime<Utc>> = row.try_get(5).map_err(bad)?;
    let (Some(commit), Some(first_seq), Some(last_seq), Some(recorded_at)) =
        (commit, first_seq, last_seq, recorded_at)
    else {
        return Err(corrupt_reply("a null column"));
    };
    if actual != expected || usize::try_from(count).ok() != Some(write.events.len()) {
        return Err(corrupt_reply("versions outside the append"));
    }
    Ok(Some(Span {
        commit,
        first_seq,
        last_seq,
        recorded_at,
    }))
}

/// What a direct append wrote: `write`'s events numbered from version `first` on, in request
/// order, with their sequences, in one commit at one recorded-at time.
pub(super) fn written(
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

/// Why a direct append of `write` at `expected` wrote nothing, from the stream's version
/// `actual`, whether any of its ids is `stored` and whether another session holds the
/// stream's writers' lock (each read after the insert, so the lock may have gone since): a
/// conflict, or the stream locked; `None` when that does not tell ([`Direct::Undecided`]: an
/// id is stored, or the stream is at the expected version with no lock left to have kept the
/// insert out).
pub(super) fn not_written(
    write: &StreamWrite,
    expected: i64,
    actual: i64,
    stored: bool,
    locked: bool,
) -> Option<StoreError> {
    if stored || (actual == expected && !locked) {
        return None;
    }
    if locked && actual == expected {
        return Some(StoreError::StreamLocked {
            stream: write.stream.clone(),
        });
    }
    Some(StoreError::Conflict {
        stream: write.stream.clone(),
        expected: write.expected,
        actual: Version::new(u64::try_from(actual).unwrap_or(0)),
    })
}

/// After a one-event direct append of `write` at `expected` wrote nothing, or a direct
/// append met [`is_version_taken`]: a conflict with the stream's actual version, the stream
/// locked by another session, or [`Direct::Undecided`] (one read-only round trip: cheaper
/// than deciding it in `append_events`).
async fn probe(
    conn: &mut PgConnection,
    sql: &Sql,
    write: &StreamWrite,
    expected: i64,
) -> Result<Direct, AttemptError> {
    let ids: Vec<Uuid> = write.events.iter().map(|e| *e.id.as_uuid()).collect();
    let (actual, stored, locked): (i64, bool, bool) = sqlx::query_as(&sql.conflict_probe)
        .bind(write.stream.as_str())
        .bind(&ids)
        .fetch_one(conn)
        .await?;
    match not_written(write, expected, actual, stored, locked) {
        Some(error) => Err(error.into()),
        None => Ok(Direct::Undecided),
    }
}
