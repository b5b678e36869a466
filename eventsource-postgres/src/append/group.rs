//! Group commit: concurrent direct appends of one store share a statement and a commit
//! (`Sql::append_group`) once as many appends as [`GroupCommit::in_flight`] allows are
//! running. Why, and what stays each append's own: the crate docs'
//! [Group commit](crate#group-commit).
//!
//! An append that finds a free place runs alone, as without grouping, and holds its place
//! ([`Place`]) until it ends. One that finds none waits in the queue. A place that is given
//! up while appends wait goes to a flusher task, which takes up to
//! [`GroupCommit::max_members`] of them, one per stream, in the order they came, and writes
//! them in one statement, until the queue is empty.

use std::collections::VecDeque;
use std::sync::Mutex;

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
use crate::errors::is_connection_lost;
use crate::store::PgStore;

/// How concurrent appends share statements and commits (off unless set with
/// [`PgStoreBuilder::group_commit`](crate::PgStoreBuilder::group_commit)). What a group is,
/// and what each of its appends keeps of its own: [Group commit](crate#group-commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    in_flight: usize,
    max_members: usize,
}

impl GroupCommit {
    /// Up to `in_flight` appends (at least 1) run as they come, each in its own statement;
    /// the appends that come while that many run wait, and go together, up to 64 at a time.
    pub fn new(in_flight: usize) -> Self {
        Self {
            in_flight: in_flight.max(1),
            max_members: 64,
        }
    }

    /// At most `n` appends (at least 1) in one statement (default 64).
    pub fn max_members(mut self, n: usize) -> Self {
        self.max_members = n.max(1);
        self
    }

    /// How many appends or groups may run at once.
    pub fn in_flight(&self) -> usize {
        self.in_flight
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
    /// Appends or flushers running.
    running: usize,
    /// Oldest first.
    waiting: VecDeque<Member>,
}

/// The groups of one store.
pub(crate) struct Groups {
    settings: GroupCommit,
    state: Mutex<State>,
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
pub(super) struct Place {
    store: PgStore,
}

impl Drop for Place {
    fn drop(&mut self) {
        let Some(groups) = self.store.groups() else {
            return;
        };
        let mut state = groups.lock();
        state.running -= 1;
        if !state.waiting.is_empty() {
            groups.start_flusher(&mut state, &self.store);
        }
    }
}

impl Groups {
    pub(crate) fn new(settings: GroupCommit) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A counter and a queue: a panic elsewhere cannot leave them half-changed.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes part with `write` at `expected`: alone if a place is free and nobody waits,
    /// else in the queue.
    pub(super) fn enter(&self, store: &PgStore, write: &StreamWrite, expected: i64) -> Entry {
        let mut state = self.lock();
        if state.running < self.settings.in_flight && state.waiting.is_empty() {
            state.running += 1;
            return Entry::Alone(Place {
                store: store.clone(),
            });
        }
        let (reply, answer) = oneshot::channel();
        state.waiting.push_back(Member {
            write: write.clone(),
            expected,
            reply,
        });
        if state.running < self.settings.in_flight {
            self.start_flusher(&mut state, store);
        }
        Entry::Queued(answer)
    }

    /// Starts a flusher on a free place. Without a runtime (a store dropped after its
    /// runtime) the waiting appends are dropped, and each sees its answer lost.
    fn start_flusher(&self, state: &mut State, store: &PgStore) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            state.waiting.clear();
            return;
        };
        state.running += 1;
        let place = Place {
            store: store.clone(),
        };
        let span = tracing::debug_span!("group commit", schema = store.schema().as_str());
        runtime.spawn(flush(place).instrument(span));
    }

    /// The next group: up to `max_members` waiting appends, one per stream, oldest first
    /// (an append to a stream already in the group waits for the next). Appends whose
    /// caller is gone are dropped unwritten.
    fn next_group(&self) -> Vec<Member> {
        let mut state = self.lock();
        state.waiting.retain(|m| !m.reply.is_closed());
        let mut group: Vec<Member> = Vec::new();
        let mut i = 0;
        while i < state.waiting.len() && group.len() < self.settings.max_members {
            let taken = group
                .iter()
                .any(|m| m.write.stream == state.waiting[i].write.stream);
            if taken {
                i += 1;
            } else if let Some(m) = state.waiting.remove(i) {
                group.push(m);
            }
        }
        group
    }
}

/// Writes groups until none waits; holds `place` meanwhile.
async fn flush(place: Place) {
    let store = &place.store;
    let Some(groups) = store.groups() else {
        return;
    };
    loop {
        let group = groups.next_group();
        match group.as_slice() {
            [] => return,
            [one] => {
                // Alone after all: the plain direct statement, cheaper than a group of one.
                let writes = std::slice::from_ref(&one.write);
                let attempt = store
                    .appender()
                    .once(&Request::new(writes), Path::Direct(one.expected), None)
                    .await;
                if let Some(m) = group.into_iter().next() {
                    let _ = m.reply.send(attempt);
                }
            }
            _ => {
                tracing::debug!(members = group.len(), "group");
                let attempts = write_group(store, &group).await;
                for (m, attempt) in group.into_iter().zip(attempts) {
                    // A caller that is gone needs no answer.
                    let _ = m.reply.send(attempt);
                }
            }
        }
    }
}

/// One attempt for each member of `group` (two or more, on distinct streams), in order.
async fn write_group(store: &PgStore, group: &[Member]) -> Vec<Attempt> {
    let rows = match run_group(store, group).await {
        Ok(rows) => rows,
        Err(e) => return failed_group(group.len(), &e),
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
async fn run_group(store: &PgStore, group: &[Member]) -> Result<Vec<PgRow>, GroupError> {
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
    let query = sqlx::query(&store.sql().append_group)
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
            Direct::StoredIds => Err(corrupt_reply("a group's row")),
        };
    }
    let stored: Option<bool> = row.try_get(5).map_err(bad)?;
    let locked: bool = row.try_get(6).map_err(bad)?;
    if stored == Some(true) || (actual == m.expected && !locked) {
        // A repeat of an append that committed (its ids are stored), or the stream was at the
        // expected version and the insert still met a stored row: a writer that committed
        // after this statement's snapshot, or an id stored since. `append_events` tells which.
        return Ok(Attempt::Retry {
            check_ids: true,
            connection_lost: false,
            error: StoreError::backend("appending", true, "a grouped append kept losing races"),
        });
    }
    Err(direct::not_written(&m.write, m.expected, actual, locked))
}
