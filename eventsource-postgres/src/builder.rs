//! [`PgStoreBuilder`]: the options of a [`PgStore`], and opening one.

use std::time::Duration;

use eventsource_core::StoreError;
use sqlx::PgPool;

use crate::conns;
use crate::errors::backend;
use crate::schema::PgSchema;
use crate::store::PgStore;
use crate::wait::Polls;

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
    /// [`IDLE_CHECK_AFTER`](crate::IDLE_CHECK_AFTER) or more: sqlx's default pings before
    /// every use, a round trip per query that a busy store can spare (connections in steady
    /// use were checked when they were last released, moments before, or were kept by the
    /// store after statements it saw through: see [`PgStoreBuilder::reuse_connections`]). A connection that died since is
    /// discarded and another one is used; an append that still meets a dead connection is
    /// tried again, with its event ids looked up.
    pub async fn connect(self, url: &str) -> Result<PgStore, StoreError> {
        let pool = conns::own_pool(self.max_connections)
            .connect(url)
            .await
            .map_err(|e| backend("connecting", e))?;
        self.with_pool(pool).await
    }

    /// Uses an existing pool, with its own settings. sqlx's default pool pings a connection
    /// before every use; see [`PgStoreBuilder::connect`] for the check the store's own pool
    /// makes instead, which a pool of yours can copy.
    pub async fn with_pool(self, pool: PgPool) -> Result<PgStore, StoreError> {
        let schema = self.schema.map_err(StoreError::Config)?;
        let max = pool.options().get_max_connections() as usize;
        let reuse = self
            .reuse_connections
            .unwrap_or(max / 2)
            .min(max.saturating_sub(1));
        let polls = Polls {
            held: self.poll_interval,
            idle: self.idle_poll_interval,
        };
        let store = PgStore::new(pool, schema, reuse, self.listen, polls, self.read_retry_for);
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}
