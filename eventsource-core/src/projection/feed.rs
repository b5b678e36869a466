//! [`LogFeed`]: where a runner takes its pages from, reading ahead while it catches up.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::error::StoreError;
use crate::ids::Position;
use crate::store::{EventStore, LogPage};

/// Where a runner takes its pages from: the log after its checkpoint, in pages of up to
/// `limit` events of its types.
///
/// Each page is read with [`EventStore::read_all`] until one comes back full: a catch-up is
/// under way. Then the pages after it come from [`EventStore::read_all_pages`], read on a task
/// of its own while the runner handles the pages before them and saves their checkpoints, so a
/// store that answers over a network streams the next pages (and their rows are decoded on
/// another thread) while this one is handled. The feed holds at most two pages beyond the one
/// being handled (one waiting, one being read). When that stream ends, or the runner asks for
/// a page after another position than where it ended (a batch failed, or a rebuild), the
/// feed stops it and reads with `read_all` again, so nothing is skipped or handled twice.
/// A runner that keeps a stream waiting (see [`STREAM_STALL`]) gets its pages one `read_all`
/// at a time from then on.
/// Dropping the feed stops its read. Outside a Tokio runtime every page is read with
/// `read_all` on the caller's task.
pub(crate) struct LogFeed<S> {
    store: S,
    limit: usize,
    types: Option<&'static [&'static str]>,
    streamed: Option<Streamed>,
    /// Set when a stream waited longer than [`STREAM_STALL`] for the runner to take a page:
    /// this feed reads page by page from then on.
    slow: Arc<std::sync::atomic::AtomicBool>,
}

/// How long a [`LogFeed`]'s stream waits for the runner to take a page before it stops. A
/// stream's read holds resources while it waits (the PostgreSQL store's: a query, its
/// snapshot and a pooled connection, which a slow runner's checkpoint saves may need), so a
/// runner that is slower than the log's reads takes its pages one read at a time instead.
pub(crate) const STREAM_STALL: Duration = Duration::from_millis(500);

/// The pages of a [`EventStore::read_all_pages`] stream, read on a task of its own.
struct Streamed {
    pages: mpsc::Receiver<Result<LogPage, StoreError>>,
    /// Where the next page from `pages` starts.
    after: Position,
    task: AbortOnDrop,
}

impl<S> std::fmt::Debug for LogFeed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFeed")
            .field("limit", &self.limit)
            .field("types", &self.types)
            .field("streaming_after", &self.streamed.as_ref().map(|s| s.after))
            .finish()
    }
}

impl<S: EventStore> LogFeed<S> {
    /// A feed of pages of up to `limit` events (at least 1) of `types` (`None`: all).
    pub(crate) fn new(store: S, limit: usize, types: Option<&'static [&'static str]>) -> Self {
        Self {
            store,
            limit: limit.max(1),
            types,
            streamed: None,
            slow: Arc::default(),
        }
    }

    /// The page after `after` (the runner's checkpoint). A panic in the store's read goes on
    /// here, as if the read had run on the caller's task.
    pub(crate) async fn page(&mut self, after: Position) -> Result<LogPage, StoreError> {
        if let Some(mut streamed) = self.streamed.take() {
            if streamed.after == after {
                match streamed.pages.recv().await {
                    Some(Ok(page)) => {
                        streamed.after = end_of(&page, after);
                        self.streamed = Some(streamed);
                        return Ok(page);
                    }
                    Some(Err(e)) => return Err(e),
                    // The stream ended (or its task died: a panic goes on here).
                    None => streamed.task.finish().await,
                }
            }
        }
        let page = self.store.read_all(after, self.limit, self.types).await?;
        if page.events.len() >= self.limit {
            self.stream_after(end_of(&page, after));
        }
        Ok(page)
    }

    /// Stops the stream under way, if any.
    pub(crate) fn stop(&mut self) {
        self.streamed = None;
    }

    fn stream_after(&mut self, after: Position) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.slow.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let (tx, pages) = mpsc::channel(1);
        let (store, limit, types) = (self.store.clone(), self.limit, self.types);
        let slow = Arc::clone(&self.slow);
        let read = async move {
            let mut stream = store.read_all_pages(after, limit, types);
            while let Some(page) = futures::StreamExt::next(&mut stream).await {
                let failed = page.is_err();
                let permit = match tokio::time::timeout(STREAM_STALL, tx.reserve()).await {
                    Ok(Ok(permit)) => permit,
                    // The feed is gone.
                    Ok(Err(_)) => break,
                    Err(_) => {
                        // The runner takes its time over each page: stop the stream, which
                        // would hold its query (and a pooled connection) open meanwhile,
                        // hand this page over, and let the feed read on page by page.
                        drop(stream);
                        slow.store(true, std::sync::atomic::Ordering::Relaxed);
                        let _ = tx.send(page).await;
                        break;
                    }
                };
                permit.send(page);
                if failed {
                    break;
                }
            }
        };
        let task = AbortOnDrop(runtime.spawn(read.in_current_span()));
        self.streamed = Some(Streamed { pages, after, task });
    }
}

/// Where a runner's checkpoint stands once it has handled `page`, read after `after`: past
/// its last event and its `scanned_to` (see the engine's batches). The next page
/// starts there.
fn end_of(page: &LogPage, after: Position) -> Position {
    let last = page.events.last().map_or(after, |e| e.position);
    page.scanned_to.max(last).max(after)
}

/// A read task, aborted if dropped before it is awaited to its end.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    /// Waits for the task to end; a panic in it goes on on the caller's task.
    async fn finish(mut self) {
        if let Err(e) = (&mut self.0).await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
