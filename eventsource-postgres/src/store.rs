//! [`PgStore`]: construction, options, and the [`EventStore`] implementation.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eventsource_core::store::input;
use eventsource_core::store::lock::{LocalLocks, lock_order};
use eventsource_core::{
    Commit, EventId, EventStore, FoldEvent, LogPage, Position, ReadUntil, RecordedEvent, Snapshot,
    StoreError, StreamId, StreamLock, StreamWrite, Version,
};
use futures::stream::{BoxStream, TryStreamExt};
use sqlx::postgres::{PgPoolOptions, PgRow};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::AbortHandle;
use tracing::Instrument;

use crate::append::{self, Outcome, Request};
use crate::conns::{Conns, Kept};
use crate::context::{LockTx, PgProjectionContext};
use crate::errors::{self, Retry, backend};
use crate::inline::{DynInline, Inline};
use crate::rows::{self, position_from, position_params, to_i64};
use crate::schema::PgSchema;
use crate::sql::Sql;
use crate::{migrate, notify};

/// How long a connection of the store's own pool may sit idle before it is checked (a ping)
/// on its next use; see [`PgStoreBuilder::connect`].
pub const IDLE_CHECK_AFTER: Duration = Duration::from_millis(50);

/// How many times an append is tried inside the store before its error is returned.
const APPEND_ATTEMPTS: u32 = 6;

/// Options of a [`PgStore`]; start from [`PgStore::builder`].
#[derive(Clone, Debug)]
pub struct PgStoreBuilder {
    schema: Result<PgSchema, String>,
    migrate: bool,
    poll_interval: Duration,
    idle_poll_interval: Duration,
    listen: bool,
    max_connections: u32,
    reuse_connections: Option<usize>,
    read_retry_for: Duration,
}

impl Default for PgStoreBuilder {
    fn default() -> Self {
        Self {
            schema: Ok(PgSchema::default()),
            migrate: true,
            poll_interval: Duration::from_millis(20),
            idle_poll_interval: Duration::from_millis(500),
            listen: true,
            max_connections: 16,
            reuse_connections: None,
            read_retry_for: Duration::from_secs(10),
        }
    }
}

impl PgStoreBuilder {
    /// The schema holding the store's tables (default `eventsource`). Validated when the store
    /// is built: a name that is not a plain identifier is [`StoreError::Config`].
    pub fn schema(mut self, name: &str) -> Self {
        self.schema = PgSchema::new(name).map_err(|e| e.to_string());
        self
    }

    /// Whether building the store applies pending migrations (default `true`). Without it,
    /// call [`PgStore::migrate`] yourself.
    pub fn migrate(mut self, on: bool) -> Self {
        self.migrate = on;
        self
    }

    /// How often a waiting subscriber polls while committed events are held behind the
    /// horizon (default 20 ms). This bounds the latency of `wait_for_events` then.
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// How often a waiting subscriber polls when nothing is pending, in case a notification
    /// was lost (default 500 ms).
    pub fn idle_poll_interval(mut self, every: Duration) -> Self {
        self.idle_poll_interval = every;
        self
    }

    /// Whether subscribers are woken through LISTEN/NOTIFY (default `true`). Turn it off
    /// behind transaction-pooling proxies and on replicas: subscribers then poll.
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }

    /// The pool size when the store opens its own pool (default 16).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(2);
        self
    }

    /// How many connections the store keeps for its next operations instead of handing them
    /// back to the pool (default: half the pool's size; 0 keeps none; at most one less than
    /// the pool's size, so the pool always has one of its own).
    ///
    /// sqlx's pool checks every connection handed back to it with a round trip (run in the
    /// background: the caller does not wait for it, but the server and the client do its
    /// work, and the connection is busy meanwhile), so a statement run on the pool costs two.
    /// The store hands back the connections it cannot vouch for (a statement dropped midway,
    /// an I/O error, the server ending the session) and keeps the others, each for about
    /// 50 ms at most while unused (a background task hands it back), so code sharing the pool
    /// does not wait long for a connection the store holds and is not using; and every
    /// connection passes through the pool at least once a second, however busy the store.
    /// Measured (`benches/pool_check.rs`): a load + append on held connections gave 1.3 times
    /// the commands per second of the same statements on the pool, for 0.72 of the CPU.
    pub fn reuse_connections(mut self, n: usize) -> Self {
        self.reuse_connections = Some(n);
        self
    }

    /// How long a read keeps trying after failures that retrying may fix (default 10 s). Reads
    /// are idempotent, so after the server ends a connection (a restart, a failover,
    /// `pg_terminate_backend`) the store tries them again on a fresh connection, with backoff,
    /// and a blip never reaches the callers of reads (`read_stream`, `read_all`, `head`,
    /// `stream_version`, snapshots, checkpoints: every call but `append`, which retries on its
    /// own terms). A stream read that fails midway goes on after the last event it handed out,
    /// with no duplicate and no gap. A failure that lasts longer than this surfaces as a
    /// retryable [`StoreError::Backend`]. Zero retries nothing.
    pub fn read_retry_for(mut self, bound: Duration) -> Self {
        self.read_retry_for = bound;
        self
    }

    /// Connects to `url` with a pool of its own.
    ///
    /// The pool checks a connection before handing it out only when it has been idle for
    /// [`IDLE_CHECK_AFTER`] or more: sqlx's default pings before every use, a round trip per
    /// query that a busy store can spare (connections in steady use were checked when they
    /// were last released, moments before, or were kept by the store after statements it saw
    /// through: see [`PgStoreBuilder::reuse_connections`]). A connection that died since is
    /// discarded and another one is used; an append that still meets a dead connection is
    /// tried again, with its event ids looked up.
    pub async fn connect(self, url: &str) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= IDLE_CHECK_AFTER {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .map_err(|e| backend("connecting", e))?;
        self.with_pool(pool).await
    }

    /// Uses an existing pool, with its own settings. sqlx's default pool pings a connection
    /// before every use; see [`PgStoreBuilder::connect`] for the check the store's own pool
    /// makes instead, which a pool of yours can copy.
    pub async fn with_pool(self, pool: PgPool) -> Result<PgStore, StoreError> {
        let schema = self.schema.clone().map_err(StoreError::Config)?;
        let max = pool.options().get_max_connections() as usize;
        let reuse = self
            .reuse_connections
            .unwrap_or(max / 2)
            .min(max.saturating_sub(1));
        let store = PgStore {
            inner: Arc::new(Inner {
                conns: Conns::new(pool.clone(), reuse),
                sql: Sql::new(&schema),
                channel: notify::channel_name(&schema),
                schema,
                pool,
                options: self.clone(),
                wake: watch::Sender::new(0),
                pending_notify: Arc::new(Notify::new()),
                notifier: OnceLock::new(),
                listener: OnceLock::new(),
                last_commit: std::sync::atomic::AtomicI64::new(0),
                inline: Vec::new(),
                local: LocalLocks::default(),
            }),
        };
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}

/// The PostgreSQL event store. Cheap to clone: clones share one pool.
///
/// See the [crate docs](crate) for the schema, the gap-safe global order and why it is safe.
///
/// ```no_run
/// # async fn doc() -> Result<(), eventsource_core::StoreError> {
/// use eventsource_postgres::PgStore;
/// let store = PgStore::builder()
///     .schema("billing_events")
///     .connect("postgres://postgres@127.0.0.1:5432/postgres")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: PgPool,
    /// The connections kept between operations (see [`crate::conns`]).
    conns: Arc<Conns>,
    pub(crate) schema: PgSchema,
    pub(crate) sql: Sql,
    pub(crate) channel: String,
    options: PgStoreBuilder,
    /// Bumped whenever events may have become readable (a local append, a notification, a
    /// reconnect of the listener).
    pub(crate) wake: watch::Sender<u64>,
    /// Tells the background notifier that a NOTIFY is due.
    pending_notify: Arc<Notify>,
    notifier: OnceLock<AbortHandle>,
    listener: OnceLock<AbortHandle>,
    /// The commit part of the newest position this store (any clone) appended or was handed
    /// back by an idempotent append: reads wait until the horizon passes it.
    last_commit: std::sync::atomic::AtomicI64,
    inline: Vec<Arc<Mutex<Box<dyn DynInline>>>>,
    /// The in-process queues of the writers' locks (see [`crate::lock`]).
    local: LocalLocks,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in [self.notifier.get(), self.listener.get()]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("inline_projections", &self.inner.inline.len())
            .finish()
    }
}

impl PgStore {
    /// The options for a store.
    pub fn builder() -> PgStoreBuilder {
        PgStoreBuilder::default()
    }

    /// Connects to `url` with the default options (schema `eventsource`, migrations applied).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::builder().connect(url).await
    }

    /// Uses an existing pool with the default options.
    pub async fn with_pool(pool: PgPool) -> Result<Self, StoreError> {
        Self::builder().with_pool(pool).await
    }

    /// Creates the schema and applies pending migrations; idempotent and safe when several
    /// processes run it at once (a session advisory lock serialises them). Also moves to a new
    /// era if the stored positions come from another cluster (see the crate docs).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        migrate::migrate(&self.inner.pool, &self.inner.schema).await
    }

    /// The pool the store uses.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The store's schema.
    pub fn schema(&self) -> &PgSchema {
        &self.inner.schema
    }

    /// The statement a log page is read with (`$1, $2`: the position after which to read,
    /// `$3`: the limit, `$4`: the types or NULL). Not a stable API: for tests that check its
    /// plan.
    #[doc(hidden)]
    pub fn read_all_statement(&self) -> &str {
        &self.inner.sql.read_all
    }

    /// The statement a checkpoint is saved with (`$1`: the projection, `$2, $3`: the
    /// position). Not a stable API: for tests that check when it waits for its commit to be
    /// flushed.
    #[doc(hidden)]
    pub fn save_checkpoint_statement(&self) -> &str {
        &self.inner.sql.save_checkpoint
    }

    /// The statement that finds a stream's last version recorded at or before a time (`$1`:
    /// the stream, `$2`: the time; 0 when none). Not a stable API: for tests that check its
    /// plan.
    #[doc(hidden)]
    pub fn version_at_time_statement(&self) -> &str {
        &self.inner.sql.version_at_time
    }

    /// The connections the store keeps between operations.
    pub(crate) fn conns(&self) -> &Arc<Conns> {
        &self.inner.conns
    }

    /// The in-process queues of the writers' locks.
    pub(crate) fn local_locks(&self) -> &LocalLocks {
        &self.inner.local
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Registers an inline projection: it runs inside every append's own transaction, so its
    /// read model is updated the moment the append returns (or not at all). Register before
    /// sharing the store (it needs the only handle). Appends run one at a time through each
    /// inline projection's handlers.
    pub fn with_inline_projection<P>(mut self, projection: P) -> Result<Self, StoreError>
    where
        P: eventsource_core::Projection<Context = PgProjectionContext>,
    {
        let inner = Arc::get_mut(&mut self.inner).ok_or_else(|| {
            StoreError::Config("register inline projections before cloning the store".into())
        })?;
        inner
            .inline
            .push(Arc::new(Mutex::new(Box::new(Inline(projection)))));
        Ok(self)
    }

    /// Starts the background notifier, once (on the first append).
    fn ensure_notifier(&self) {
        self.inner.notifier.get_or_init(|| {
            tokio::spawn(notify::notifier(
                self.inner.pool.clone(),
                self.inner.channel.clone(),
                self.inner.pending_notify.clone(),
            ))
            .abort_handle()
        });
    }

    /// Starts the LISTEN task, once (on the first wait), unless listening is off.
    fn ensure_listener(&self) {
        if !self.inner.options.listen {
            return;
        }
        self.inner.listener.get_or_init(|| {
            tokio::spawn(notify::listener(
                self.inner.pool.clone(),
                self.inner.channel.clone(),
                self.inner.wake.clone(),
            ))
            .abort_handle()
        });
    }

    /// Wakes local subscribers and asks the background notifier to tell other processes.
    /// Never on the append's commit path: the NOTIFY runs later, on another connection.
    fn announce(&self) {
        self.inner.wake.send_modify(|n| *n = n.wrapping_add(1));
        if self.inner.options.listen {
            self.ensure_notifier();
            self.inner.pending_notify.notify_one();
        }
    }

    /// One attempt: on a connection of the pool, or of the writers' lock in `lock` (its
    /// session must make the lock's appends), or, with inline projections, in a transaction
    /// that also runs them.
    async fn append_once(
        &self,
        request: &Request<'_>,
        path: Path,
        lock: Option<&mut Option<Kept>>,
    ) -> Result<Result<Outcome, StoreError>, sqlx::Error> {
        let inline = !self.inner.inline.is_empty();
        match lock {
            None if !inline => {
                self.on_conn(async |conn| self.append_on(conn, request, path).await)
                    .await
            }
            None => {
                let tx = self.inner.pool.begin().await?;
                let ctx = PgProjectionContext::new(tx, self.clone());
                self.append_inline(ctx, request, path).await.0
            }
            Some(slot) => match slot.take() {
                Some(mut kept) if !inline => {
                    let outcome = self.append_on(&mut kept.conn, request, path).await;
                    *slot = Some(kept);
                    outcome
                }
                Some(kept) => {
                    let ctx =
                        PgProjectionContext::on_lock(LockTx::begin(kept).await?, self.clone());
                    let (outcome, back) = self.append_inline(ctx, request, path).await;
                    *slot = back;
                    outcome
                }
                // The lock's session is gone: like any other writer.
                None => Box::pin(self.append_once(request, path, None)).await,
            },
        }
    }

    /// The append in `ctx`'s transaction, then the inline projections on what it wrote, then
    /// the commit. Also hands back the connection of a lock's transaction once it ended.
    async fn append_inline(
        &self,
        mut ctx: PgProjectionContext,
        request: &Request<'_>,
        path: Path,
    ) -> (
        Result<Result<Outcome, StoreError>, sqlx::Error>,
        Option<Kept>,
    ) {
        let outcome = match self.append_on(ctx.conn(), request, path).await {
            Ok(outcome) => outcome,
            Err(e) => return (Err(e), ctx.rollback().await.ok().flatten()),
        };
        let Ok(Outcome::Written(_, written)) = &outcome else {
            // Nothing new was written: the inline read models already reflect it.
            return (Ok(outcome), ctx.rollback().await.ok().flatten());
        };
        let events = append::recorded(request.writes, written);
        for projection in &self.inner.inline {
            let mut projection = projection.lock().await;
            if let Err(error) = projection.handle_all(&events, &mut ctx).await {
                return (Ok(Err(error)), ctx.rollback().await.ok().flatten());
            }
        }
        match ctx.commit().await {
            Ok(back) => (Ok(outcome), back),
            Err(e) => (Err(e), None),
        }
    }

    async fn append_on(
        &self,
        conn: &mut sqlx::PgConnection,
        request: &Request<'_>,
        path: Path,
    ) -> Result<Result<Outcome, StoreError>, sqlx::Error> {
        let sql = &self.inner.sql;
        let check_ids = match path {
            Path::Direct(expected) => {
                let direct = match append::call_direct(conn, sql, request, expected).await {
                    // (Not inside a transaction: the failed insert aborted it; the caller
                    // retries through `append_events` instead.)
                    Err(e) if errors::is_version_taken(&e) && self.inner.inline.is_empty() => {
                        append::probe_conflict(conn, sql, request, expected).await?
                    }
                    other => other?,
                };
                match direct {
                    Ok(append::Direct::Written(outcome)) => return Ok(Ok(outcome)),
                    Ok(append::Direct::Conflict(e)) | Err(e) => return Ok(Err(e)),
                    // A retried append must get its first commit, not a conflict.
                    Ok(append::Direct::StoredIds) => true,
                }
            }
            Path::Locked { check_ids } => check_ids,
        };
        append::call(conn, sql, request, check_ids).await
    }
}

impl PgStore {
    /// Appends `writes`, on the session of the writers' lock in `lock` when there is one
    /// (`None` in it once that session is gone: the append then runs as any other writer's,
    /// and meets the lock, if another session holds it now, like one).
    pub(crate) async fn append_as(
        &self,
        writes: Vec<StreamWrite>,
        mut lock: Option<&mut Option<Kept>>,
    ) -> Result<Commit, StoreError> {
        let writes = eventsource_core::validate_writes(writes)?;
        if writes.is_empty() {
            return Ok(Commit::empty());
        }
        let span = tracing::debug_span!(
            "append",
            store = "postgres",
            schema = self.inner.schema.as_str(),
            streams = writes.len()
        );
        async {
            let request = Request::new(&writes);
            let mut attempt = 0;
            let mut path = match append::direct_expected(&writes) {
                Some(expected) => Path::Direct(expected),
                None => Path::Locked { check_ids: false },
            };
            let outcome = loop {
                attempt += 1;
                match self.append_once(&request, path, lock.as_deref_mut()).await {
                    Ok(outcome) => break outcome?,
                    Err(e) if attempt < APPEND_ATTEMPTS && errors::is_append_retryable(&e) => {
                        tracing::debug!(error = %e, attempt, "append retried");
                        if errors::is_connection_lost(&e)
                            && let Some(slot) = lock.as_deref_mut()
                            && let Some(dead) = slot.take()
                        {
                            // The lock's session is gone, and the lock with it.
                            self.conns().close(dead.conn);
                        }
                        // Met a stored event id, or lost the connection (the append may have
                        // committed): look the ids up this time.
                        let stored = errors::is_stored_id(&e);
                        path = Path::Locked {
                            check_ids: stored || errors::is_connection_lost(&e),
                        };
                        if stored || !errors::is_connection_lost(&e) {
                            // A race or a deadlock: go again at once, under the locks.
                            continue;
                        }
                        let cap = 2u64.pow(attempt.min(6));
                        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=cap))).await;
                    }
                    Err(e) => return Err(errors::append_failed(e)),
                }
            };
            let position = match &outcome {
                Outcome::Written(c, _) | Outcome::AlreadyStored(c) => c.position,
            };
            self.inner
                .last_commit
                .fetch_max(to_i64(position.commit()), std::sync::atomic::Ordering::AcqRel);
            Ok(match outcome {
                Outcome::Written(commit, _) => {
                    self.announce();
                    tracing::debug!(position = %commit.position, events = commit.event_count(), "appended");
                    commit
                }
                Outcome::AlreadyStored(commit) => {
                    tracing::debug!(position = %commit.position, "events already stored");
                    commit
                }
            })
        }
        .instrument(span)
        .await
    }
}

/// How an append attempt runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The direct statement (`Sql::append_one`/`append_batch`), at this expected version.
    Direct(i64),
    /// `append_events`, under the streams' locks; `check_ids`: look the event ids up first.
    Locked { check_ids: bool },
}

impl EventStore for PgStore {
    async fn append(&self, writes: Vec<StreamWrite>) -> Result<Commit, StoreError> {
        self.append_as(writes, None).await
    }

    async fn lock_streams(&self, streams: &[StreamId]) -> Result<StreamLock, StoreError> {
        input::check_streams(streams)?;
        crate::lock::take(self, lock_order(streams)).await
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<RecordedEvent, StoreError>> {
        self.stream_rows(
            &self.inner.sql.read_stream,
            stream,
            from,
            until,
            |row, s| rows::event_of(row, 0, s.clone()),
        )
    }

    fn read_stream_for_fold<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
        self.stream_rows(
            &self.inner.sql.read_stream_fold,
            stream,
            from,
            until,
            rows::fold_event,
        )
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        input::check_stream(stream)?;
        let v: Option<i64> = self
            .read_retrying("reading a stream version", || {
                self.on_conn(async |c| {
                    sqlx::query_scalar(&self.inner.sql.stream_version)
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

    async fn read_all(
        &self,
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
            let mut settle = self.settle();
            let mut retry = self.retry();
            loop {
                let page = match self.read_page(after, limit, types).await {
                    Ok(page) => page,
                    Err(Ok(e)) if retry.again("reading the log", &e).await => continue,
                    Err(Ok(e)) => return Err(backend("reading the log", e)),
                    Err(Err(e)) => return Err(e),
                };
                let (mut page, horizon) = page.finish()?;
                if page.events.len() >= limit {
                    return Ok(page);
                }
                if settle.done(horizon).await {
                    if types.is_some() {
                        // Short, so every readable event was examined, including the ones
                        // filtered out: the page reaches the newest of them.
                        let newest: Option<(i64, i64)> = self
                            .read_retrying("reading the log", || {
                                self.on_conn(async |c| {
                                    sqlx::query_as(&self.inner.sql.newest_below)
                                        .bind(horizon)
                                        .fetch_optional(c)
                                        .await
                                })
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

    /// One query streams the rows of many pages (`LOG_STREAM_PAGES` pages' worth, then the
    /// next query goes on from the last event), with no round trip or planning between pages;
    /// rows are decoded as they arrive, and a consumer that stops taking pages stops the
    /// server through TCP backpressure. Such a consumer keeps the query (its transaction,
    /// its snapshot and a pooled connection) open until it takes more pages or drops the
    /// stream: the runners' [`LogFeed`](eventsource_core::projection::LogFeed) drops a
    /// stream that waits on them longer than
    /// [`STREAM_STALL`](eventsource_core::projection::STREAM_STALL). Each query reads below
    /// the horizon it starts under, like [`EventStore::read_all`]; one that comes back short
    /// ends the stream.
    ///
    /// Each query runs in a transaction of its own with sorts disabled: with a limit this
    /// large, the planner may take a bitmap scan and a sort of every later event for the
    /// cheapest plan (it did on a table autoanalyze had not reached), which reads the whole
    /// rest of the log before the first row; the position index gives the order as it walks.
    /// Dropping the stream mid-query rolls that transaction back. (The setting is made with
    /// `set_config`: a `SET LOCAL` through sqlx's `raw_sql` cannot be proven `Send`.)
    fn read_all_pages<'a>(
        &'a self,
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
                let mut tx = match self.inner.pool.begin().await {
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
                let mut rows = sqlx::query(&self.inner.sql.read_all)
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

    async fn head(&self) -> Result<Position, StoreError> {
        let mut settle = self.settle();
        loop {
            let (horizon, c, s): (i64, Option<i64>, Option<i64>) = self
                .read_retrying("reading the head", || {
                    self.on_conn(async |c| sqlx::query_as(&self.inner.sql.head).fetch_one(c).await)
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

    async fn wait_for_events(&self, after: Position) -> Result<(), StoreError> {
        self.ensure_listener();
        // Subscribe before probing, so a wake-up between the probe and the wait is not lost.
        let mut woken = self.inner.wake.subscribe();
        let (c, s) = position_params(after);
        let (readable, committed): (bool, bool) = self
            .read_retrying("probing for new events", || {
                self.on_conn(async |conn| {
                    sqlx::query_as(&self.inner.sql.probe)
                        .bind(c)
                        .bind(s)
                        .fetch_one(conn)
                        .await
                })
            })
            .await?;
        if readable {
            return Ok(());
        }
        // Committed but behind the horizon: no notification will come when the horizon
        // moves, so poll.
        let timeout = if committed {
            self.inner.options.poll_interval
        } else {
            self.inner.options.idle_poll_interval
        };
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep(timeout) => {}
        }
        Ok(())
    }

    async fn event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        let row = self
            .read_retrying("reading an event by id", || {
                self.on_conn(async |c| {
                    sqlx::query(&self.inner.sql.event_by_id)
                        .bind(id.as_uuid())
                        .fetch_optional(c)
                        .await
                })
            })
            .await?;
        row.map(|r| rows::event(&r, 0)).transpose()
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        input::check_stream(&snapshot.stream)?;
        let (commit, seq) = position_params(snapshot.position);
        let (at, at_ns) = rows::split_nanos(snapshot.event_recorded_at);
        self.read_retrying("saving a snapshot", || {
            self.on_conn(async |c| {
                sqlx::query(&self.inner.sql.save_snapshot)
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
        })
        .await?;
        Ok(())
    }

    async fn load_snapshot(
        &self,
        stream: &StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> Result<Option<Snapshot>, StoreError> {
        input::check_stream(stream)?;
        let row = self
            .read_retrying("loading a snapshot", || {
                self.on_conn(async |c| {
                    let query = match until {
                        ReadUntil::End => sqlx::query(&self.inner.sql.load_snapshot_version)
                            .bind(stream.as_str())
                            .bind(i64::from(schema_version))
                            .bind(i64::MAX),
                        ReadUntil::Version(v) => sqlx::query(&self.inner.sql.load_snapshot_version)
                            .bind(stream.as_str())
                            .bind(i64::from(schema_version))
                            .bind(to_i64(v.get())),
                        ReadUntil::Time(t) => {
                            let (at, at_ns) = rows::split_nanos(t);
                            sqlx::query(&self.inner.sql.load_snapshot_time)
                                .bind(stream.as_str())
                                .bind(i64::from(schema_version))
                                .bind(at)
                                .bind(at_ns)
                        }
                    };
                    query.fetch_optional(c).await
                })
            })
            .await?;
        row.map(|r| rows::snapshot(&r)).transpose()
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        input::check_checkpoint(name)?;
        let row: Option<(i64, i64)> = self
            .read_retrying("loading a checkpoint", || {
                self.on_conn(async |c| {
                    sqlx::query_as(&self.inner.sql.load_checkpoint)
                        .bind(name)
                        .fetch_optional(c)
                        .await
                })
            })
            .await?;
        match row {
            None => Ok(None),
            Some((c, s)) => position_from(c, s).map(Some).ok_or_else(|| {
                StoreError::Config(format!(
                    "checkpoint `{name}` holds an invalid position {c}.{s}"
                ))
            }),
        }
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        input::check_checkpoint(name)?;
        let (c, s) = position_params(position);
        self.read_retrying("saving a checkpoint", || {
            self.on_conn(async |conn| {
                sqlx::query(&self.inner.sql.save_checkpoint)
                    .bind(name)
                    .bind(c)
                    .bind(s)
                    .execute(conn)
                    .await
            })
        })
        .await?;
        Ok(())
    }
}

impl PgStore {
    /// Runs `op` on a connection the store keeps between operations (see [`crate::conns`]),
    /// and keeps it again when `op` ended with it in step.
    async fn on_conn<T>(
        &self,
        op: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, sqlx::Error> {
        let mut conn = self.inner.conns.get().await?;
        let result = op(&mut conn).await;
        conn.keep_if(&result);
        result
    }

    /// Runs the read `attempt` (an [`PgStore::on_conn`] call), and again on a fresh connection
    /// after a failure that retrying may fix (see [`PgStoreBuilder::read_retry_for`]).
    async fn read_retrying<T, F>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> F,
    ) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut retry = self.retry();
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if retry.again(what, &e).await => {}
                Err(e) => return Err(backend(what, e)),
            }
        }
    }

    /// One query of [`EventStore::read_all`]: the page after `after`, as its rows arrive (each
    /// decoded while the server is still sending the rest). A failed query is `Err(Ok(_))`,
    /// a row that does not decode `Err(Err(_))`.
    async fn read_page(
        &self,
        after: Position,
        limit: usize,
        types: Option<&[&str]>,
    ) -> Result<PageReader, Result<sqlx::Error, StoreError>> {
        let (commit, seq) = position_params(after);
        let mut conn = self.inner.conns.get().await.map_err(Ok)?;
        let mut rows = sqlx::query(&self.inner.sql.read_all)
            .bind(commit)
            .bind(seq)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .bind(types)
            .fetch(&mut *conn);
        let mut page = PageReader::new(after, limit);
        while let Some(row) = rows.try_next().await.map_err(Ok)? {
            page.push(&row).map_err(Err)?;
        }
        drop(rows);
        conn.keep();
        Ok(page)
    }

    /// The retries of one read.
    fn retry(&self) -> Retry {
        Retry::new(self.inner.options.read_retry_for)
    }

    fn settle(&self) -> Settle {
        Settle {
            target: self
                .inner
                .last_commit
                .load(std::sync::atomic::Ordering::Acquire),
            started: std::time::Instant::now(),
            pause: Duration::from_micros(500),
        }
    }

    /// The rows of `stream` from `from` to `until` through `sql` (parameters: the stream, the
    /// first and the last version), decoded by `decode`. One streamed query: rows are decoded
    /// as they arrive from the socket, so memory holds what the consumer has not taken yet
    /// (the socket's buffers), not the stream; a slow consumer stops the server through TCP
    /// backpressure.
    fn stream_rows<'a, T: Versioned + Send + 'a>(
        &'a self,
        sql: &'a str,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
        decode: fn(&PgRow, &StreamId) -> Result<T, StoreError>,
    ) -> BoxStream<'a, Result<T, StoreError>> {
        let mut next = to_i64(from.get().max(1));
        Box::pin(async_stream::try_stream! {
            input::check_stream(stream)?;
            let Some(last) = self.stream_bound(stream, until).await? else {
                return;
            };
            let mut retry = self.retry();
            loop {
                // One query from `next` on; after a failure that retrying may fix, another
                // query on a fresh connection goes on after the last event handed out.
                let failed = match self.inner.conns.get().await {
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
    async fn stream_bound(
        &self,
        stream: &StreamId,
        until: ReadUntil,
    ) -> Result<Option<i64>, StoreError> {
        match until {
            ReadUntil::End => Ok(Some(i64::MAX)),
            ReadUntil::Version(v) => Ok(Some(to_i64(v.get()))),
            ReadUntil::Time(t) => {
                let last: i64 = self
                    .read_retrying("finding the version at a time", || {
                        self.on_conn(async |c| {
                            sqlx::query_scalar(&self.inner.sql.version_at_time)
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

/// Read-your-writes: a read that starts after this store handle's append returned waits
/// (briefly) until the horizon has passed that append, so the caller sees its own events.
/// Only transactions running at that moment can hold it back; the wait is bounded by
/// [`SETTLE_LIMIT`], after which the read returns what is readable.
struct Settle {
    target: i64,
    started: std::time::Instant,
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

/// How many pages' worth of events one query of [`PgStore::read_all_pages`] reads (at least
/// [`LOG_STREAM_MIN`]): enough that its planning and round trips are small beside its rows,
/// few enough that a query read without pause (and the snapshot it holds) lasts well under a
/// second.
const LOG_STREAM_PAGES: usize = 16;

/// The fewest events one query of [`PgStore::read_all_pages`] asks for.
const LOG_STREAM_MIN: usize = 4096;

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
/// [`PgStore::read_all`] then looks up ([`PageReader::finish`] leaves it at the last one
/// returned). `(horizon, 0)` would be a valid bound too, but it moves with every transaction
/// in the cluster, so an idle projection would save a new checkpoint (a write, which moves
/// the horizon again) on every poll.
pub(crate) struct PageReader {
    after: Position,
    events: Vec<RecordedEvent>,
    horizon: Option<i64>,
}

impl PageReader {
    pub(crate) fn new(after: Position, limit: usize) -> Self {
        Self {
            after,
            events: Vec::with_capacity(limit.min(4096)),
            horizon: None,
        }
    }

    /// Takes the next row of the page.
    pub(crate) fn push(&mut self, row: &PgRow) -> Result<(), StoreError> {
        let previous = self.events.last();
        let after = previous.map_or(self.after, |e| e.position);
        match log_row(row, after, previous)? {
            LogRow::Event(event) => self.events.push(event),
            LogRow::Meta { horizon } => self.horizon = horizon,
        }
        Ok(())
    }

    /// The page, and the horizon it was read under.
    pub(crate) fn finish(self) -> Result<(LogPage, i64), StoreError> {
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
