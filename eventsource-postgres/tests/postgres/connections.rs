//! The connections the store keeps between its operations, and the per-stream lock's.

use std::time::Duration;

use eventsource_core::{EventStore, ExpectedVersion, ReadUntil, StreamId, Version};
use futures::TryStreamExt;

use crate::common::{self, event, write};

/// The store keeps the connections its statements finished on, but only for a moment: code
/// sharing its pool gets every connection back, without waiting out the pool's timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_the_store_keeps_go_back_to_a_shared_pool() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::builder()
        .max_connections(3)
        .reuse_connections(2)
        .listen(false)
        .connect(&common::database_url())
        .await
        .unwrap();
    // Two tasks at once, so two connections are used and then kept.
    let mut tasks = Vec::new();
    for t in 0..2u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("s{t}");
            for i in 0..20u64 {
                store
                    .append(vec![write(
                        &stream,
                        ExpectedVersion::Exact(Version::new(i)),
                        vec![event(i)],
                    )])
                    .await
                    .unwrap();
                let read: Vec<_> = store
                    .read_stream(
                        &StreamId::new(stream.as_str()),
                        Version::FIRST,
                        ReadUntil::End,
                    )
                    .try_collect()
                    .await
                    .unwrap();
                assert_eq!(read.len() as u64, i + 1);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(store.pool().size() >= 2, "two connections were used");
    // The pool's own timeout is 10 s; the store hands its connections back within 50 ms.
    let all = tokio::time::timeout(Duration::from_secs(2), async {
        let a = store.pool().acquire().await.unwrap();
        let b = store.pool().acquire().await.unwrap();
        let c = store.pool().acquire().await.unwrap();
        (a, b, c)
    })
    .await
    .expect("the store handed its kept connections back to the pool");
    drop(all);
    // And the store works on, through the pool's connections again.
    assert_eq!(
        store.stream_version(&StreamId::new("s1")).await.unwrap(),
        Version::new(20)
    );
}

/// However busy the store, every connection it keeps passes through the pool now and then,
/// so the pool's own rules hold: here its lifetime limit, which closes a connection older
/// than 500 ms when it comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_the_store_keeps_still_pass_through_the_pool() {
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_cycle_{:08x}", fastrand::u32(..));
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .max_lifetime(Duration::from_millis(500))
        .connect(&common::url_with_application(&app))
        .await
        .unwrap();
    let store = common::builder()
        .listen(false)
        .with_pool(pool)
        .await
        .unwrap();
    // Four seconds of back-to-back operations on one task: the connection kept is used
    // again at once, every time.
    let started = std::time::Instant::now();
    let mut version = 0;
    while started.elapsed() < Duration::from_secs(4) {
        store
            .append(vec![write(
                "s",
                ExpectedVersion::Exact(Version::new(version)),
                vec![event(version)],
            )])
            .await
            .unwrap();
        version += 1;
    }
    let mut raw = common::raw().await;
    let oldest: f64 = sqlx::query_scalar(
        "SELECT coalesce(max(extract(epoch FROM now() - backend_start))::float8, 0) \
         FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(&app)
    .fetch_one(&mut raw)
    .await
    .unwrap();
    // Lifetime 0.5 s, plus at most a second between passes through the pool.
    assert!(
        oldest < 2.5,
        "a session of {oldest:.1} s: a kept connection never went back to the pool"
    );
    assert!(version > 10, "{version} appends in 4 s");
}

/// A connection whose session the server ended (here `pg_terminate_backend`, whose FATAL
/// error comes back as a database error) is not kept for the next operation: at most the
/// operation that met the end fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_the_server_ended_is_not_kept() {
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_ended_{:08x}", fastrand::u32(..));
    let store = common::builder()
        .max_connections(2)
        .listen(false)
        .connect(&common::url_with_application(&app))
        .await
        .unwrap();
    let stream = StreamId::new("s");
    let mut raw = common::raw().await;
    for round in 0..5 {
        // One operation, so one connection is kept; then its session is ended, and the next
        // operation comes within moments (a connection unused for 50 ms is pinged first).
        store.stream_version(&stream).await.unwrap();
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(&app)
        .fetch_all(&mut raw)
        .await
        .unwrap();
        assert!(!ended.is_empty(), "round {round}: the store had a session");
        let met = store.stream_version(&stream).await;
        let next = store.stream_version(&stream).await;
        assert!(
            next.is_ok(),
            "round {round}: the operation after the one that met the ended session failed too \
             (first: {met:?}, then: {next:?})"
        );
    }
}

/// A `lock_stream` given up while it waits (a timeout) must not leave its connection to take
/// the lock once granted and keep it: another process would then wait forever. Nor may each
/// wait given up leave a server session behind beyond the pool's size (a session blocked on
/// a lock does not notice that its client closed the connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lock_given_up_while_waiting_is_never_taken_and_kept() {
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_lock_wait_{:08x}", fastrand::u32(..));
    let store = common::builder()
        .max_connections(4)
        .listen(false)
        .connect(&common::url_with_application(&app))
        .await
        .unwrap();
    let other = common::same_schema(&store, &common::database_url()).await;
    let stream = StreamId::new("hot");
    let streams = std::slice::from_ref(&stream);
    for round in 0..2 {
        // Held by another process, so each wait below reaches the server (in one process
        // lockers queue in the store first).
        let held = other.lock_streams(streams).await.unwrap();
        for _ in 0..6 {
            let waiting =
                tokio::time::timeout(Duration::from_millis(100), store.lock_streams(streams));
            assert!(waiting.await.is_err(), "the lock is held: the others wait");
        }
        let mut raw = common::raw().await;
        let sessions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&mut raw)
                .await
                .unwrap();
        assert!(
            sessions <= 4,
            "round {round}: {sessions} server sessions for a pool of 4"
        );
        held.release().await.unwrap();
        // Another process takes the lock: no waiter given up keeps it.
        let taken = tokio::time::timeout(Duration::from_secs(10), other.lock_streams(streams))
            .await
            .expect("the lock the waiters gave up on is free")
            .unwrap();
        taken.release().await.unwrap();
        // Every wait given up was granted the lock in turn and let it go: no session of the
        // store holds one.
        let left = advisory_locks_left(&mut raw, &app).await;
        assert_eq!(
            left, 0,
            "round {round}: the store's sessions still hold or wait for {left} advisory locks"
        );
    }
    // The store works on.
    let mut lock = tokio::time::timeout(Duration::from_secs(10), store.lock_streams(streams))
        .await
        .expect("the store's connections came back")
        .unwrap();
    lock.append(vec![write(
        "hot",
        ExpectedVersion::NoStream,
        vec![event(1)],
    )])
    .await
    .unwrap();
    lock.release().await.unwrap();
}

/// An append made through a writers' lock and given up midway (a timeout, a client gone)
/// must not leave the lock's session in the pool still holding the server's lock: whoever
/// borrowed that connection next would pass as the holder, and every other process would
/// meet a stream locked for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_append_given_up_under_a_writers_lock_leaves_no_lock_behind() {
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_lock_cancel_{:08x}", fastrand::u32(..));
    let store = common::builder()
        .max_connections(4)
        .listen(false)
        .connect(&common::url_with_application(&app))
        .await
        .unwrap();
    let other = common::same_schema(&store, &common::database_url()).await;
    let stream = StreamId::new("cancelled");
    let mut lock = store
        .lock_streams(std::slice::from_ref(&stream))
        .await
        .unwrap();
    // Every insert into the events table waits while this transaction lives.
    let mut blocker = common::raw().await;
    sqlx::query("BEGIN").execute(&mut blocker).await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {}.events IN SHARE ROW EXCLUSIVE MODE",
        store.schema().as_str()
    ))
    .execute(&mut blocker)
    .await
    .unwrap();
    let append = lock.append(vec![write(
        "cancelled",
        ExpectedVersion::NoStream,
        vec![event(1)],
    )]);
    assert!(
        tokio::time::timeout(Duration::from_millis(300), append)
            .await
            .is_err(),
        "the append waits for the table lock"
    );
    sqlx::query("ROLLBACK").execute(&mut blocker).await.unwrap();
    drop(lock);
    // No session of the store holds an advisory lock once the lock is dropped.
    let mut raw = common::raw().await;
    let left = advisory_locks_left(&mut raw, &app).await;
    assert_eq!(
        left, 0,
        "the store's sessions still hold {left} advisory locks after the lock was dropped"
    );
    // Another process writes the stream, and the store, busy on all its connections, too.
    other
        .append(vec![write(
            "cancelled",
            ExpectedVersion::Any,
            vec![event(2)],
        )])
        .await
        .expect("the stream is not locked any more");
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(vec![write(
                    "cancelled",
                    ExpectedVersion::Any,
                    vec![event(10 + i)],
                )])
                .await
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("no connection of the store passes as a holder");
    }
    let written: Vec<_> = other
        .read_stream(&stream, Version::FIRST, ReadUntil::End)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(written.len(), 9);
}

/// A lock of several streams that fails part-way (here `lock_timeout` ends its wait for the
/// second key after the first was granted) must not go back to the pool holding the keys it
/// got: session advisory locks ignore the statement's rollback.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_writers_lock_that_fails_part_way_keeps_no_key() {
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_lock_partial_{:08x}", fastrand::u32(..));
    let url = format!(
        "{}&options=-c%20lock_timeout%3D200",
        common::url_with_application(&app)
    );
    let store = common::builder()
        .max_connections(2)
        .listen(false)
        .connect(&url)
        .await
        .unwrap();
    let other = common::same_schema(&store, &common::database_url()).await;
    let (a, b) = (StreamId::new("pa"), StreamId::new("pb"));
    let both = [a.clone(), b.clone()];
    // One of the two keys is taken first; holding each in turn, one round fails after it.
    for held in [&a, &b] {
        let holder = other
            .lock_streams(std::slice::from_ref(held))
            .await
            .unwrap();
        let failed = tokio::time::timeout(Duration::from_secs(10), store.lock_streams(&both))
            .await
            .expect("lock_timeout ends the wait");
        assert!(failed.is_err(), "{held}: a held key: {failed:?}");
        holder.release().await.unwrap();
        let mut raw = common::raw().await;
        let left = advisory_locks_left(&mut raw, &app).await;
        assert_eq!(
            left, 0,
            "{held}: the store's sessions still hold {left} advisory locks"
        );
        for s in ["pa", "pb"] {
            other
                .append(vec![write(s, ExpectedVersion::Any, vec![event(1)])])
                .await
                .expect("neither stream stays locked");
        }
    }
}

/// How many advisory locks the sessions of application `app` still hold or wait for, once
/// that is none or after 10 seconds (the server ends a closed session's locks a moment after).
async fn advisory_locks_left(raw: &mut sqlx::PgConnection, app: &str) -> i64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = $1 AND l.locktype = 'advisory'",
        )
        .bind(app)
        .fetch_one(&mut *raw)
        .await
        .unwrap();
        if held == 0 || std::time::Instant::now() >= deadline {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
