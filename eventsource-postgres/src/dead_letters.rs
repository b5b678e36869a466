//! Dead letters in the `dead_letters` table (migration 0007): writing a call's changes in one
//! statement, on a connection the caller chooses (a projection batch writes its letters in its
//! own transaction), and listing them with their events.

use std::collections::HashMap;

use eventsource_core::store::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, DeadLetterReason, Resolution, ResolutionKind,
    input,
};
use eventsource_core::{EventId, RecordedEvent, StoreError};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::read::Reader;
use crate::rows::{self, Binary, position_params, to_i64};
use crate::sql::Sql;

/// What one call's changes do to the letter of one event id, found by applying them in
/// order (so one statement can write them: `Sql::write_dead_letters`).
struct Net<'a> {
    id: EventId,
    /// The last failure: its event and why.
    failed: Option<(&'a RecordedEvent, DeadLetterReason, &'a str)>,
    /// How many failures.
    failures: u32,
    /// The kind of the first resolution after the last failure (or, with no failure, of the
    /// first resolution): a later one finds the letter resolved already and leaves it.
    resolution: Option<ResolutionKind>,
}

/// `changes` collapsed to one [`Net`] per event id, in the order of the ids (so concurrent
/// writes of the same letters lock their rows in one order).
fn collapse(changes: &[DeadLetterChange]) -> Vec<Net<'_>> {
    let mut nets: Vec<Net<'_>> = Vec::new();
    let mut index: HashMap<EventId, usize> = HashMap::new();
    for change in changes {
        let (id, failed, resolved) = match change {
            DeadLetterChange::Failed {
                event,
                reason,
                error,
            } => (event.id, Some((event, *reason, error.as_str())), None),
            DeadLetterChange::Resolved { event_id, kind } => (*event_id, None, Some(*kind)),
            // A change of a kind this store does not know yet writes nothing.
            _ => continue,
        };
        let at = *index.entry(id).or_insert_with(|| {
            nets.push(Net {
                id,
                failed: None,
                failures: 0,
                resolution: None,
            });
            nets.len() - 1
        });
        let net = &mut nets[at];
        if let Some(failed) = failed {
            net.failed = Some(failed);
            net.failures = net.failures.saturating_add(1);
            // A failure makes the letter pending again.
            net.resolution = None;
        }
        if let Some(kind) = resolved {
            net.resolution.get_or_insert(kind);
        }
    }
    nets.sort_by_key(|n| *n.id.as_uuid());
    nets
}

/// Applies `changes` to the dead letters of `projection` on `conn`, in one statement (all or
/// none, as if applied in order). The input is the caller's to check
/// (`input::check_dead_letters`).
pub(crate) async fn write(
    conn: &mut PgConnection,
    sql: &Sql,
    projection: &str,
    changes: &[DeadLetterChange],
) -> Result<(), sqlx::Error> {
    let nets = collapse(changes);
    if nets.is_empty() {
        return Ok(());
    }
    let mut f_ids: Vec<Uuid> = Vec::new();
    let mut f_commits: Vec<i64> = Vec::new();
    let mut f_seqs: Vec<i64> = Vec::new();
    let mut f_streams: Vec<&str> = Vec::new();
    let mut f_reasons: Vec<&str> = Vec::new();
    let mut f_errors: Vec<&str> = Vec::new();
    let mut f_failures: Vec<i32> = Vec::new();
    let mut f_resolutions: Vec<Option<&str>> = Vec::new();
    let mut r_ids: Vec<Uuid> = Vec::new();
    let mut r_kinds: Vec<&str> = Vec::new();
    for net in &nets {
        match net.failed {
            Some((event, reason, error)) => {
                let (c, s) = position_params(event.position);
                f_ids.push(*net.id.as_uuid());
                f_commits.push(c);
                f_seqs.push(s);
                f_streams.push(event.stream.as_str());
                f_reasons.push(reason.as_str());
                f_errors.push(error);
                f_failures.push(i32::try_from(net.failures).unwrap_or(i32::MAX));
                f_resolutions.push(net.resolution.map(ResolutionKind::as_str));
            }
            None => {
                if let Some(kind) = net.resolution {
                    r_ids.push(*net.id.as_uuid());
                    r_kinds.push(kind.as_str());
                }
            }
        }
    }
    sqlx::query(&sql.write_dead_letters)
        .bind(projection)
        .bind(f_ids)
        .bind(f_commits)
        .bind(f_seqs)
        .bind(f_streams)
        .bind(f_reasons)
        .bind(f_errors)
        .bind(f_failures)
        .bind(f_resolutions)
        .bind(r_ids)
        .bind(r_kinds)
        .execute(conn)
        .await?;
    Ok(())
}

/// [`EventStore::write_dead_letters`](eventsource_core::EventStore::write_dead_letters): the
/// input checked, then [`write`] on a connection the store keeps, retried like a read.
pub(crate) async fn save(
    reader: Reader<'_>,
    projection: &str,
    changes: &[DeadLetterChange],
) -> Result<(), StoreError> {
    input::check_dead_letters(projection, changes)?;
    if changes.is_empty() {
        return Ok(());
    }
    let sql = reader.sql();
    reader
        .run("writing dead letters", async |c| {
            write(c, sql, projection, changes).await
        })
        .await
}

/// [`EventStore::dead_letters`](eventsource_core::EventStore::dead_letters): the letters of
/// `projection` that `query` selects, in position order, with their events.
pub(crate) async fn list(
    reader: Reader<'_>,
    projection: &str,
    query: &DeadLetterQuery,
) -> Result<Vec<DeadLetter>, StoreError> {
    input::check_dead_letter_query(projection, query)?;
    let sql = reader.sql();
    let statement = if query.pending_only {
        &sql.pending_dead_letters
    } else {
        &sql.dead_letters
    };
    let (c, s) = position_params(query.after);
    let limit = to_i64(u64::try_from(query.limit.max(1)).unwrap_or(u64::MAX));
    let stream = query.stream.as_ref().map(|s| s.as_str());
    let found = reader
        .run("reading dead letters", async |conn| {
            sqlx::query(statement)
                .bind(projection)
                .bind(c)
                .bind(s)
                .bind(limit)
                .bind(stream)
                .fetch_all(conn)
                .await
        })
        .await?;
    found.iter().map(|r| letter(r, projection)).collect()
}

/// Decodes a row of `Sql::dead_letters`: the event (`rows::event`), then reason, error,
/// attempts, first and last failure, resolution and its time.
fn letter(row: &PgRow, projection: &str) -> Result<DeadLetter, StoreError> {
    let event = rows::event(row, 0)?;
    let bad = |e: String| StoreError::Corrupt {
        stream: event.stream.clone(),
        version: event.version,
        reason: format!("dead letter of projection `{projection}`: {e}"),
    };
    let cols = Binary(row);
    let reason = cols.text(10).map_err(bad)?;
    let reason =
        DeadLetterReason::parse(reason).ok_or_else(|| bad(format!("reason `{reason}`")))?;
    let error = cols.text(11).map_err(bad)?.to_owned();
    let attempts = cols.int8(12).map_err(bad)?;
    let attempts = u32::try_from(attempts).map_err(|_| bad(format!("{attempts} attempts")))?;
    let first_failed_at = cols.timestamptz(13).map_err(bad)?;
    let last_failed_at = cols.timestamptz(14).map_err(bad)?;
    let resolution = match cols.opt_text(15).map_err(bad)? {
        None => None,
        Some(kind) => Some(Resolution {
            kind: ResolutionKind::parse(kind).ok_or_else(|| bad(format!("resolution `{kind}`")))?,
            at: cols.timestamptz(16).map_err(bad)?,
        }),
    };
    Ok(DeadLetter {
        projection: projection.to_owned(),
        event,
        reason,
        error,
        attempts,
        first_failed_at,
        last_failed_at,
        resolution,
    })
}
