//! Group commit: appends that wait for a place go together in one statement and one commit,
//! each with its own outcome; a group that fails, or is cut off by the server, leaves every
//! member to go on alone, written exactly once or not at all.
//!
//! The tests make groups on purpose: a raw session takes `LOCK TABLE events IN SHARE MODE`,
//! so the one append that holds the store's only place (`GroupCommit::new(1)`) waits on the
//! server while the others queue behind it; the lock is released once they all wait.

use std::collections::HashSet;
use std::time::Duration;

use eventsource_core::{
    Commit, EventId, EventStore, ExpectedVersion, NewEvent, Position, ReadUntil, StoreError,
    StreamId, StreamWrite, Version,
};
use eventsource_postgres::{GroupCommit, PgStore};
use futures::TryStreamExt;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

use crate::common::{self, event, write};

/// A store in a fresh schema whose appends group once one is running, and whose stalled
/// appends and groups give up their place after `stalled_after`.
async fn grouped_store_stalling_after(stalled_after: Duration) -> PgStore {
    common::builder()
        .group_commit(GroupCommit::new(1).stalled_after(stalled_after))
        .connect(&common::database_url())
        .await
        .unwrap()
}

/// A store in a fresh schema whose appends group once one is running, and whose appends keep
/// their place however long they wait (the tests hold it on purpose).
async fn grouped_store() -> PgStore {
    grouped_store_stalling_after(Duration::from_secs(600)).await
}

/// A raw session in a transaction that has inserted version 1 of `stream` (uncommitted): a
/// writer of that version waits for it.
async fn hold_version_one(store: &PgStore, stream: &str) -> PgConnection {
    let s = store.schema().as_str();
    let mut conn = common::raw().await;
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(&format!(
        "INSERT INTO {s}.events (commit_id, stream_id, version, event_id, event_type, \
         schema_version, payload, recorded_at) SELECT \
         ({s}.store_era() << 48) | pg_current_xact_id()::text::bigint, $1, 1, \
         gen_random_uuid(), 'test.added', 1, '\\x7b7d'::bytea, now()"
    ))
    .bind(stream)
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// A raw session holding `events` in share mode (every insert waits) until committed.
async fn block_inserts(store: &PgStore) -> PgConnection {
    let mut conn = common::raw().await;
    sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {}.events IN SHARE MODE",
        store.schema().as_str()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn
}

/// How many of the store's statements wait for the table lock.
async fn waiting_inserts(store: &PgStore) -> i64 {
    let mut conn = common::raw().await;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
         AND datname = current_database() AND query LIKE '%' || $1 || '%'",
    )
    .bind(store.schema().as_str())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    n
}

/// Waits until `n` of the store's statements wait for the table lock.
async fn until_waiting(store: &PgStore, n: i64) {
    for _ in 0..200 {
        if waiting_inserts(store).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{n} statements never waited for the table lock");
}

/// Blocks inserts ([`block_inserts`]), then starts an append of `e` to stream `alone` and
/// waits until it waits for the lock, holding the store's one place: appends started now
/// queue. Commit the returned session to let them go.
async fn hold_the_place(
    store: &PgStore,
    e: NewEvent,
) -> (PgConnection, JoinHandle<Result<Commit, StoreError>>) {
    let blocker = block_inserts(store).await;
    let alone = spawn_append(store, write("alone", ExpectedVersion::NoStream, vec![e]));
    until_waiting(store, 1).await;
    (blocker, alone)
}

fn spawn_append(store: &PgStore, w: StreamWrite) -> JoinHandle<Result<Commit, StoreError>> {
    let store = store.clone();
    tokio::spawn(async move { store.append(vec![w]).await })
}

async fn versions(store: &PgStore, stream: &str) -> Vec<u64> {
    store
        .read_stream(&StreamId::new(stream), Version::FIRST, ReadUntil::End)
        .map_ok(|e| e.version.get())
        .try_collect()
        .await
        .unwrap()
}

/// Every event of the log, as (stream, version, id).
async fn log(store: &PgStore) -> Vec<(String, u64, EventId)> {
    store
        .read_all(Position::ZERO, 10_000, None)
        .await
        .unwrap()
        .events
        .into_iter()
        .map(|e| (e.stream.as_str().to_owned(), e.version.get(), e.id))
        .collect()
}

/// One group of many kinds of members: each gets its own outcome, and the written ones share
/// one commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_gives_each_append_its_own_outcome_and_writes_the_rest_in_one_commit() {
    let _horizon = common::horizon_exclusive().await;
    let store = grouped_store().await;
    // Streams that exist before: one to conflict on, one whose append is repeated, one whose
    // event id another append reuses, one under another session's writers' lock.
    store
        .append(vec![write(
            "taken",
            ExpectedVersion::NoStream,
            vec![event(0)],
        )])
        .await
        .unwrap();
    let repeated = event(1);
    let first = store
        .append(vec![write(
            "repeated",
            ExpectedVersion::NoStream,
            vec![repeated.clone()],
        )])
        .await
        .unwrap();
    let owner = event(2);
    store
        .append(vec![write(
            "owner",
            ExpectedVersion::NoStream,
            vec![owner.clone()],
        )])
        .await
        .unwrap();
    for locked in ["locked", "locked-reusing"] {
        store
            .append(vec![write(
                locked,
                ExpectedVersion::NoStream,
                vec![event(3)],
            )])
            .await
            .unwrap();
    }
    let other = common::same_schema(&store, &common::database_url()).await;
    let held = other
        .lock_streams(&[StreamId::new("locked"), StreamId::new("locked-reusing")])
        .await
        .unwrap();

    let (mut blocker, alone) = hold_the_place(&store, event(4)).await;
    let good: Vec<_> = (0..10)
        .map(|i| {
            spawn_append(
                &store,
                write(
                    &format!("good-{i}"),
                    ExpectedVersion::NoStream,
                    vec![event(10 + i)],
                ),
            )
        })
        .collect();
    let several = spawn_append(
        &store,
        write(
            "several",
            ExpectedVersion::NoStream,
            vec![event(20), event(21), event(22)],
        ),
    );
    let conflict = spawn_append(
        &store,
        write("taken", ExpectedVersion::NoStream, vec![event(5)]),
    );
    let repeat = spawn_append(
        &store,
        write(
            "repeated",
            ExpectedVersion::NoStream,
            vec![repeated.clone()],
        ),
    );
    let reused = spawn_append(
        &store,
        write(
            "thief",
            ExpectedVersion::NoStream,
            vec![NewEvent::new("test.added", 1, b"{\"n\":99}".to_vec()).with_id(owner.id)],
        ),
    );
    let locked = spawn_append(
        &store,
        write(
            "locked",
            ExpectedVersion::Exact(Version::new(1)),
            vec![event(6)],
        ),
    );
    // At its version on a locked stream, with an id another stream holds: the reuse is what
    // it is told, as without grouping.
    let locked_reusing = spawn_append(
        &store,
        write(
            "locked-reusing",
            ExpectedVersion::Exact(Version::new(1)),
            vec![NewEvent::new("test.added", 1, b"{\"n\":98}".to_vec()).with_id(owner.id)],
        ),
    );
    // Two appends to one stream at the same version: they never share a group, and one wins.
    let twins: Vec<_> = (0..2)
        .map(|i| {
            spawn_append(
                &store,
                write("twin", ExpectedVersion::NoStream, vec![event(30 + i)]),
            )
        })
        .collect();
    // Let every append reach the queue, then let the inserts go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();

    alone.await.unwrap().unwrap();
    let mut commits = HashSet::new();
    for (i, h) in good.into_iter().enumerate() {
        let c = h.await.unwrap().unwrap();
        assert_eq!(c.streams.len(), 1);
        assert_eq!(c.streams[0].stream.as_str(), format!("good-{i}"));
        assert_eq!(c.streams[0].first_version, Version::new(1));
        assert_eq!(c.streams[0].last_version, Version::new(1));
        commits.insert(c.position.commit());
    }
    let c = several.await.unwrap().unwrap();
    assert_eq!(
        (c.streams[0].first_version, c.streams[0].last_version),
        (Version::new(1), Version::new(3))
    );
    assert!(c.first_position < c.position);
    commits.insert(c.position.commit());
    assert_eq!(
        commits.len(),
        1,
        "the appends that waited together were written in one commit"
    );
    match conflict.await.unwrap() {
        Err(StoreError::Conflict { stream, actual, .. }) => {
            assert_eq!(stream.as_str(), "taken");
            assert_eq!(actual, Version::new(1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let again = repeat.await.unwrap().unwrap();
    assert_eq!(
        again.position, first.position,
        "a repeat answers the first commit"
    );
    match reused.await.unwrap() {
        Err(StoreError::EventIdReused { id, .. }) => assert_eq!(id, owner.id),
        other => panic!("expected a reused id, got {other:?}"),
    }
    match locked.await.unwrap() {
        Err(StoreError::StreamLocked { stream }) => assert_eq!(stream.as_str(), "locked"),
        other => panic!("expected a locked stream, got {other:?}"),
    }
    match locked_reusing.await.unwrap() {
        Err(StoreError::EventIdReused { id, .. }) => assert_eq!(id, owner.id),
        other => panic!("expected a reused id, got {other:?}"),
    }
    let twins: Vec<_> = futures::future::join_all(twins).await;
    let won = twins.iter().filter(|t| matches!(t, Ok(Ok(_)))).count();
    let lost = twins
        .iter()
        .filter(|t| matches!(t, Ok(Err(StoreError::Conflict { .. }))))
        .count();
    assert_eq!((won, lost), (1, 1), "{twins:?}");
    drop(held);

    assert_eq!(versions(&store, "several").await, vec![1, 2, 3]);
    assert_eq!(versions(&store, "taken").await, vec![1]);
    assert_eq!(versions(&store, "repeated").await, vec![1]);
    assert_eq!(versions(&store, "thief").await, Vec::<u64>::new());
    assert_eq!(versions(&store, "locked").await, vec![1]);
    assert_eq!(versions(&store, "locked-reusing").await, vec![1]);
    assert_eq!(versions(&store, "twin").await, vec![1]);
    let log = log(&store).await;
    assert_eq!(log.len(), 5 + 1 + 10 + 3 + 1, "{log:?}");
    let ids: HashSet<_> = log.iter().map(|e| e.2).collect();
    assert_eq!(ids.len(), log.len(), "every id once");
}

/// A member one of whose ids is stored is left out of its group's insert, not inserted in
/// part: the others are written together in one commit, and it fails by itself (as it would
/// alone), nothing of it written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_with_a_stored_id_is_left_out_and_the_group_commits_the_rest() {
    let _horizon = common::horizon_exclusive().await;
    let store = grouped_store().await;
    let owner = event(0);
    store
        .append(vec![write(
            "owner",
            ExpectedVersion::NoStream,
            vec![owner.clone()],
        )])
        .await
        .unwrap();

    let (mut blocker, alone) = hold_the_place(&store, event(1)).await;
    let good: Vec<_> = (0..6)
        .map(|i| {
            spawn_append(
                &store,
                write(
                    &format!("good-{i}"),
                    ExpectedVersion::NoStream,
                    vec![event(10 + i), event(20 + i)],
                ),
            )
        })
        .collect();
    let split = spawn_append(
        &store,
        write(
            "split",
            ExpectedVersion::NoStream,
            vec![
                event(2),
                NewEvent::new("test.added", 1, b"{\"n\":3}".to_vec()).with_id(owner.id),
            ],
        ),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();

    alone.await.unwrap().unwrap();
    let mut commits = HashSet::new();
    for h in good {
        let c = h.await.unwrap().unwrap();
        assert_eq!(c.streams[0].last_version, Version::new(2));
        commits.insert(c.position.commit());
    }
    assert_eq!(
        commits.len(),
        1,
        "the group was not rolled back: one commit"
    );
    match split.await.unwrap() {
        Err(StoreError::EventIdReused { id, .. }) => assert_eq!(id, owner.id),
        other => panic!("expected a reused id, got {other:?}"),
    }
    assert_eq!(versions(&store, "split").await, Vec::<u64>::new());
    for i in 0..6 {
        assert_eq!(versions(&store, &format!("good-{i}")).await, vec![1, 2]);
    }
    assert_eq!(log(&store).await.len(), 1 + 1 + 12);
}

/// A member of two events loses the race for its first version to a writer that commits
/// while the group waits for it: the group is rolled back rather than write the member in
/// part, the member gets its conflict, and the other member is written on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_written_in_part_rolls_the_group_back_and_only_it_fails() {
    let _horizon = common::horizon_exclusive().await;
    let store = grouped_store().await;
    // The lone append waits for `held`'s writer, holding the place; `racy`'s writer is still
    // open when the group starts.
    let mut held = hold_version_one(&store, "held").await;
    let mut racy_writer = hold_version_one(&store, "racy").await;
    let alone = spawn_append(
        &store,
        write("held", ExpectedVersion::NoStream, vec![event(0)]),
    );
    until_waiting(&store, 1).await;
    let racy = spawn_append(
        &store,
        write("racy", ExpectedVersion::NoStream, vec![event(1), event(2)]),
    );
    let other = spawn_append(
        &store,
        write("other", ExpectedVersion::NoStream, vec![event(3)]),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("COMMIT").execute(&mut held).await.unwrap();
    assert!(matches!(
        alone.await.unwrap(),
        Err(StoreError::Conflict { .. })
    ));
    // The group [racy, other] now waits for racy's writer.
    until_waiting(&store, 1).await;
    sqlx::query("COMMIT")
        .execute(&mut racy_writer)
        .await
        .unwrap();
    match racy.await.unwrap() {
        Err(StoreError::Conflict { stream, actual, .. }) => {
            assert_eq!(stream.as_str(), "racy");
            assert_eq!(actual, Version::new(1));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    other.await.unwrap().unwrap();
    assert_eq!(versions(&store, "racy").await, vec![1]);
    assert_eq!(versions(&store, "other").await, vec![1]);
    assert_eq!(log(&store).await.len(), 3);
}

/// Appends event `n` to the new stream `stream`, which must be written well before a stalled
/// append or group ends (those below wait for transactions the test holds open).
async fn goes_on_meanwhile(store: &PgStore, stream: &str, n: u64) {
    tokio::time::timeout(
        Duration::from_secs(10),
        store.append(vec![write(
            stream,
            ExpectedVersion::NoStream,
            vec![event(n)],
        )]),
    )
    .await
    .unwrap_or_else(|_| panic!("the append to {stream} waited behind a stalled one"))
    .unwrap();
}

/// An append that waits for a row another transaction holds gives up its place after the
/// stall bound, so appends to other streams go on meanwhile; no more than `in_flight` do (one
/// more that stalls keeps its place); and a group whose member waits for such a row fails
/// after the bound, so its other members are written on their own while that one waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_append_or_group_holds_up_only_itself() {
    let _horizon = common::horizon_exclusive().await;
    let store = grouped_store_stalling_after(Duration::from_millis(800)).await;
    let mut held = hold_version_one(&store, "held").await;
    // Alone, holding the one place, waiting for `held`'s writer; it stalls and lets go.
    let alone = spawn_append(
        &store,
        write("held", ExpectedVersion::NoStream, vec![event(0)]),
    );
    until_waiting(&store, 1).await;
    goes_on_meanwhile(&store, "free", 1).await;

    // One stalled is as many as `GroupCommit::new(1)` lets run outside the count: the next
    // that stalls keeps its place, and an append to another stream waits for it.
    let mut capped_writer = hold_version_one(&store, "capped").await;
    let capped = spawn_append(
        &store,
        write("capped", ExpectedVersion::NoStream, vec![event(6)]),
    );
    until_waiting(&store, 2).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    let behind = spawn_append(
        &store,
        write("behind", ExpectedVersion::NoStream, vec![event(7)]),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !behind.is_finished(),
        "a second stalled append gave its place up"
    );
    sqlx::query("COMMIT")
        .execute(&mut capped_writer)
        .await
        .unwrap();
    assert!(matches!(
        capped.await.unwrap(),
        Err(StoreError::Conflict { .. })
    ));
    behind.await.unwrap().unwrap();
    sqlx::query("COMMIT").execute(&mut held).await.unwrap();
    assert!(matches!(
        alone.await.unwrap(),
        Err(StoreError::Conflict { .. })
    ));

    // A group that waits: a lone append holds the place, waiting for `lone`'s writer, while
    // two more queue; once it stalls, they go as the group [racy, queued], which waits for
    // racy's writer until the bound, fails, and leaves each to go on alone: `queued` is
    // written while racy's writer is still open. (Not a table lock: it would wait for the
    // writers above.)
    let mut racy_writer = hold_version_one(&store, "racy").await;
    let mut lone_writer = hold_version_one(&store, "lone").await;
    let lone = spawn_append(
        &store,
        write("lone", ExpectedVersion::NoStream, vec![event(2)]),
    );
    until_waiting(&store, 1).await;
    let racy = spawn_append(
        &store,
        write("racy", ExpectedVersion::NoStream, vec![event(3)]),
    );
    let queued = spawn_append(
        &store,
        write("queued", ExpectedVersion::NoStream, vec![event(4)]),
    );
    until_waiting(&store, 2).await;
    goes_on_meanwhile(&store, "after", 5).await;
    tokio::time::timeout(Duration::from_secs(10), queued)
        .await
        .expect("a member waited behind its group's stalled one")
        .unwrap()
        .unwrap();
    assert!(!racy.is_finished() && !lone.is_finished());

    for writer in [&mut lone_writer, &mut racy_writer] {
        sqlx::query("COMMIT").execute(writer).await.unwrap();
    }
    assert!(matches!(
        lone.await.unwrap(),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        racy.await.unwrap(),
        Err(StoreError::Conflict { .. })
    ));
    for stream in [
        "free", "capped", "behind", "held", "lone", "queued", "after", "racy",
    ] {
        assert_eq!(versions(&store, stream).await, vec![1], "{stream}");
    }
}

/// Dropping the runtime while an append holds the one place and another waits for a group
/// ends: the flusher that the place would go to cannot run, and the queue is let go.
fn runtime_dropped_with_a_queued_append(runtime: tokio::runtime::Runtime) {
    let (done, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (blocker, horizon) = runtime.block_on(async {
            let horizon = common::horizon_exclusive().await;
            let store = grouped_store().await;
            let blocker = block_inserts(&store).await;
            let _alone = spawn_append(
                &store,
                write("alone", ExpectedVersion::NoStream, vec![event(0)]),
            );
            until_waiting(&store, 1).await;
            let _queued = spawn_append(
                &store,
                write("queued", ExpectedVersion::NoStream, vec![event(1)]),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            (blocker, horizon)
        });
        drop(runtime);
        let _ = done.send(());
        drop(blocker);
        drop(horizon);
    });
    assert!(
        ended.recv_timeout(Duration::from_secs(30)).is_ok(),
        "dropping the runtime with a queued append hung"
    );
}

#[test]
fn a_current_thread_runtime_dropped_with_a_queued_append_ends() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime_dropped_with_a_queued_append(runtime);
}

#[test]
fn a_multi_thread_runtime_dropped_with_a_queued_append_ends() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime_dropped_with_a_queued_append(runtime);
}

/// The server ends the session of a group's statement while it waits: every member is tried
/// again on its own, and each is written exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_whose_session_is_ended_leaves_each_append_written_once() {
    let _horizon = common::horizon_exclusive().await;
    let store = grouped_store().await;
    let (mut blocker, alone) = hold_the_place(&store, event(0)).await;
    let members: Vec<NewEvent> = (0..8).map(event).collect();
    let handles: Vec<_> = members
        .iter()
        .enumerate()
        .map(|(i, e)| {
            spawn_append(
                &store,
                write(
                    &format!("m-{i}"),
                    ExpectedVersion::NoStream,
                    vec![e.clone()],
                ),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let schema = store.schema().as_str().to_owned();
    let mut killer = common::raw().await;
    // End the lone append's session: it goes on under the streams' locks (and waits again),
    // and its place goes to the group, whose statement waits in turn: end that one too.
    let end = |what: &'static str| {
        format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND datname = current_database() \
             AND query LIKE '%' || $1 || '%' AND query NOT LIKE '%append_events%' \
             AND query {what} LIKE '%append_group_within(%') t"
        )
    };
    let lone: i64 = sqlx::query_scalar(&end("NOT"))
        .bind(&schema)
        .fetch_one(&mut killer)
        .await
        .unwrap();
    assert_eq!(lone, 1, "the lone append's session was ended");
    let mut group_ended = 0i64;
    for _ in 0..200 {
        group_ended = sqlx::query_scalar(&end(""))
            .bind(&schema)
            .fetch_one(&mut killer)
            .await
            .unwrap();
        if group_ended > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(group_ended, 1, "the group's session was ended");
    // The members now go on alone, and wait for the lock.
    until_waiting(&store, 9).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();

    alone.await.unwrap().unwrap();
    for (i, h) in handles.into_iter().enumerate() {
        let c = h.await.unwrap().unwrap();
        assert_eq!(c.streams[0].stream.as_str(), format!("m-{i}"));
        assert_eq!(versions(&store, &format!("m-{i}")).await, vec![1]);
    }
    let log = log(&store).await;
    assert_eq!(log.len(), 9, "{log:?}");
}

/// Many tasks run commands on shared streams through a grouping store: every command that
/// succeeded is in the log once, none that failed is, and each stream's versions have no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_commands_through_groups_lose_and_double_nothing() {
    use eventsource_core::Repository;
    use eventsource_core::testing::fixtures::Counter;

    let _horizon = common::horizon_shared().await;
    let store = common::builder()
        .group_commit(GroupCommit::new(2).max_members(8))
        .connect(&common::database_url())
        .await
        .unwrap();
    let repo = Repository::<Counter, _>::new(store.clone());
    let tasks: Vec<_> = (0..24)
        .map(|t| {
            let repo = repo.clone();
            tokio::spawn(async move {
                let mut done = 0u64;
                for i in 0..40 {
                    let id = format!("c-{}", (t * 7 + i) % 12);
                    if repo.execute(&id, |c| c.add(1)).await.is_ok() {
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let mut done = 0;
    for t in tasks {
        done += t.await.unwrap();
    }
    let mut total = 0;
    for s in 0..12 {
        let stream = <Counter as eventsource_core::Aggregate>::stream_id(&format!("c-{s}"));
        let v = versions(&store, stream.as_str()).await;
        assert_eq!(v, (1..=v.len() as u64).collect::<Vec<_>>(), "no gap");
        total += v.len() as u64;
    }
    assert_eq!(total, done, "every command that succeeded, once");
    assert_eq!(log(&store).await.len() as u64, done);
}

/// On a schema without `append_group_within` (a binary newer than a schema it does not
/// migrate), the first group fails, its members are written on their own, and grouping is
/// off from then on: appends that come while one runs no longer queue, each runs alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_without_the_group_function_turns_grouping_off() {
    let _horizon = common::horizon_exclusive().await;
    let store = grouped_store().await;
    let s = store.schema().as_str().to_owned();
    let mut admin = common::raw().await;
    sqlx::query(&format!("DROP FUNCTION {s}.append_group_within"))
        .execute(&mut admin)
        .await
        .unwrap();

    let (mut blocker, alone) = hold_the_place(&store, event(0)).await;
    let first: Vec<_> = (1..4)
        .map(|i| {
            spawn_append(
                &store,
                write(
                    &format!("first-{i}"),
                    ExpectedVersion::NoStream,
                    vec![event(i)],
                ),
            )
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    alone.await.unwrap().unwrap();
    for h in first {
        h.await.unwrap().unwrap();
    }

    // Grouping is off: three appends behind the table lock all wait on the server.
    let mut blocker = block_inserts(&store).await;
    let second: Vec<_> = (4..7)
        .map(|i| {
            spawn_append(
                &store,
                write(
                    &format!("second-{i}"),
                    ExpectedVersion::NoStream,
                    vec![event(i)],
                ),
            )
        })
        .collect();
    until_waiting(&store, 3).await;
    sqlx::query("COMMIT").execute(&mut blocker).await.unwrap();
    for h in second {
        h.await.unwrap().unwrap();
    }
    assert_eq!(log(&store).await.len(), 7);
}
