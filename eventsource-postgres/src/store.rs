//! [`PgStore`]: the handle, the state its clones share, and the [`EventStore`]
//! implementation, which hands each call to the module that does it.

use std::sync::Arc;
use std::time::Duration;

use eventsource_core::store::lock::{LocalLocks, lock_order};
use eventsource_core::store::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, input, snapshot_then_events,
};
use eventsource_core::{
    Commit, EventId, EventStore, FoldEvent, FoldItem, LogPage, Position, ReadUntil, RecordedEvent,
    Snapshot, StoreError, StreamId, StreamLock, StreamWrite, Version,
};
use futures::stream::BoxStream;
use sqlx::PgPool;
use tracing::Instrument;

use crate::append::{Appender, GroupCommit, Groups, Outcome};
use crate::builder::PgStoreBuilder;
use crate::conns::{Conns, Kept};
use crate::context::PgProjectionContext;
use crate::horizon::{self, PgLag};
use crate::inline::Inlines;
use crate::read::Reader;
use crate::read_log::OwnWrites;
use crate::rows::{self, Bound};
use crate::schema::PgSchema;
use crate::sql::Sql;
use crate::wait::{Live, Polls};
use crate::{dead_letters, meta, migrate, read_log, read_stream, versions};
use eventsource_core::store::{ProjectionVersions, VersionStep};

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

/// What the clones of a store share.
struct Inner {
    /// The wake-ups of waiters, and the LISTEN and NOTIFY tasks (stopped when this drops).
    live: Live,
    pool: PgPool,
    /// The connections kept between operations (see [`crate::conns`]).
    conns: Arc<Conns>,
    schema: PgSchema,
    sql: Sql,
    /// How long a read retries ([`PgStoreBuilder::read_retry_for`]).
    read_retry_for: Duration,
    /// The newest append of this store, which its reads wait for.
    own_writes: OwnWrites,
    inline: Inlines,
    /// The in-process queues of the writers' locks (see [`crate::lock`]).
    local: LocalLocks,
    /// Writers' locks handed on from one locker of this process to the next (see
    /// [`crate::lock`]).
    handoffs: crate::lock::Handoffs,
    /// The groups of group commit, when it is on ([`PgStoreBuilder::group_commit`]).
    groups: Option<Arc<Groups>>,
}

/// A store that may be gone: [`PgStore::downgrade`].
#[derive(Clone)]
pub(crate) struct WeakStore(std::sync::Weak<Inner>);

impl WeakStore {
    /// The store, while a handle on it lives.
    pub(crate) fn upgrade(&self) -> Option<PgStore> {
        self.0.upgrade().map(|inner| PgStore { inner })
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

    /// A store on `pool` in `schema`, keeping at most `reuse` connections between operations,
    /// its waiters woken through LISTEN/NOTIFY when `listen`, polling at `polls`, its reads
    /// retrying for `read_retry_for`, and its appends grouped by `group_commit`.
    pub(crate) fn new(
        pool: PgPool,
        schema: PgSchema,
        reuse: usize,
        listen: bool,
        polls: Polls,
        read_retry_for: Duration,
        group_commit: Option<GroupCommit>,
    ) -> Self {
        let groups = group_commit.map(|g| Arc::new(Groups::new(g, schema.as_str())));
        Self {
            inner: Arc::new(Inner {
                live: Live::new(pool.clone(), &schema, listen, polls),
                conns: Conns::new(pool.clone(), reuse),
                sql: Sql::new(&schema),
                pool,
                schema,
                read_retry_for,
                own_writes: OwnWrites::default(),
                inline: Inlines::default(),
                local: LocalLocks::default(),
                handoffs: crate::lock::Handoffs::default(),
                groups,
            }),
        }
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

    /// How far the readable horizon is behind the newest committed event, and which
    /// transactions hold it (see the crate docs on the horizon).
    pub async fn lag(&self) -> Result<PgLag, StoreError> {
        horizon::lag(&self.inner.pool, &self.inner.sql).await
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

    /// Registers an inline projection: it runs inside every append's own transaction, so its
    /// read model is updated the moment the append returns (or not at all). Register before
    /// sharing the store or appending with it (it needs the only handle, and with group
    /// commit on, a group that just answered may still hold a weak one for a moment).
    /// Appends run one at a time through each inline projection's handlers.
    pub fn with_inline_projection<P>(mut self, projection: P) -> Result<Self, StoreError>
    where
        P: eventsource_core::Projection<Context = PgProjectionContext>,
    {
        let inner = Arc::get_mut(&mut self.inner).ok_or_else(|| {
            StoreError::Config("register inline projections before cloning the store".into())
        })?;
        inner.inline.push(projection);
        Ok(self)
    }

    /// The groups of group commit, when it is on.
    pub(crate) fn groups(&self) -> Option<&Arc<Groups>> {
        self.inner.groups.as_ref()
    }

    /// A handle that does not keep the store alive (while it lives,
    /// [`PgStore::with_inline_projection`] refuses, as for a clone).
    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// What an append needs of the store.
    pub(crate) fn appender(&self) -> Appender<'_> {
        let inner = &*self.inner;
        Appender::new(&inner.conns, &inner.pool, &inner.sql, &inner.inline, self)
    }

    /// The connections the store keeps between operations.
    pub(crate) fn conns(&self) -> &Arc<Conns> {
        &self.inner.conns
    }

    /// The in-process queues of the writers' locks.
    pub(crate) fn handoffs(&self) -> &crate::lock::Handoffs {
        &self.inner.handoffs
    }

    pub(crate) fn local_locks(&self) -> &LocalLocks {
        &self.inner.local
    }

    /// The store's statements.
    pub(crate) fn sql(&self) -> &Sql {
        &self.inner.sql
    }

    /// What the store's reads run on.
    fn reader(&self) -> Reader<'_> {
        Reader::new(
            &self.inner.conns,
            &self.inner.sql,
            self.inner.read_retry_for,
        )
    }

    /// Appends `writes`, on the session of the writers' lock in `lock` when there is one
    /// (`None` in it once that session is gone: the append then runs as any other writer's,
    /// and meets the lock, if another session holds it now, like one).
    pub(crate) async fn append_as(
        &self,
        writes: Vec<StreamWrite>,
        lock: Option<&mut Option<Kept>>,
    ) -> Result<Commit, StoreError> {
        let writes = eventsource_core::validate_writes(writes)?;
        if writes.is_empty() {
            return Ok(Commit::empty());
        }
        let inner = &*self.inner;
        let span = tracing::debug_span!(
            "append",
            store = "postgres",
            schema = inner.schema.as_str(),
            streams = writes.len()
        );
        async {
            let (commit, written) = match self.appender().append(&writes, lock).await? {
                Outcome::Written(commit, _) => (commit, true),
                Outcome::AlreadyStored(commit) => (commit, false),
            };
            inner.own_writes.saw(commit.position);
            if written {
                inner.live.announce();
                tracing::debug!(position = %commit.position, events = commit.event_count(), "appended");
            } else {
                tracing::debug!(position = %commit.position, "events already stored");
            }
            Ok(commit)
        }
        .instrument(span)
        .await
    }
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
        read_stream::events(self.reader(), stream, from, until)
    }

    fn read_stream_for_fold<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldEvent, StoreError>> {
        read_stream::fold_events(self.reader(), stream, from, until)
    }

    fn read_stream_from_snapshot<'a>(
        &'a self,
        stream: &'a StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> BoxStream<'a, Result<FoldItem, StoreError>> {
        match rows::bound(until) {
            Bound::Version(last) => {
                read_stream::from_snapshot(self.reader(), stream, schema_version, last)
            }
            // Time travel finds the version at the time first: two reads, as by default.
            Bound::Time(_) => snapshot_then_events(self, stream, schema_version, until),
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
        read_stream::version(self.reader(), stream).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
        types: Option<&[&str]>,
    ) -> Result<LogPage, StoreError> {
        let settle = self.inner.own_writes.settle();
        read_log::read_all(self.reader(), settle, after, limit, types).await
    }

    fn read_all_pages<'a>(
        &'a self,
        after: Position,
        limit: usize,
        types: Option<&'a [&'a str]>,
    ) -> BoxStream<'a, Result<LogPage, StoreError>> {
        read_log::read_all_pages(&self.inner.pool, &self.inner.sql, after, limit, types)
    }

    async fn head(&self) -> Result<Position, StoreError> {
        read_log::head(self.reader(), self.inner.own_writes.settle()).await
    }

    async fn wait_for_events(&self, after: Position) -> Result<(), StoreError> {
        self.inner.live.wait_for_events(self.reader(), after).await
    }

    async fn event_by_id(&self, id: EventId) -> Result<Option<RecordedEvent>, StoreError> {
        meta::event_by_id(self.reader(), id).await
    }

    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<(), StoreError> {
        meta::save_snapshot(self.reader(), snapshot).await
    }

    async fn load_snapshot(
        &self,
        stream: &StreamId,
        schema_version: u32,
        until: ReadUntil,
    ) -> Result<Option<Snapshot>, StoreError> {
        meta::load_snapshot(self.reader(), stream, schema_version, until).await
    }

    async fn load_checkpoint(&self, name: &str) -> Result<Option<Position>, StoreError> {
        meta::load_checkpoint(self.reader(), name).await
    }

    async fn save_checkpoint(&self, name: &str, position: Position) -> Result<(), StoreError> {
        meta::save_checkpoint(self.reader(), name, position).await
    }

    async fn write_dead_letters(
        &self,
        projection: &str,
        changes: &[DeadLetterChange],
    ) -> Result<(), StoreError> {
        dead_letters::save(self.reader(), projection, changes).await
    }

    async fn dead_letters(
        &self,
        projection: &str,
        query: &DeadLetterQuery,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        dead_letters::list(self.reader(), projection, query).await
    }

    async fn projection_versions(&self, name: &str) -> Result<ProjectionVersions, StoreError> {
        versions::load(self.reader(), name).await
    }

    async fn switch_version(
        &self,
        name: &str,
        step: VersionStep,
    ) -> Result<ProjectionVersions, StoreError> {
        versions::switch(self.reader(), name, step).await
    }
}
