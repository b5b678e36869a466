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

/// A store in a fresh schema whose appends group once one is running.
async fn grouped_store() -> PgStore {
    common::builder()
        .group_commit(GroupCommit::new(1))
        .connect(&common::database_url())
        .await
        .unwrap()
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
    store
        .append(vec![write(
            "locked",
            ExpectedVersion::NoStream,
            vec![event(3)],
        )])
        .await
        .unwrap();
    let other = common::same_schema(&store, &common::database_url()).await;
    let held = other
        .lock_streams(&[StreamId::new("locked")])
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
    assert_eq!(versions(&store, "twin").await, vec![1]);
    let log = log(&store).await;
    assert_eq!(log.len(), 4 + 1 + 10 + 3 + 1, "{log:?}");
    let ids: HashSet<_> = log.iter().map(|e| e.2).collect();
    assert_eq!(ids.len(), log.len(), "every id once");
}

/// A member that would be written in part (its second event's id is stored) rolls the whole
/// group back; every member then goes on alone: the others are written, it fails by itself,
/// and nothing of it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_member_written_in_part_rolls_the_group_back_and_only_it_fails() {
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
    for h in good {
        let c = h.await.unwrap().unwrap();
        assert_eq!(c.streams[0].last_version, Version::new(2));
    }
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
             AND query {what} LIKE '%append_group(%') t"
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
