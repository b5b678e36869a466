//! The locked append: a call of `append_events` (migration 0006), which takes the written
//! streams' locks in one fixed order and checks the versions under them, and its rows as an
//! outcome.

use chrono::{DateTime, Utc};
use eventsource_core::{EventId, ExpectedVersion, StoreError, StreamId, StreamWrite, Version};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::AttemptError;
use super::outcome::{Outcome, WrittenEvent, commit_of, corrupt_reply};
use super::request::Request;
use crate::rows::position_from;
use crate::sql::Sql;

/// Runs one attempt on `conn` (one round trip): `append_events`, under the streams' locks;
/// `check_ids`: look the event ids up first. Its rows as an outcome.
pub(super) async fn append(
    conn: &mut PgConnection,
    sql: &Sql,
    request: &Request<'_>,
    check_ids: bool,
) -> Result<Outcome, AttemptError> {
    let query = request.locked_query(&sql.append, check_ids)?;
    let rows = query.fetch_all(conn).await?;
    let rows = rows.iter().map(decode_row).collect::<Result<Vec<_>, _>>()?;
    Ok(outcome(request.writes, rows)?)
}

/// One row `append_events` returned.
struct AppendRow {
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

/// Interprets the rows of one call.
fn outcome(writes: &[StreamWrite], rows: Vec<AppendRow>) -> Result<Outcome, StoreError> {
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
