//! Group commit: concurrent direct appends of one store share a statement and a commit
//! (`Sql::append_group`) once as many appends as [`GroupCommit::in_flight`] allows are
//! running. Why, and what stays each append's own: the crate docs'
//! [Group commit](crate#group-commit).
//!
//! An append that finds a free place runs alone, as without grouping, and holds its place
//! ([`Place`]) until it ends or stalls ([`hold`]). One that finds none waits in the queue. A place that is given
//! up while appends wait goes to a flusher task, which takes up to
//! [`GroupCommit::max_members`] of them, one per stream, in the order they came, and writes
//! them in one statement, until the queue is empty.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use eventsource_core::{StoreError, StreamWrite};
use sqlx::Row;
use sqlx::postgres::PgRow;
use tokio::sync::oneshot;
use tracing::Instrument;
use uuid::Uuid;

use super::direct::{self, Direct};
use super::outcome::corrupt_reply;
use super::request::metadata_json;
use super::{Attempt, Path, Request};
use crate::errors::{is_connection_lost, is_undefined_function};
use crate::store::{PgStore, WeakStore};

/// How concurrent appends share statements and commits (off unless set with
/// [`PgStoreBuilder::group_commit`](crate::PgStoreBuilder::group_commit)). What a group is,
/// and what each of its appends keeps of its own: [Group commit](crate#group-commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    in_flight: usize,
    max_members: usize,
    stalled_after: Duration,
}

impl GroupCommit {
    /// Up to `in_flight` appends (at least 1) run as they come, each in its own statement;
    /// the appends that come while that many run wait, and go together, up to 64 at a time.
    pub fn new(in_flight: usize) -> Self {
        Self {
            in_flight: in_flight.max(1),
            max_members: 64,
            stalled_after: Duration::from_millis(100),
        }
    }

    /// At most `n` appends (at least 1) in one statement (default 64).
    pub fn max_members(mut self, n: usize) -> Self {
        self.max_members = n.max(1);
        self
    }

    /// An append or a group still running after `bound` (default 100 ms, at least 1 ms)
    /// gives its place up to the appends that wait, and runs on outside the count of
    /// [`in_flight`](Self::in_flight), with at most `in_flight` others that stalled (beyond
    /// them, a stalled one keeps its place). A group's lock waits end at `bound` too: a
    /// member that waits for a row another transaction holds (a slow writer of the same
    /// stream, say) fails its group, and each member goes on alone. So a stalled append
    /// holds up only itself, not every append of the store, nor for long the members of its
    /// group.
    pub fn stalled_after(mut self, bound: Duration) -> Self {
        self.stalled_after = bound.max(Duration::from_millis(1));
        self
    }

    /// How many appends or groups may run at once.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// How many appends at most go in one statement.
    pub fn members(&self) -> usize {
        self.max_members
    }

    /// How long an append or a group runs before it gives its place up.
    pub fn stall_bound(&self) -> Duration {
        self.stalled_after
    }
}

impl Default for GroupCommit {
    /// [`GroupCommit::new`] with 4 in flight.
    fn default() -> Self {
        Self::new(4)
    }
}

/// An append waiting for a group.
struct Member {
    /// The append's one write (a copy: the flusher outlives the caller's borrow).
    write: StreamWrite,
    /// Its exact expected version (`NoStream` is 0).
    expected: i64,
    /// Where its attempt's outcome goes.
    reply: oneshot::Sender<Attempt>,
}

#[derive(Default)]
struct State {
    /// Appends or flushers holding a place.
    running: usize,
    /// Appends or groups that gave their place up when they stalled and still run.
    stalled: usize,
    /// Oldest first.
    waiting: VecDeque<Member>,
}

/// The groups of one store.
pub(crate) struct Groups {
    settings: GroupCommit,
    /// The store's schema, for the flushers' spans.
    schema: String,
    state: Mutex<State>,
    /// Set once the schema turned out to lack `append_group_within` (a schema not migrated
    /// to 0011): appends then run as without grouping.
    off: AtomicBool,
}

/// How an append takes part.
pub(super) enum Entry {
    /// It runs alone, holding a place until this is dropped.
    Alone(Place),
    /// It waits for a group; its attempt's outcome comes here.
    Queued(oneshot::Receiver<Attempt>),
}

/// A place among those [`GroupCommit::in_flight`] allows; given up on drop, to a flusher when
/// appends wait (so a cancelled append, or a flusher that ends however it ends, never leaves
/// the queue without one).
///
/// It holds the store weakly: a flusher that is done keeps no handle on it.
pub(super) struct Place {
    groups: Arc<Groups>,
    store: WeakStore,
    /// False for a flusher's place until the flusher first runs. One dropped before (its
    /// runtime shut down, or there is none) empties the queue instead of starting another
    /// flusher that would be dropped the same way: each waiting append sees its answer lost
    /// (and looks its ids up when it tries again).
    started: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        let groups = &self.groups;
        if !self.started {
            let dropped = {
                let mut state = groups.lock();
                state.running -= 1;
                std::mem::take(&mut state.waiting)
            };
            // Outside the lock: dropping a member wakes its caller.
            drop(dropped);
            return;
        }
        let start = {
            let mut state = groups.lock();
            state.running -= 1;
            groups.claim(&mut state)
        };
        // Outside the lock: a spawn on a closed runtime drops the flusher (and its place) at
        // once, on this thread.
        if start {
            groups.start_flusher(self.store.clone());
        }
    }
}

impl Groups {
    pub(crate) fn new(settings: GroupCommit, schema: &str) -> Self {
        Self {
            settings,
            schema: schema.to_owned(),
            state: Mutex::new(State::default()),
            off: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A counter and a queue: a panic elsewhere cannot leave them half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether appends may be grouped (the schema has `append_group_within`).
    pub(super) fn on(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    /// Takes part with `write` at `expected`: alone if a place is free and nobody waits,
    /// else in the queue.
    pub(super) fn enter(
        self: &Arc<Self>,
        store: &PgStore,
        write: &StreamWrite,
        expected: i64,
    ) -> Entry {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            if state.running < self.settings.in_flight && state.waiting.is_empty() {
                state.running += 1;
                return Entry::Alone(Place {
                    groups: Arc::clone(self),
                    store: store.downgrade(),
                    started: true,
                });
            }
            state.waiting.push_back(Member {
                write: write.clone(),
                expected,
                reply,
            });
            self.claim(&mut state)
        };
        if start {
            self.start_flusher(store.downgrade());
        }
        Entry::Queued(answer)
    }

    /// Takes a free place for a flusher when appends wait for one; the caller then starts
    /// it ([`Groups::start_flusher`]), after letting the lock go.
    fn claim(&self, state: &mut State) -> bool {
        let free = !state.waiting.is_empty() && state.running < self.settings.in_flight;
        if free {
            state.running += 1;
        }
        free
    }

    /// Starts a flusher on the place [`Groups::claim`] took. Without a runtime, or on one
    /// that is shutting down, the flusher's place is dropped before it runs, and the waiting
    /// appends with it.
    fn start_flusher(self: &Arc<Self>, store: WeakStore) {
        let place = Place {
            groups: Arc::clone(self),
            store,
            started: false,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let span = tracing::debug_span!("group commit", schema = self.schema.as_str());
                drop(runtime.spawn(flush(place).instrument(span)));
            }
            Err(_) => drop(place),
        }
    }

    /// The next group: up to `max_members` waiting appends, one per stream, oldest first
    /// (an append to a stream already in the group waits for the next). Appends whose
    /// caller is gone are dropped unwritten.
    fn next_group(&self) -> Vec<Member> {
        let mut group: Vec<Member> = Vec::new();
        let mut gone = Vec::new();
        {
            let mut state = self.lock();
            let mut streams = HashSet::new();
            let queue = std::mem::take(&mut state.waiting);
            for m in queue {
                if m.reply.is_closed() {
                    gone.push(m);
                } else if group.len() < self.settings.max_members
                    && streams.insert(m.write.stream.clone())
                {
                    group.push(m);
                } else {
                    state.waiting.push_back(m);
                }
            }
        }
        drop(gone);
        group
    }

    /// Turns grouping off for good: the schema has no `append_group_within`.
    fn turn_off(&self, e: &sqlx::Error) {
        if !self.off.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %e,
                "group commit is off: the schema lacks append_group_within (migration 0011); \
                 run the store's migrations"
            );
        }
    }
}

/// Runs `work` holding `place` until it ends or runs longer than the stall bound
/// ([`GroupCommit::stalled_after`]); then the place is given up (to a flusher, when appends
/// wait) and `work` goes on without it.
pub(super) async fn hold<T>(place: &mut Option<Place>, work: impl Future<Output = T>) -> T {
    let Some(bound) = place.as_ref().map(|p| p.groups.settings.stalled_after) else {
        return work.await;
    };
    let mut work = std::pin::pin!(work);
    tokio::select! {
        biased;
        out = &mut work => return out,
        () = tokio::time::sleep(bound) => {}
    }
    let Some(groups) = place.as_ref().map(|p| Arc::clone(&p.groups)) else {
        return work.await;
    };
    let Some(_stalled) = Stalled::enter(&groups) else {
        // As many run stalled as may run at all: this one keeps its place, so a server slow
        // for every append does not make the appends in flight grow with the queue.
        return work.await;
    };
    tracing::debug!(
        ?bound,
        "an append is stalled; its place goes to the waiting ones"
    );
    *place = None;
    work.await
}

/// One of the at most [`GroupCommit::in_flight`] appends or groups that run on stalled, having
/// given their place up; counted until dropped.
struct Stalled(Arc<Groups>);

impl Stalled {
    /// Counts one more stalled, unless as many as `in_flight` are.
    fn enter(groups: &Arc<Groups>) -> Option<Self> {
        let mut state = groups.lock();
        if state.stalled >= groups.settings.in_flight {
            return None;
        }
        state.stalled += 1;
        Some(Self(Arc::clone(groups)))
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.0.lock().stalled -= 1;
    }
}

/// Writes groups until none waits; holds `place` meanwhile, or until a group stalls.
async fn flush(mut place: Place) {
    place.started = true;
    let groups = Arc::clone(&place.groups);
    let store = place.store.clone();
    let mut place = Some(place);
    while place.is_some() {
        let group = groups.next_group();
        if group.is_empty() {
            return;
        }
        // Upgraded for the group's statement only: a handle held between groups would count
        // as a clone of the store.
        let Some(store) = store.upgrade() else {
            return;
        };
        let attempts = hold(&mut place, write_members(&store, &groups, &group)).await;
        drop(store);
        for (m, attempt) in group.into_iter().zip(attempts) {
            // A caller that is gone needs no answer.
            let _ = m.reply.send(attempt);
        }
    }
}

/// One attempt for each member of `group` (one or more, on distinct streams), in order.
async fn write_members(store: &PgStore, groups: &Groups, group: &[Member]) -> Vec<Attempt> {
    if let [one] = group {
        // Alone after all: the plain direct statement, cheaper than a group of one.
        let writes = std::slice::from_ref(&one.write);
        let attempt = store
            .appender()
            .once(&Request::new(writes), Path::Direct(one.expected), None)
            .await;
        return vec![attempt];
    }
    tracing::debug!(members = group.len(), "group");
    write_group(store, groups, group).await
}

/// One attempt for each member of `group` (two or more, on distinct streams), in order.
async fn write_group(store: &PgStore, groups: &Groups, group: &[Member]) -> Vec<Attempt> {
    let rows = match run_group(store, groups, group).await {
        Ok(rows) => rows,
        Err(e) => {
            if let GroupError::Sql(e) = &e
                && is_undefined_function(e)
            {
                groups.turn_off(e);
            }
            return failed_group(group.len(), &e);
        }
    };
    if rows.len() != group.len() {
        return failed_group(
            group.len(),
            &GroupError::Reply(corrupt_reply("a group's row count")),
        );
    }
    group
        .iter()
        .zip(&rows)
        .map(|(m, row)| member_attempt(m, row))
        .collect()
}

/// Why a group's statement gave no rows to answer with.
enum GroupError {
    Sql(sqlx::Error),
    Reply(StoreError),
}

/// Every member's attempt after the group's statement failed: nothing was written, unless the
/// connection was lost on the way (then it may have been), and each is tried again on its own
/// (the next attempt looks its ids up first when it may have been written).
fn failed_group(n: usize, e: &GroupError) -> Vec<Attempt> {
    let (connection_lost, error) = match e {
        GroupError::Sql(e) => (
            is_connection_lost(e),
            StoreError::backend("appending", true, format!("a group commit failed: {e}")),
        ),
        GroupError::Reply(e) => (false, e.clone()),
    };
    tracing::debug!(%error, members = n, "group failed; each append goes on alone");
    (0..n)
        .map(|_| Attempt::Retry {
            check_ids: connection_lost,
            connection_lost,
            error: error.clone(),
        })
        .collect()
}

/// The group's statement, on a connection the store keeps.
async fn run_group(
    store: &PgStore,
    groups: &Groups,
    group: &[Member],
) -> Result<Vec<PgRow>, GroupError> {
    let n: usize = group.iter().map(|m| m.write.events.len()).sum();
    let mut streams = Vec::with_capacity(group.len());
    let mut expected = Vec::with_capacity(group.len());
    let mut counts = Vec::with_capacity(group.len());
    let mut member_of = Vec::with_capacity(n);
    let mut ids: Vec<Uuid> = Vec::with_capacity(n);
    let mut types = Vec::with_capacity(n);
    let mut schema_versions = Vec::with_capacity(n);
    let mut payloads: Vec<&[u8]> = Vec::with_capacity(n);
    let mut metadata = Vec::with_capacity(n);
    for (i, m) in group.iter().enumerate() {
        let index = i64::try_from(i + 1).unwrap_or(i64::MAX);
        streams.push(m.write.stream.as_str());
        expected.push(m.expected);
        counts.push(i64::try_from(m.write.events.len()).unwrap_or(i64::MAX));
        for e in &m.write.events {
            member_of.push(index);
            ids.push(*e.id.as_uuid());
            types.push(e.event_type.as_str());
            schema_versions.push(i64::from(e.schema_version));
            payloads.push(&e.payload);
            metadata.push(metadata_json(e).map_err(GroupError::Reply)?);
        }
    }
    // A group's lock waits end with the stall bound (at least 1 ms: 0 would mean none), so
    // one member that waits for another transaction's row fails the group rather than hold
    // up every other member; each is then tried again on its own.
    let stall_ms = u64::try_from(groups.settings.stalled_after.as_millis()).unwrap_or(u64::MAX);
    let lock_wait = format!("{}ms", stall_ms.clamp(1, i32::MAX as u64));
    let query = sqlx::query(&store.sql().append_group)
        .bind(&lock_wait)
        .bind(&streams)
        .bind(&expected)
        .bind(&counts)
        .bind(&member_of)
        .bind(&ids)
        .bind(&types)
        .bind(&schema_versions)
        .bind(&payloads)
        .bind(&metadata);
    let mut conn = store.conns().get().await.map_err(GroupError::Sql)?;
    let result = query.fetch_all(&mut *conn).await;
    conn.keep_after(result.as_ref().err());
    result.map_err(GroupError::Sql)
}

/// What one member's row says: written, or why not.
fn member_attempt(m: &Member, row: &PgRow) -> Attempt {
    match member_row(m, row) {
        Ok(attempt) => attempt,
        Err(e) => Attempt::Failed(e),
    }
}

fn member_row(m: &Member, row: &PgRow) -> Result<Attempt, StoreError> {
    let bad = |_| corrupt_reply("a group's row");
    let actual: i64 = row.try_get(0).map_err(bad)?;
    let written: i64 = row.try_get(1).map_err(bad)?;
    let writes = std::slice::from_ref(&m.write);
    if written > 0 {
        let commit: Option<i64> = row.try_get(2).map_err(bad)?;
        let seqs: Option<Vec<i64>> = row.try_get(3).map_err(bad)?;
        let recorded_at: Option<DateTime<Utc>> = row.try_get(4).map_err(bad)?;
        let (Some(commit), Some(seqs), Some(recorded_at)) = (commit, seqs, recorded_at) else {
            return Err(corrupt_reply("a null column"));
        };
        return match direct::written(writes, &m.write, m.expected + 1, commit, seqs, recorded_at)? {
            Direct::Written(outcome) => Ok(Attempt::Done(outcome)),
            Direct::Undecided => Err(corrupt_reply("a group's row")),
        };
    }
    let stored: Option<bool> = row.try_get(5).map_err(bad)?;
    let locked: bool = row.try_get(6).map_err(bad)?;
    if let Some(error) =
        direct::not_written(&m.write, m.expected, actual, stored == Some(true), locked)
    {
        return Err(error);
    }
    // A repeat of an append that committed (its ids are stored), or the stream was at the
    // expected version and the insert still met a stored row: a writer that committed after
    // this statement's snapshot, or an id stored since. `append_events` tells which.
    Ok(Attempt::Retry {
        check_ids: true,
        connection_lost: false,
        error: StoreError::backend("appending", true, "a grouped append kept losing races"),
    })
}
