//! Reads and writes beside the log: snapshots, the core runner's checkpoints, and an event
//! looked up by its id.

use eventsource_core::store::input;
use eventsource_core::{
    EventId, Position, ReadUntil, RecordedEvent, Snapshot, StoreError, StreamId,
};

use crate::read::Reader;
use crate::rows::{self, Bound, position_from, position_params, to_i64};

/// The event stored under `id`, if any.
pub(crate) async fn event_by_id(
    reader: Reader<'_>,
    id: EventId,
) -> Result<Option<RecordedEvent>, StoreError> {
    let row = reader
        .run("reading an event by id", async |c| {
            sqlx::query(&reader.sql().event_by_id)
                .bind(id.as_uuid())
                .fetch_optional(c)
                .await
        })
        .await?;
    row.map(|r| rows::event(&r, 0)).transpose()
}

/// Stores `snapshot`, replacing one of the same stream, schema version and version.
pub(crate) async fn save_snapshot(
    reader: Reader<'_>,
    snapshot: Snapshot,
) -> Result<(), StoreError> {
    input::check_stream(&snapshot.stream)?;
    let (commit, seq) = position_params(snapshot.position);
    let (at, at_ns) = rows::split_nanos(snapshot.event_recorded_at);
    reader
        .run("saving a snapshot", async |c| {
            sqlx::query(&reader.sql().save_snapshot)
                .bind(snapshot.stream.as_str())
                .bind(to_i64(snapshot.version.get()))
                .bind(i64::from(snapshot.schema_version))
                .bind(commit)
                .bind(seq)
                .bind(at)
                .bind(at_ns)
                .bind(snapshot.payload.as_ref())
                .execute(c)
                .await
        })
        .await?;
    Ok(())
}

/// The newest snapshot of `stream` in `schema_version` at or before `until`.
pub(crate) async fn load_snapshot(
    reader: Reader<'_>,
    stream: &StreamId,
    schema_version: u32,
    until: ReadUntil,
) -> Result<Option<Snapshot>, StoreError> {
    input::check_stream(stream)?;
    let sql = reader.sql();
    let row = reader
        .run("loading a snapshot", async |c| {
            let query = match rows::bound(until) {
                Bound::Version(last) => sqlx::query(&sql.load_snapshot_version)
                    .bind(stream.as_str())
                    .bind(i64::from(schema_version))
                    .bind(last),
                Bound::Time(t) => {
                    let (at, at_ns) = rows::split_nanos(t);
                    sqlx::query(&sql.load_snapshot_time)
                        .bind(stream.as_str())
                        .bind(i64::from(schema_version))
                        .bind(at)
                        .bind(at_ns)
                }
            };
            query.fetch_optional(c).await
        })
        .await?;
    row.map(|r| rows::snapshot(&r)).transpose()
}

/// The checkpoint saved under `name`, if any.
pub(crate) async fn load_checkpoint(
    reader: Reader<'_>,
    name: &str,
) -> Result<Option<Position>, StoreError> {
    input::check_checkpoint(name)?;
    let row: Option<(i64, i64)> = reader
        .run("loading a checkpoint", async |c| {
            sqlx::query_as(&reader.sql().load_checkpoint)
                .bind(name)
                .fetch_optional(c)
                .await
        })
        .await?;
    match row {
        None => Ok(None),
        Some((c, s)) => checkpoint_from(name, c, s).map(Some),
    }
}

/// Saves the checkpoint `name` at `position` (see the crate docs' "Checkpoints" for when it
/// waits for its commit to be flushed).
pub(crate) async fn save_checkpoint(
    reader: Reader<'_>,
    name: &str,
    position: Position,
) -> Result<(), StoreError> {
    input::check_checkpoint(name)?;
    let (c, s) = position_params(position);
    reader
        .run("saving a checkpoint", async |conn| {
            sqlx::query(&reader.sql().save_checkpoint)
                .bind(name)
                .bind(c)
                .bind(s)
                .execute(conn)
                .await
        })
        .await?;
    Ok(())
}

/// The position a checkpoint row of `name` holds: a row with an impossible one is
/// [`StoreError::CorruptCheckpoint`], never read as another position.
pub(crate) fn checkpoint_from(name: &str, commit: i64, seq: i64) -> Result<Position, StoreError> {
    position_from(commit, seq).ok_or_else(|| StoreError::CorruptCheckpoint {
        name: name.to_owned(),
        reason: format!("the position {commit}.{seq} is impossible"),
    })
}
