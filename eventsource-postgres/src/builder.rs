//! [`PgStoreBuilder`]: the options of a [`PgStore`], and opening one.

use std::time::Duration;

use eventsource_core::StoreError;
use sqlx::PgPool;

use crate::append::GroupCommit;
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
    group_commit: Option<GroupCommit>,
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
            group_commit: None,
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
    /// the pool's size, so the pool always has one of its own). Why, and how long one is
    /// kept: [Connections](crate#connections).
    pub fn reuse_connections(mut self, n: usize) -> Self {
        self.reuse_connections = Some(n);
        self
    }

    /// How long a read keeps trying after failures that retrying may fix (default 10 s; zero
    /// retries nothing); a failure that lasts longer surfaces as a retryable
    /// [`StoreError::Backend`]. Which calls retry, and how a stream read goes on:
    /// [Reads ride out dropped connections](crate#reads-ride-out-dropped-connections).
    pub fn read_retry_for(mut self, bound: Duration) -> Self {
        self.read_retry_for = bound;
        self
    }

    /// Group commit (default off): once `settings.in_flight()` appends are running, the
    /// appends that come meanwhile wait and go together, in one statement and one commit.
    /// Each keeps its own outcome: a conflict fails only its own append. `None` turns it off.
    /// What is grouped and what it costs: [Group commit](crate#group-commit).
    pub fn group_commit(mut self, settings: impl Into<Option<GroupCommit>>) -> Self {
        self.group_commit = settings.into();
        self
    }

    /// Connects to `url` with a pool of its own, which checks a connection before handing it
    /// out only after [`IDLE_CHECK_AFTER`](crate::IDLE_CHECK_AFTER) idle (see
    /// [Connections](crate#connections)).
    pub async fn connect(self, url: &str) -> Result<PgStore, StoreError> {
        let pool = conns::own_pool(self.max_connections)
            .connect(url)
            .await
            .map_err(|e| backend("connecting", e))?;
        self.with_pool(pool).await
    }

    /// Uses an existing pool, with its own settings; [Connections](crate#connections) shows
    /// the check the store's own pool makes before handing a connection out, which a pool of
    /// yours can copy.
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
        let store = PgStore::new(
            pool,
            schema,
            reuse,
            self.listen,
            polls,
            self.read_retry_for,
            self.group_commit,
        );
        if self.migrate {
            store.migrate().await?;
        }
        Ok(store)
    }
}
