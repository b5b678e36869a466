//! The core projection runner: checkpointed catch-up, then live following, for projections
//! whose context is `()`. Handlers run at least once per event (see the module docs).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::error::guarded;
use super::{Projection, ProjectionError};
use crate::error::StoreError;
use crate::ids::Position;
use crate::store::{EventStore, LogPage};

/// The state of a running projection, as its [`ProjectionHandle`] sees it.
#[derive(Clone, Debug, Default)]
pub struct ProjectionStatus {
    /// Every event at or before this position has been handled (or was not of a handled type).
    pub checkpoint: Position,
    /// Whether the last read found nothing new (the projection is following live).
    pub caught_up: bool,
    /// Whether this runner is the one running the projection. Always true for the core
    /// runner; a store whose runners share a projection across processes (a lease) sets it on
    /// the lease holder only, the others stand by.
    pub leader: bool,
    /// Set when the projection stopped on an error.
    pub failed: Option<Arc<ProjectionError>>,
    /// Set when the projection stopped (after a failure or a shutdown).
    pub stopped: bool,
}

/// A request to a spawned runner task, sent by its [`ProjectionHandle`]. Public for store
/// crates that implement their own runners and hand out the core handle.
#[derive(Debug)]
pub enum ProjectionControl {
    /// Clear the read model and the checkpoint, then replay from zero; answer when reset.
    Rebuild(oneshot::Sender<Result<(), ProjectionError>>),
    /// Stop after the batch in progress.
    Shutdown,
}

/// Runs a [`Projection`] against a store: reads from its checkpoint in batches, calls its
/// handlers, saves the checkpoint after every batch, and follows the log live once caught up.
/// While it catches up (a batch came back full), it reads the next batches as one stream
/// while it handles the current one and saves its checkpoint ([`LogFeed`]), so it holds at
/// most three batches.
///
/// ```
/// # use eventsource_core::*;
/// # async fn doc<P: Projection<Context = ()>>(store: InMemoryStore, projection: P, commit: Commit)
/// # -> Result<(), ProjectionError> {
/// let handle = ProjectionRunner::new(store, projection).batch_size(500).spawn();
/// handle.wait_for(commit.position, std::time::Duration::from_secs(5)).await?; // read your writes
/// handle.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct ProjectionRunner<P, S> {
    store: S,
    projection: P,
    batch_size: usize,
    checkpoint: Position,
}

impl<P: Projection<Context = ()>, S: EventStore> ProjectionRunner<P, S> {
    /// A runner for `projection` over `store`, with batches of 256 events.
    pub fn new(store: S, projection: P) -> Self {
        Self {
            store,
            projection,
            batch_size: 256,
            checkpoint: Position::ZERO,
        }
    }

    /// Sets how many events one batch (one read, one checkpoint save) holds. The runner holds
    /// at most three batches in memory (one handled, two read ahead: see [`LogFeed`]).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The projection.
    pub fn projection(&self) -> &P {
        &self.projection
    }

    /// Catches up from the saved checkpoint to the current end of the log, then returns the
    /// checkpoint reached. Does not follow live.
    pub async fn catch_up(&mut self) -> Result<Position, ProjectionError> {
        self.checkpoint = self.load_checkpoint().await?;
        let mut feed = self.feed();
        loop {
            let page = feed.page(self.checkpoint).await.map_err(store_error::<P>)?;
            if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                return Ok(self.checkpoint);
            }
            self.process(page).await?;
        }
    }

    /// Clears the read model and the checkpoint, then catches up from zero.
    pub async fn rebuild(&mut self) -> Result<Position, ProjectionError> {
        self.reset().await?;
        self.catch_up().await
    }

    /// Starts the projection on a tokio task.
    pub fn spawn(self) -> ProjectionHandle {
        let (control_tx, control_rx) = mpsc::channel(4);
        let (status_tx, status_rx) = watch::channel(ProjectionStatus {
            leader: true,
            ..ProjectionStatus::default()
        });
        let span = tracing::info_span!("projection", projection = P::NAME);
        let task = tokio::spawn(self.run(control_rx, status_tx).instrument(span));
        ProjectionHandle::from_parts(P::NAME, status_rx, control_tx, task)
    }

    async fn run(
        mut self,
        mut control: mpsc::Receiver<ProjectionControl>,
        status: watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        // A panic outside a handler (a store's, say) still ends in a status and an error,
        // never in a task that is gone unseen.
        let followed = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            self.follow(&mut control, &status),
        ))
        .await;
        let result = followed.unwrap_or_else(|payload| {
            Err(ProjectionError::TaskEnded {
                projection: P::NAME,
                message: format!("panicked: {}", super::error::panic_message(&*payload)),
            })
        });
        status.send_modify(|s| {
            s.stopped = true;
            if let Err(e) = &result {
                s.failed = Some(Arc::new(e.clone()));
            }
        });
        if let Err(error) = &result {
            tracing::error!(%error, "projection stopped");
        }
        result
    }

    async fn follow(
        &mut self,
        control: &mut mpsc::Receiver<ProjectionControl>,
        status: &watch::Sender<ProjectionStatus>,
    ) -> Result<(), ProjectionError> {
        let mut wait = RETRY_START;
        self.checkpoint = loop {
            match self.load_checkpoint().await {
                Ok(p) => break p,
                Err(e) => pause_if_retryable(e, &mut wait).await?,
            }
        };
        status.send_modify(|s| s.checkpoint = self.checkpoint);
        let mut feed = self.feed();
        loop {
            match control.try_recv() {
                Ok(ProjectionControl::Shutdown) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Ok(());
                }
                Ok(ProjectionControl::Rebuild(ack)) => {
                    feed.stop();
                    self.rebuild_now(ack, status).await;
                    continue;
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            let page = match feed.page(self.checkpoint).await.map_err(store_error::<P>) {
                Ok(page) => page,
                Err(e) => {
                    pause_if_retryable(e, &mut wait).await?;
                    continue;
                }
            };
            wait = RETRY_START;
            if page.events.is_empty() && page.scanned_to <= self.checkpoint {
                status.send_modify(|s| s.caught_up = true);
                tokio::select! {
                    woke = self.store.wait_for_events(self.checkpoint) => {
                        if let Err(error) = woke {
                            tracing::warn!(%error, "waiting for events failed; polling");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    msg = control.recv() => match msg {
                        Some(ProjectionControl::Rebuild(ack)) => self.rebuild_now(ack, status).await,
                        Some(ProjectionControl::Shutdown) | None => return Ok(()),
                    },
                }
                continue;
            }
            let full = page.events.len() >= self.batch_size;
            self.process(page).await?;
            status.send_modify(|s| {
                s.checkpoint = self.checkpoint;
                s.caught_up = !full;
            });
        }
    }

    async fn rebuild_now(
        &mut self,
        ack: oneshot::Sender<Result<(), ProjectionError>>,
        status: &watch::Sender<ProjectionStatus>,
    ) {
        let result = self.reset().await;
        status.send_modify(|s| {
            s.checkpoint = self.checkpoint;
            s.caught_up = false;
        });
        // The caller may have stopped waiting; the rebuild stands either way.
        let _ = ack.send(result);
    }

    async fn reset(&mut self) -> Result<(), ProjectionError> {
        tracing::info!("rebuilding from zero");
        guarded(self.projection.reset(&mut ()))
            .await
            .map_err(|failure| ProjectionError::Reset {
                projection: P::NAME,
                source: failure.into_shared(),
            })?;
        self.checkpoint = Position::ZERO;
        self.store
            .save_checkpoint(P::NAME, Position::ZERO)
            .await
            .map_err(|source| store_error::<P>(source))
    }

    // `&mut self`, not `&self`: the runner is `Send` but need not be `Sync`.
    async fn load_checkpoint(&mut self) -> Result<Position, ProjectionError> {
        let saved = self
            .store
            .load_checkpoint(P::NAME)
            .await
            .map_err(store_error::<P>)?;
        Ok(saved.unwrap_or(Position::ZERO))
    }

    fn feed(&self) -> LogFeed<S> {
        LogFeed::new(self.store.clone(), self.batch_size, P::event_types())
    }

    /// Handles a page and saves the checkpoint at its end; on a handler error, saves the
    /// checkpoint just before the failed event and returns the error.
    async fn process(&mut self, page: LogPage) -> Result<(), ProjectionError> {
        let span = tracing::debug_span!(
            "projection_batch",
            projection = P::NAME,
            from = %self.checkpoint,
            to = %page.scanned_to,
            events = page.events.len()
        );
        async {
            for event in &page.events {
                if let Err(failure) = guarded(self.projection.handle_event(event, &mut ())).await {
                    let handled_to = self.checkpoint;
                    self.save_checkpoint(handled_to).await?;
                    return Err(failure.on(P::NAME, event));
                }
                self.checkpoint = event.position;
            }
            let to = page.scanned_to.max(self.checkpoint);
            self.save_checkpoint(to).await
        }
        .instrument(span)
        .await
    }

    async fn save_checkpoint(&mut self, to: Position) -> Result<(), ProjectionError> {
        self.checkpoint = to;
        self.store
            .save_checkpoint(P::NAME, to)
            .await
            .map_err(store_error::<P>)
    }
}

/// Where a runner takes its pages from: the log after its checkpoint, in pages of up to
/// `limit` events of its types. Public for store crates' own runners.
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
pub struct LogFeed<S> {
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
pub const STREAM_STALL: Duration = Duration::from_millis(500);

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
    pub fn new(store: S, limit: usize, types: Option<&'static [&'static str]>) -> Self {
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
    pub async fn page(&mut self, after: Position) -> Result<LogPage, StoreError> {
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
    pub fn stop(&mut self) {
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
/// its last event and its `scanned_to` (see `ProjectionRunner::process`). The next page
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

/// The first wait of [`pause_if_retryable`]'s backoff.
pub const RETRY_START: Duration = Duration::from_millis(50);

/// Sleeps and returns `Ok` when `e` is a retryable backend error (a restarting database should
/// pause a projection, not kill it), doubling `wait` up to 5 s; returns `e` otherwise. Public
/// for store crates' own runners.
pub async fn pause_if_retryable(
    e: ProjectionError,
    wait: &mut Duration,
) -> Result<(), ProjectionError> {
    match &e {
        ProjectionError::Store {
            source:
                StoreError::Backend {
                    retryable: true,
                    context,
                    ..
                },
            ..
        } => {
            tracing::warn!(%context, ?wait, "store unavailable; retrying");
            tokio::time::sleep(*wait).await;
            *wait = (*wait * 2).min(Duration::from_secs(5));
            Ok(())
        }
        _ => Err(e),
    }
}

fn store_error<P: Projection>(source: StoreError) -> ProjectionError {
    ProjectionError::Store {
        projection: P::NAME,
        source,
    }
}

/// Controls a projection started with [`ProjectionRunner::spawn`].
pub struct ProjectionHandle {
    name: &'static str,
    status: watch::Receiver<ProjectionStatus>,
    control: mpsc::Sender<ProjectionControl>,
    task: JoinHandle<Result<(), ProjectionError>>,
}

impl std::fmt::Debug for ProjectionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionHandle")
            .field("name", &self.name)
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl ProjectionHandle {
    /// Wraps the channels of a spawned runner task. The core runner builds its handle with
    /// it; a store crate with its own runner can hand out the same handle.
    pub fn from_parts(
        name: &'static str,
        status: watch::Receiver<ProjectionStatus>,
        control: mpsc::Sender<ProjectionControl>,
        task: JoinHandle<Result<(), ProjectionError>>,
    ) -> Self {
        Self {
            name,
            status,
            control,
            task,
        }
    }

    /// The projection's current status.
    pub fn status(&self) -> ProjectionStatus {
        self.status.borrow().clone()
    }

    /// The checkpoint: every event at or before it has been handled.
    pub fn checkpoint(&self) -> Position {
        self.status.borrow().checkpoint
    }

    /// Waits until the projection has handled everything up to `position` (read your writes:
    /// pass the [`Commit::position`](crate::Commit) of your command). Returns the checkpoint
    /// reached. Fails if the projection stops or the timeout passes first.
    pub async fn wait_for(
        &self,
        position: Position,
        timeout: Duration,
    ) -> Result<Position, ProjectionError> {
        let mut status = self.status.clone();
        // `wait_for` returns a read guard on the status; it must be gone before `self.status()`
        // reads again: a second read lock on the same thread deadlocks behind a runner waiting
        // to write (std's RwLock lets waiting writers go first).
        let wait = async move {
            status
                .wait_for(|s| s.checkpoint >= position || s.stopped)
                .await
                .map(drop)
        };
        let waited = tokio::time::timeout(timeout, wait).await;
        let current = self.status();
        match waited {
            Ok(Ok(())) if current.checkpoint >= position => Ok(current.checkpoint),
            Ok(_) => Err(ProjectionError::Stopped {
                projection: self.name,
                cause: current.failed,
            }),
            Err(_) => Err(ProjectionError::Timeout {
                projection: self.name,
                target: position,
                reached: current.checkpoint,
            }),
        }
    }

    /// Clears the read model and the checkpoint, then replays the log from zero. Returns once
    /// the reset is done; use [`ProjectionHandle::wait_for`] to wait for the replay.
    pub async fn rebuild(&self) -> Result<(), ProjectionError> {
        let stopped = || ProjectionError::Stopped {
            projection: self.name,
            cause: self.status.borrow().failed.clone(),
        };
        let (ack, done) = oneshot::channel();
        self.control
            .send(ProjectionControl::Rebuild(ack))
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Stops the projection after the batch in progress (its checkpoint saved) and returns how
    /// it ended.
    pub async fn shutdown(self) -> Result<(), ProjectionError> {
        // If the task already ended, its result below says how.
        let _ = self.control.send(ProjectionControl::Shutdown).await;
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(ProjectionError::Stopped {
                projection: self.name,
                cause: Some(Arc::new(ProjectionError::TaskEnded {
                    projection: self.name,
                    message: join.to_string(),
                })),
            }),
        }
    }
}
