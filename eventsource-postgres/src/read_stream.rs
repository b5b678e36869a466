//! Stream reads: a stream's events (whole, or what a fold needs), bounded by a version or a
//! time, streamed from one query that a failure midway resumes after the last event handed
//! out; and a stream's current version.

use eventsource_core::store::input;
use eventsource_core::{
    FoldEvent, FoldItem, ReadUntil, RecordedEvent, StoreError, StreamId, Version,
};
use futures::stream::{BoxStream, TryStreamExt};
use sqlx::postgres::PgRow;

use crate::errors::backend;
use crate::read::Reader;
use crate::rows::{self, to_i64};

/// The events of `stream` from `from` to `until`.
pub(crate) fn events<'a>(
    reader: Reader<'a>,
    stream: &'a StreamId,
    from: Version,
    until: ReadUntil,
) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
    stream_rows(
        reader,
        &reader.sql().read_stream,
        stream,
        from,
        until,
        |row, s| rows::event_of(row, 0, s.clone()),
    )
}

/// What a fold needs of the events of `stream` from `from` to `until`.
pub(crate) fn fold_events<'a>(
    reader: Reader<'a>,
    stream: &'a StreamId,
    from: Version,
    until: ReadUntil,
) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
    stream_rows(
        reader,
        &reader.sql().read_stream_fold,
        stream,
        from,
        until,
        rows::fold_event,
    )
}

/// The newest snapshot of `stream` in `schema_version` at or below `last` (a version; `None`:
/// the end), then
/// what a fold needs of the events from its version on: one query (`read_from_snapshot`),
/// streamed as [`stream_rows`] streams. A failure before its first row runs it again; one
/// after it goes on with `read_stream_fold` after the last event handed out (the snapshot,
/// once handed out, stays the one the read started from).
pub(crate) fn from_snapshot<'a>(
    reader: Reader<'a>,
    stream: &'a StreamId,
    schema_version: u32,
    last: Option<Version>,
) -> BoxStream<'a, Result<FoldItem, StoreError>> {
    let last = last.map_or(i64::MAX, |v| to_i64(v.get()));
    Box::pin(async_stream::try_stream! {
        input::check_stream(stream)?;
        // The next version to read once the snapshot is handed out; `None` before.
        let mut next: Option<i64> = None;
        let mut retry = reader.retry();
        loop {
            let failed = match reader.conns().get().await {
                Err(e) => e,
                Ok(mut conn) => {
                    let mut rows = match next {
                        None => sqlx::query(&reader.sql().read_from_snapshot)
                            .bind(stream.as_str())
                            .bind(i64::from(schema_version))
                            .bind(last),
                        Some(from) => sqlx::query(&reader.sql().read_stream_fold)
                            .bind(stream.as_str())
                            .bind(from)
                            .bind(last),
                    }
                    .fetch(&mut *conn);
                    let failed = loop {
                        match rows.try_next().await {
                            Ok(Some(row)) => {
                                if next.is_none() {
                                    let snapshot =
                                        rows::snapshot_at(&row, stream, schema_version, 6)?;
                                    next = Some(snapshot.as_ref().map_or(1, |s| to_i64(s.version.get())));
                                    yield FoldItem::Snapshot(snapshot);
                                    if !rows::has_event(&row, stream)? {
                                        // The snapshot alone: its stream does not hold it.
                                        continue;
                                    }
                                }
                                let event = rows::fold_event(&row, stream)?;
                                next = Some(to_i64(event.version.get()).saturating_add(1));
                                yield FoldItem::Event(event);
                            }
                            Ok(None) => break None,
                            Err(e) => break Some(e),
                        }
                    };
                    drop(rows);
                    match failed {
                        None => {
                            conn.keep();
                            if next.is_none() {
                                yield FoldItem::Snapshot(None);
                            }
                            return;
                        }
                        Some(e) => e,
                    }
                }
            };
            if !retry.again("reading a stream from its snapshot", &failed).await {
                Err(backend("reading a stream from its snapshot", failed))?;
            }
        }
    })
}

/// The stream's current version (zero for a stream with no events).
pub(crate) async fn version(reader: Reader<'_>, stream: &StreamId) -> Result<Version, StoreError> {
    input::check_stream(stream)?;
    let v: Option<i64> = reader
        .retrying("reading a stream version", || {
            reader.conns().run(async |c| {
                sqlx::query_scalar(&reader.sql().stream_version)
                    .bind(stream.as_str())
                    .fetch_optional(c)
                    .await
            })
        })
        .await?;
    Ok(Version::new(
        v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
    ))
}

/// The rows of `stream` from `from` to `until` through `sql` (parameters: the stream, the
/// first and the last version), decoded by `decode`. One streamed query: rows are decoded
/// as they arrive from the socket, so memory holds what the consumer has not taken yet
/// (the socket's buffers), not the stream; a slow consumer stops the server through TCP
/// backpressure.
fn stream_rows<'a, T: Versioned + Send + 'a>(
    reader: Reader<'a>,
    sql: &'a str,
    stream: &'a StreamId,
    from: Version,
    until: ReadUntil,
    decode: fn(&PgRow, &StreamId) -> Result<T, StoreError>,
) -> BoxStream<'a, Result<T, StoreError>> {
    let mut next = to_i64(from.get().max(1));
    Box::pin(async_stream::try_stream! {
        input::check_stream(stream)?;
        let Some(last) = last_version(reader, stream, until).await? else {
            return;
        };
        let mut retry = reader.retry();
        loop {
            // One query from `next` on; after a failure that retrying may fix, another
            // query on a fresh connection goes on after the last event handed out.
            let failed = match reader.conns().get().await {
                Err(e) => e,
                Ok(mut conn) => {
                    let mut rows = sqlx::query(sql)
                        .bind(stream.as_str())
                        .bind(next)
                        .bind(last)
                        .fetch(&mut *conn);
                    let failed = loop {
                        match rows.try_next().await {
                            Ok(Some(row)) => {
                                let item = decode(&row, stream)?;
                                next = to_i64(item.version().get()).saturating_add(1);
                                yield item;
                            }
                            Ok(None) => break None,
                            Err(e) => break Some(e),
                        }
                    };
                    drop(rows);
                    match failed {
                        None => {
                            conn.keep();
                            return;
                        }
                        Some(e) => e,
                    }
                }
            };
            if !retry.again("reading a stream", &failed).await {
                Err(backend("reading a stream", failed))?;
            }
        }
    })
}

/// The last version a stream read may return, or `None` when there is nothing to read.
async fn last_version(
    reader: Reader<'_>,
    stream: &StreamId,
    until: ReadUntil,
) -> Result<Option<i64>, StoreError> {
    match until {
        ReadUntil::End => Ok(Some(i64::MAX)),
        ReadUntil::Version(v) => Ok(Some(to_i64(v.get()))),
        ReadUntil::Time(t) => {
            let last: i64 = reader
                .retrying("finding the version at a time", || {
                    reader.conns().run(async |c| {
                        sqlx::query_scalar(&reader.sql().version_at_time)
                            .bind(stream.as_str())
                            .bind(t)
                            .fetch_one(c)
                            .await
                    })
                })
                .await?;
            Ok((last > 0).then_some(last))
        }
    }
}

/// What a stream read hands out: it knows its version, where a retried read goes on from.
trait Versioned {
    fn version(&self) -> Version;
}

impl Versioned for RecordedEvent {
    fn version(&self) -> Version {
        self.version
    }
}

impl Versioned for FoldEvent {
    fn version(&self) -> Version {
        self.version
    }
}
