//! Log reads: a page of the log ([`EventStore::read_all`]), a stream of pages
//! ([`EventStore::read_all_pages`]), the head; the checks on every row of a page; and the
//! read-your-writes settle.
//!
//! [`EventStore::read_all`]: eventsource_core::EventStore::read_all
//! [`EventStore::read_all_pages`]: eventsource_core::EventStore::read_all_pages

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use eventsource_core::store::input;
use eventsource_core::{LogPage, Position, RecordedEvent, StoreError};
use futures::stream::{BoxStream, TryStreamExt};
use sqlx::PgPool;
use sqlx::postgres::PgRow;
use tracing::Instrument;

use crate::errors::backend;
use crate::read::Reader;
use crate::rows::{self, position_from, position_params, to_i64};
use crate::sql::Sql;

/// The page of at most `limit` events after `after` (of `types`, or all), read below the
/// horizon once it has passed this store's own last append (`settle`).
pub(crate) async fn read_all(
    reader: Reader<'_>,
    mut settle: Settle,
    after: Position,
    limit: usize,
    types: Option<&[&str]>,
) -> Result<LogPage, StoreError> {
    input::check_types(types)?;
    let span = tracing::debug_span!("read_all", after = %after, limit);
    async {
        if limit == 0 {
            return Ok(LogPage {
                events: Vec::new(),
                scanned_to: after,
            });
        }
        let mut retry = reader.retry();
        loop {
            let page = match read_page(reader, after, limit, types).await {
                Ok(page) => page,
                Err(PageFailed::Query(e)) if retry.again("reading the log", &e).await => continue,
                Err(PageFailed::Query(e)) => return Err(backend("reading the log", e)),
                Err(PageFailed::Row(e)) => return Err(e),
            };
            let (mut page, horizon) = page.finish()?;
            if page.events.len() >= limit {
                return Ok(page);
            }
            if settle.done(horizon).await {
                if types.is_some() {
                    // Short, so every readable event was examined, including the ones
                    // filtered out: the page reaches the newest of them.
                    let newest: Option<(i64, i64)> = reader
                        .run("reading the log", async |c| {
                            sqlx::query_as(&reader.sql().newest_below)
                                .bind(horizon)
                                .fetch_optional(c)
                                .await
                        })
                        .await?;
                    if let Some(newest) = newest.and_then(|(c, s)| position_from(c, s)) {
                        page.scanned_to = page.scanned_to.max(newest);
                    }
                }
                return Ok(page);
            }
        }
    }
    .instrument(span)
    .await
}

/// Why [`read_page`] stopped.
enum PageFailed {
    /// The query failed.
    Query(sqlx::Error),
    /// A row did not decode, or came out of order.
    Row(StoreError),
}

/// One query of [`read_all`]: the page after `after`, as its rows arrive (each decoded while
/// the server is still sending the rest).
async fn read_page(
    reader: Reader<'_>,
    after: Position,
    limit: usize,
    types: Option<&[&str]>,
) -> Result<PageReader, PageFailed> {
    let (commit, seq) = position_params(after);
    let mut conn = reader.conns().get().await.map_err(PageFailed::Query)?;
    let mut rows = sqlx::query(&reader.sql().read_all)
        .bind(commit)
        .bind(seq)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(types)
        .fetch(&mut *conn);
    let mut page = PageReader::new(after, limit);
    while let Some(row) = rows.try_next().await.map_err(PageFailed::Query)? {
        page.push(&row).map_err(PageFailed::Row)?;
    }
    drop(rows);
    conn.keep();
    Ok(page)
}

/// The pages of at most `limit` events after `after` (of `types`, or all), to the end of the
/// readable log.
///
/// One query streams the rows of many pages (`LOG_STREAM_PAGES` pages' worth, then the
/// next query goes on from the last event), with no round trip or planning between pages;
/// rows are decoded as they arrive, and a consumer that stops taking pages stops the
/// server through TCP backpressure. Such a consumer keeps the query (its transaction,
/// its snapshot and a pooled connection) open until it takes more pages or drops the
/// stream: the projection runner drops a
/// stream that waits on them longer than
/// half a second. Each query reads below
/// the horizon it starts under, like [`read_all`]; one that comes back short ends the
/// stream.
///
/// Each query runs in a transaction of its own with sorts disabled: with a limit this
/// large, the planner may take a bitmap scan and a sort of every later event for the
/// cheapest plan (it did on a table autoanalyze had not reached), which reads the whole
/// rest of the log before the first row; the position index gives the order as it walks.
/// Dropping the stream mid-query rolls that transaction back. (The setting is made with
/// `set_config`: a `SET LOCAL` through sqlx's `raw_sql` cannot be proven `Send`.)
pub(crate) fn read_all_pages<'a>(
    pool: &'a PgPool,
    sql: &'a Sql,
    after: Position,
    limit: usize,
    types: Option<&'a [&'a str]>,
) -> BoxStream<'a, Result<LogPage, StoreError>> {
    let limit = limit.max(1);
    let per_query = limit.saturating_mul(LOG_STREAM_PAGES).max(LOG_STREAM_MIN);
    let capacity = limit.min(4096);
    Box::pin(async_stream::try_stream! {
        input::check_types(types)?;
        // A failure that retrying may fix ends the stream early (its pages so far are
        // whole; the reader goes on with `read_all`, which retries); others are errors.
        let ended = |e: sqlx::Error| {
            if crate::errors::is_retryable(&e) {
                tracing::debug!(error = %e, "a page stream ends early");
                Ok(())
            } else {
                Err(backend("reading the log", e))
            }
        };
        let mut after = after;
        let mut events: Vec<RecordedEvent> = Vec::with_capacity(capacity);
        loop {
            let mut tx = match pool.begin().await {
                Ok(tx) => tx,
                Err(e) => return ended(e)?,
            };
            if let Err(e) = sqlx::query("SELECT set_config('enable_sort', 'off', true)")
                .execute(&mut *tx)
                .await
            {
                return ended(e)?;
            }
            let (commit, seq) = position_params(after);
            let mut read = 0;
            let mut rows = sqlx::query(&sql.read_all)
                .bind(commit)
                .bind(seq)
                .bind(i64::try_from(per_query).unwrap_or(i64::MAX))
                .bind(types)
                .fetch(&mut *tx);
            loop {
                let row = match rows.try_next().await {
                    Ok(Some(row)) => row,
                    Ok(None) => break,
                    Err(e) => return ended(e)?,
                };
                // The meta row's horizon is not needed here.
                let LogRow::Event(event) = log_row(&row, after, events.last())? else {
                    continue;
                };
                after = event.position;
                read += 1;
                events.push(event);
                if events.len() >= limit {
                    let events = std::mem::replace(&mut events, Vec::with_capacity(capacity));
                    yield LogPage { events, scanned_to: after };
                }
            }
            drop(rows);
            if let Err(e) = tx.commit().await {
                return ended(e)?;
            }
            if read < per_query {
                if !events.is_empty() {
                    yield LogPage { events: std::mem::take(&mut events), scanned_to: after };
                }
                break;
            }
        }
    })
}

/// How many pages' worth of events one query of [`read_all_pages`] reads (at least
/// [`LOG_STREAM_MIN`]): enough that its planning and round trips are small beside its rows,
/// few enough that a query read without pause (and the snapshot it holds) lasts well under a
/// second.
const LOG_STREAM_PAGES: usize = 16;

/// The fewest events one query of [`read_all_pages`] asks for.
const LOG_STREAM_MIN: usize = 4096;

/// The newest readable position, once the horizon has passed this store's own last append
/// (`settle`).
pub(crate) async fn head(reader: Reader<'_>, mut settle: Settle) -> Result<Position, StoreError> {
    loop {
        let (horizon, c, s): (i64, Option<i64>, Option<i64>) = reader
            .run("reading the head", async |c| {
                sqlx::query_as(&reader.sql().head).fetch_one(c).await
            })
            .await?;
        if settle.done(horizon).await {
            return Ok(c
                .zip(s)
                .and_then(|(c, s)| position_from(c, s))
                .unwrap_or(Position::ZERO));
        }
    }
}

/// The commit part of the newest position a store (any clone of its handle) appended or was
/// handed back by an idempotent append: its reads wait until the horizon passes it.
#[derive(Debug, Default)]
pub(crate) struct OwnWrites {
    last_commit: AtomicI64,
}

impl OwnWrites {
    /// Records an append that committed, or had committed, at `position`.
    pub(crate) fn saw(&self, position: Position) {
        self.last_commit
            .fetch_max(to_i64(position.commit()), Ordering::AcqRel);
    }

    /// The wait of a read that starts now.
    pub(crate) fn settle(&self) -> Settle {
        Settle {
            target: self.last_commit.load(Ordering::Acquire),
            started: Instant::now(),
            pause: Duration::from_micros(500),
        }
    }
}

/// Read-your-writes: a read that starts after this store handle's append returned waits
/// (briefly) until the horizon has passed that append, so the caller sees its own events.
/// Only transactions running at that moment can hold it back; the wait is bounded by
/// [`SETTLE_LIMIT`], after which the read returns what is readable.
pub(crate) struct Settle {
    target: i64,
    started: Instant,
    pause: Duration,
}

/// The longest a read waits for the horizon to pass the store handle's own last append.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

impl Settle {
    /// Whether a read that saw `horizon` may return; if not, pauses first.
    async fn done(&mut self, horizon: i64) -> bool {
        if horizon > self.target || self.started.elapsed() >= SETTLE_LIMIT {
            return true;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Duration::from_millis(20));
        false
    }
}

/// A row of `Sql::read_all`.
enum LogRow {
    /// An event row.
    Event(RecordedEvent),
    /// The meta row (no stream), with the horizon the statement read under.
    Meta { horizon: Option<i64> },
}

/// Decodes a row of `Sql::read_all` that comes after position `after` (`previous`: the event
/// decoded before it, whose stream id it shares when it can). The rows come in position
/// order; one out of order would skip or repeat events, so it is refused rather than used.
fn log_row(
    row: &PgRow,
    after: Position,
    previous: Option<&RecordedEvent>,
) -> Result<LogRow, StoreError> {
    let bad = |e: String| StoreError::backend("reading the log", false, e);
    let cols = rows::Binary(row);
    let Some(stream) = cols.opt_text(0).map_err(bad)? else {
        return Ok(LogRow::Meta {
            horizon: cols.opt_int8(1).map_err(bad)?,
        });
    };
    let event = rows::event_in(row, 0, stream, previous)?;
    if event.position <= after {
        return Err(StoreError::Corrupt {
            stream: event.stream,
            version: event.version,
            reason: format!(
                "log page out of order: position {} after {after}",
                event.position
            ),
        });
    }
    Ok(LogRow::Event(event))
}

/// A log page, and the horizon it was read under, built from the rows of `Sql::read_all` as
/// they arrive: the event rows (a stream, then the event columns) in position order, and one
/// meta row (no stream; column 1 the horizon).
///
/// `scanned_to` is the last event the read examined: the last one returned when the page is
/// full; otherwise every readable event has been examined. Unfiltered, that is the last one
/// returned (or `after`); filtered by type, the newest readable one of any type, which
/// [`read_all`] then looks up ([`PageReader::finish`] leaves it at the last one returned).
/// `(horizon, 0)` would be a valid bound too, but it moves with every transaction in the
/// cluster, so an idle projection would save a new checkpoint (a write, which moves the
/// horizon again) on every poll.
struct PageReader {
    after: Position,
    events: Vec<RecordedEvent>,
    horizon: Option<i64>,
}

impl PageReader {
    fn new(after: Position, limit: usize) -> Self {
        Self {
            after,
            events: Vec::with_capacity(limit.min(4096)),
            horizon: None,
        }
    }

    /// Takes the next row of the page.
    fn push(&mut self, row: &PgRow) -> Result<(), StoreError> {
        let previous = self.events.last();
        let after = previous.map_or(self.after, |e| e.position);
        match log_row(row, after, previous)? {
            LogRow::Event(event) => self.events.push(event),
            LogRow::Meta { horizon } => self.horizon = horizon,
        }
        Ok(())
    }

    /// The page, and the horizon it was read under.
    fn finish(self) -> Result<(LogPage, i64), StoreError> {
        let Some(horizon) = self.horizon else {
            return Err(StoreError::backend(
                "reading the log",
                true,
                "the page has no horizon row",
            ));
        };
        let scanned_to = self.events.last().map_or(self.after, |e| e.position);
        Ok((
            LogPage {
                events: self.events,
                scanned_to,
            },
            horizon,
        ))
    }
}
