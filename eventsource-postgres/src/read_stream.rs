//! Stream reads: a stream's events (whole, or what a fold needs), bounded by a version or a
//! time, and a load's newest snapshot with the events after it; each streamed from one query
//! that a failure midway resumes after the last event handed out ([`streamed`]); and a
//! stream's current version.

use eventsource_core::store::input;
use eventsource_core::{
    FoldEvent, FoldItem, ReadUntil, RecordedEvent, StoreError, StreamId, Version,
};
use futures::stream::{BoxStream, TryStreamExt};
use sqlx::postgres::PgRow;

use crate::errors::backend;
use crate::read::Reader;
use crate::rows::{self, Bound, to_i64};
use crate::sql::Sql;

/// The events of `stream` from `from` to `until`.
pub(crate) fn events<'a>(
    reader: Reader<'a>,
    stream: &'a StreamId,
    from: Version,
    until: ReadUntil,
) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
    stream_rows(
        reader,
        |sql| &sql.read_stream,
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
        |sql| &sql.read_stream_fold,
        stream,
        from,
        until,
        rows::fold_event,
    )
}

/// The newest snapshot of `stream` in `schema_version` at or below version `last`, then what a fold needs of the events from its version on: one query
/// (`read_from_snapshot`), streamed as [`streamed`] streams. A failure before its first row
/// runs it again; one after it goes on with `read_stream_fold` after the last event handed
/// out (the snapshot, once handed out, stays the one the read started from).
pub(crate) fn from_snapshot<'a>(
    reader: Reader<'a>,
    stream: &'a StreamId,
    schema_version: u32,
    last: i64,
) -> BoxStream<'a, Result<FoldItem, StoreError>> {
    let rows = FromSnapshot {
        schema_version,
        next: None,
        last,
    };
    let start = std::future::ready(Ok(Some(rows)));
    Box::pin(streamed(
        reader,
        stream,
        "reading a stream from its snapshot",
        start,
    ))
}

/// The rows of `read_from_snapshot`: the snapshot (on the first row), then the events.
struct FromSnapshot {
    schema_version: u32,
    /// The next version to read once the snapshot is handed out; `None` before.
    next: Option<i64>,
    last: i64,
}

impl Rows for FromSnapshot {
    type Item = FoldItem;

    fn query<'q>(&self, sql: &'q Sql, stream: &'q StreamId) -> PgQuery<'q> {
        match self.next {
            None => sqlx::query(&sql.read_from_snapshot)
                .bind(stream.as_str())
                .bind(i64::from(self.schema_version))
                .bind(self.last),
            Some(from) => sqlx::query(&sql.read_stream_fold)
                .bind(stream.as_str())
                .bind(from)
                .bind(self.last),
        }
    }

    fn items(&mut self, row: &PgRow, stream: &StreamId) -> Result<Items<FoldItem>, StoreError> {
        let first = match self.next {
            Some(_) => None,
            None => {
                let snapshot = rows::snapshot_at(row, stream, self.schema_version, 6)?;
                self.next = Some(snapshot.as_ref().map_or(1, |s| to_i64(s.version.get())));
                if !rows::has_event(row, stream)? {
                    // The snapshot alone: its stream does not hold it.
                    return Ok([Some(FoldItem::Snapshot(snapshot)), None]);
                }
                Some(FoldItem::Snapshot(snapshot))
            }
        };
        let event = rows::fold_event(row, stream)?;
        self.next = Some(to_i64(event.version.get()).saturating_add(1));
        Ok([first, Some(FoldItem::Event(event))])
    }

    fn end(&mut self) -> Option<FoldItem> {
        // No row at all: no snapshot, and no event.
        self.next.is_none().then_some(FoldItem::Snapshot(None))
    }
}

/// The stream's current version (zero for a stream with no events).
pub(crate) async fn version(reader: Reader<'_>, stream: &StreamId) -> Result<Version, StoreError> {
    input::check_stream(stream)?;
    let v: Option<i64> = reader
        .run("reading a stream version", async |c| {
            sqlx::query_scalar(&reader.sql().stream_version)
                .bind(stream.as_str())
                .fetch_optional(c)
                .await
        })
        .await?;
    Ok(Version::new(
        v.and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
    ))
}

/// The rows of `stream` from `from` to `until` through `sql` (parameters: the stream, the
/// first and the last version), decoded by `decode`, streamed as [`streamed`] streams.
fn stream_rows<'a, T: Versioned + Send + 'a>(
    reader: Reader<'a>,
    sql: fn(&Sql) -> &str,
    stream: &'a StreamId,
    from: Version,
    until: ReadUntil,
    decode: fn(&PgRow, &StreamId) -> Result<T, StoreError>,
) -> BoxStream<'a, Result<T, StoreError>> {
    let start = async move {
        let last = last_version(reader, stream, until).await?;
        Ok(last.map(|last| Versions {
            sql,
            next: to_i64(from.get().max(1)),
            last,
            decode,
        }))
    };
    Box::pin(streamed(reader, stream, "reading a stream", start))
}

/// The rows of a stream read from version `next` to `last`, each one item.
struct Versions<T> {
    sql: fn(&Sql) -> &str,
    next: i64,
    last: i64,
    decode: fn(&PgRow, &StreamId) -> Result<T, StoreError>,
}

impl<T: Versioned + Send> Rows for Versions<T> {
    type Item = T;

    fn query<'q>(&self, sql: &'q Sql, stream: &'q StreamId) -> PgQuery<'q> {
        sqlx::query((self.sql)(sql))
            .bind(stream.as_str())
            .bind(self.next)
            .bind(self.last)
    }

    fn items(&mut self, row: &PgRow, stream: &StreamId) -> Result<Items<T>, StoreError> {
        let item = (self.decode)(row, stream)?;
        self.next = to_i64(item.version().get()).saturating_add(1);
        Ok([Some(item), None])
    }

    fn end(&mut self) -> Option<T> {
        None
    }
}

/// A statement with its parameters bound.
type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// What a row of a stream read hands out: one item or two, in order.
type Items<T> = [Option<T>; 2];

/// What [`streamed`] runs: the statement (the first one, or, after a failure, one that goes
/// on after what was handed out), and what each row hands out.
trait Rows: Send {
    type Item: Send;
    /// The statement to run now.
    fn query<'q>(&self, sql: &'q Sql, stream: &'q StreamId) -> PgQuery<'q>;
    /// What `row` hands out; it also moves where a statement run again would go on from.
    fn items(&mut self, row: &PgRow, stream: &StreamId) -> Result<Items<Self::Item>, StoreError>;
    /// What is handed out after the last row.
    fn end(&mut self) -> Option<Self::Item>;
}

/// A read of `stream` (checked against the input limits first): `start` says what to run
/// (`None`: nothing to read), then its statement runs as one streamed query. Rows are decoded
/// as they arrive from the socket, so memory holds what the consumer has not taken yet (the
/// socket's buffers), not the stream; a slow consumer stops the server through TCP
/// backpressure. After a failure that retrying may fix, the statement runs again on a fresh
/// connection, from where the last row handed out left the [`Rows`]; `what` names the read
/// in errors.
fn streamed<'a, R: Rows + 'a>(
    reader: Reader<'a>,
    stream: &'a StreamId,
    what: &'static str,
    start: impl Future<Output = Result<Option<R>, StoreError>> + Send + 'a,
) -> impl futures::Stream<Item = Result<R::Item, StoreError>> + Send + 'a {
    async_stream::try_stream! {
        input::check_stream(stream)?;
        let Some(mut rows) = start.await? else {
            return;
        };
        let mut retry = reader.retry();
        loop {
            let failed = match reader.conns().get().await {
                Err(e) => e,
                Ok(mut conn) => {
                    let mut fetched = rows.query(reader.sql(), stream).fetch(&mut *conn);
                    let failed = loop {
                        match fetched.try_next().await {
                            Ok(Some(row)) => {
                                for item in rows.items(&row, stream)?.into_iter().flatten() {
                                    yield item;
                                }
                            }
                            Ok(None) => break None,
                            Err(e) => break Some(e),
                        }
                    };
                    drop(fetched);
                    match failed {
                        None => {
                            conn.keep();
                            if let Some(item) = rows.end() {
                                yield item;
                            }
                            return;
                        }
                        Some(e) => e,
                    }
                }
            };
            if !retry.again(what, &failed).await {
                Err(backend(what, failed))?;
            }
        }
    }
}

/// The last version a stream read may return, or `None` when there is nothing to read.
async fn last_version(
    reader: Reader<'_>,
    stream: &StreamId,
    until: ReadUntil,
) -> Result<Option<i64>, StoreError> {
    match rows::bound(until) {
        Bound::Version(last) => Ok(Some(last)),
        Bound::Time(t) => {
            let last: i64 = reader
                .run("finding the version at a time", async |c| {
                    sqlx::query_scalar(&reader.sql().version_at_time)
                        .bind(stream.as_str())
                        .bind(t)
                        .fetch_one(c)
                        .await
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
