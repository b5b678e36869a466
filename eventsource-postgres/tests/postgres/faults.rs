//! Faults: corrupt rows, killed connections.

use std::collections::HashSet;
use std::time::Duration;

use eventsource_core::{
    EventId, EventStore, ExpectedVersion, Position, ReadUntil, RecordedEvent, StoreError, StreamId,
    Version, subscribe,
};
use eventsource_postgres::PgStore;
use futures::{StreamExt, TryStreamExt};

use crate::common::{self, event, write};

async fn corrupt(store: &PgStore, set: &str) {
    let mut conn = common::raw().await;
    let schema = store.schema().as_str();
    sqlx::query(&format!(
        "UPDATE \"{schema}\".events SET {set} WHERE stream_id = 'acc''t-1' AND version = 2"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_row_is_a_typed_error_naming_its_stream_and_version() {
    let _horizon = crate::common::horizon_shared().await;
    for set in [
        r#"metadata = '{"correlation_id": 5}'"#,
        "schema_version = -1",
        "metadata = '[1, 2]'",
        "recorded_at = 'infinity'",
    ] {
        let store = common::fresh_store().await;
        store
            .append(vec![write(
                "acc't-1",
                ExpectedVersion::NoStream,
                vec![event(1), event(2), event(3)],
            )])
            .await
            .unwrap();
        corrupt(&store, set).await;
        let stream = StreamId::new("acc't-1");
        let read: Result<Vec<RecordedEvent>, StoreError> = store
            .read_stream(&stream, Version::FIRST, ReadUntil::End)
            .try_collect()
            .await;
        let check = |err: StoreError| match err {
            StoreError::Corrupt {
                stream, version, ..
            } => {
                assert_eq!(stream.as_str(), "acc't-1", "{set}");
                assert_eq!(version, Version::new(2), "{set}");
            }
            other => panic!("{set}: expected Corrupt, got {other:?}"),
        };
        check(read.unwrap_err());
        check(store.read_all(Position::ZERO, 10, None).await.unwrap_err());
        if set.starts_with("schema_version") {
            // What a repository's load reads.
            let fold: Result<Vec<_>, StoreError> = store
                .read_stream_for_fold(&stream, Version::FIRST, ReadUntil::End)
                .try_collect()
                .await;
            check(fold.unwrap_err());
        }
    }
}

/// A snapshot row with a negative version is refused (a repository then ignores it), not read
/// as a snapshot at version zero: the repository would fold the whole stream on top of its
/// state.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_with_a_negative_version_is_corrupt_not_version_zero() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    let stream = StreamId::new("acc't-1");
    let commit = store
        .append(vec![write(
            stream.as_str(),
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        )])
        .await
        .unwrap();
    store
        .save_snapshot(eventsource_core::Snapshot {
            stream: stream.clone(),
            version: Version::new(2),
            position: commit.position,
            event_recorded_at: chrono::Utc::now(),
            schema_version: 1,
            payload: bytes::Bytes::from_static(b"{}"),
        })
        .await
        .unwrap();
    let mut conn = common::raw().await;
    sqlx::query(&format!(
        "UPDATE \"{}\".snapshots SET version = -1",
        store.schema().as_str()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    match store.load_snapshot(&stream, 1, ReadUntil::End).await {
        Err(StoreError::Corrupt { stream: s, .. }) => assert_eq!(s, stream),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

/// A snapshot the store cannot read back (a corrupt position), or no snapshots table at all,
/// is passed over by a repository load, which folds the stream instead: a snapshot is never
/// a reason for a load to fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_that_cannot_be_read_never_fails_a_load() {
    use eventsource_core::Repository;
    use eventsource_core::testing::fixtures::Counter;

    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    let repo = Repository::<Counter, _>::new(store.clone());
    for _ in 0..7 {
        repo.execute("c", |c| c.add(1)).await.unwrap();
    }
    let schema = store.schema().as_str();
    let mut conn = common::raw().await;
    let snapshots: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".snapshots"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(snapshots > 0, "the counter snapshots every 5 events");
    sqlx::query(&format!("UPDATE \"{schema}\".snapshots SET seq = -1"))
        .execute(&mut conn)
        .await
        .unwrap();
    let loaded = repo
        .load("c")
        .await
        .expect("a load past a corrupt snapshot");
    assert_eq!((loaded.version.get(), loaded.state.value), (7, 7));
    sqlx::query(&format!("DROP TABLE \"{schema}\".snapshots"))
        .execute(&mut conn)
        .await
        .unwrap();
    let loaded = repo
        .load("c")
        .await
        .expect("a load with no snapshots table");
    assert_eq!((loaded.version.get(), loaded.state.value), (7, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_table_is_a_configuration_error_not_a_panic() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    let mut conn = common::raw().await;
    let schema = store.schema().as_str();
    sqlx::query(&format!("DROP TABLE \"{schema}\".snapshots"))
        .execute(&mut conn)
        .await
        .unwrap();
    let err = store
        .load_snapshot(&StreamId::new("s"), 1, ReadUntil::End)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_surface_as_errors_and_a_subscriber_recovers_without_losing_events() {
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_kill_{:08x}", fastrand::u32(..));
    let url = common::url_with_application(&app);
    let writer = common::fresh_store().await;
    let reader = common::same_schema(&writer, &url).await;

    // A subscriber that resubscribes from the last event it saw whenever its stream fails.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RecordedEvent>();
    let sub_store = reader.clone();
    let subscriber = tokio::spawn(async move {
        let mut last = Position::ZERO;
        let mut failures = 0u32;
        loop {
            let mut sub = subscribe(sub_store.clone(), last, 20);
            while let Some(item) = sub.next().await {
                match item {
                    Ok(e) => {
                        last = e.position;
                        if tx.send(e).is_err() {
                            return failures;
                        }
                    }
                    Err(err) => {
                        assert!(
                            matches!(
                                err,
                                StoreError::Backend {
                                    retryable: true,
                                    ..
                                }
                            ),
                            "a lost connection is a retryable backend error: {err:?}"
                        );
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                }
            }
        }
    });

    let mut written: Vec<EventId> = Vec::new();
    for round in 0..4u64 {
        for i in 0..25u64 {
            let e = event(round * 100 + i);
            written.push(e.id);
            writer
                .append(vec![write(
                    &format!("s{}", i % 5),
                    ExpectedVersion::Any,
                    vec![e],
                )])
                .await
                .expect("append");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            common::kill_sessions(&app).await > 0,
            "the reader had sessions to kill"
        );
        // The reader's own calls fail or reconnect; none panics.
        let _ = reader.head().await;
    }
    // Kill the writer's sessions too: appends retry on a fresh connection (event ids make
    // the retry safe) or fail with a typed error.
    let writer_app = "es_kill_writer";
    let writer2 = common::same_schema(&writer, &common::url_with_application(writer_app)).await;
    writer2
        .append(vec![write("w", ExpectedVersion::Any, vec![event(7)])])
        .await
        .unwrap();
    common::kill_sessions(writer_app).await;
    let e = event(8);
    match writer2
        .append(vec![write("w", ExpectedVersion::Any, vec![e.clone()])])
        .await
    {
        Ok(_) => written.extend([e.id]),
        Err(err) => assert!(matches!(err, StoreError::Backend { .. }), "{err:?}"),
    }

    let mut seen = Vec::new();
    let want: HashSet<EventId> = written.iter().copied().collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut seen_ids = HashSet::new();
    while !want.is_subset(&seen_ids) {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the subscriber recovers and delivers everything")
            .expect("subscriber alive");
        seen_ids.insert(e.id);
        seen.push(e);
    }
    let unique: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
    assert_eq!(unique.len(), seen.len(), "nothing delivered twice");
    drop(rx);
    subscriber.abort();
}

/// A page stream dropped in the middle of its query (a catch-up that failed or stopped) leaves
/// its pooled connection clean: its transaction is rolled back, its setting (sorts off) does
/// not leak into the next user of the connection, and the store works on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_stream_dropped_midway_leaves_its_connection_clean() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::builder()
        .max_connections(1)
        .listen(false)
        .connect(&common::database_url())
        .await
        .unwrap();
    let events: Vec<_> = (0..300).map(event).collect();
    store
        .append(vec![write("s", ExpectedVersion::NoStream, events)])
        .await
        .unwrap();
    assert_eq!(store.pool().options().get_max_connections(), 2);
    // `read_all` waits until the append is readable (other tests' writes may hold the
    // horizon back for a moment); a page stream does not wait.
    assert_eq!(
        store
            .read_all(Position::ZERO, 1, None)
            .await
            .unwrap()
            .events
            .len(),
        1
    );
    for _ in 0..3 {
        // Hold one of the pool's two connections, so the stream gets the other one, and
        // so does the check below once the stream is dropped.
        let held = store.pool().acquire().await.unwrap();
        let mut pages = store.read_all_pages(Position::ZERO, 2, None);
        let first = pages.next().await.unwrap().unwrap();
        assert_eq!(first.events.len(), 2);
        drop(pages);
        // The stream's connection comes back once the pool has cleaned it up; then it must
        // be usable, outside any transaction, sorts on.
        let mut conn = tokio::time::timeout(Duration::from_secs(10), store.pool().acquire())
            .await
            .expect("the connection came back to the pool")
            .unwrap();
        let sort: String = sqlx::query_scalar("SELECT current_setting('enable_sort')")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(sort, "on", "the stream's setting leaked");
        assert!(
            !sqlx::Connection::is_in_transaction(&*conn),
            "the connection is still in the stream's transaction"
        );
        drop((conn, held));
    }
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(300)),
            vec![event(300)],
        )])
        .await
        .unwrap();
    let page = store.read_all(Position::ZERO, 1000, None).await.unwrap();
    assert_eq!(page.events.len(), 301);
}

/// After the server ends every session of a store (a restart, a failover,
/// `pg_terminate_backend`), the next reads do not fail: they are tried again on a fresh
/// connection inside the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_after_the_server_ended_the_stores_sessions_do_not_fail() {
    use eventsource_core::Repository;
    use eventsource_core::testing::fixtures::Counter;
    let _horizon = crate::common::horizon_shared().await;
    let app = format!("es_read_kill_{:08x}", fastrand::u32(..));
    let writer = common::fresh_store().await;
    let store = common::same_schema(&writer, &common::url_with_application(&app)).await;
    let repo = Repository::<Counter, _>::new(writer.clone());
    for _ in 0..12 {
        repo.execute("c", |c| c.add(1)).await.unwrap();
    }
    writer.save_checkpoint("p", Position::ZERO).await.unwrap();
    let stream = StreamId::new("counter-c");
    let first = writer
        .read_stream(&stream, Version::FIRST, ReadUntil::End)
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let reader = Repository::<Counter, _>::new(store.clone());
    for round in 0..3 {
        // Warm: the store keeps connections between operations.
        reader.load("c").await.unwrap();
        assert!(common::kill_sessions(&app).await > 0, "round {round}");
        let loaded = reader
            .load("c")
            .await
            .expect("load after the sessions ended");
        assert_eq!(loaded.version.get(), 12);
        common::kill_sessions(&app).await;
        let events: Vec<RecordedEvent> = store
            .read_stream(&stream, Version::FIRST, ReadUntil::End)
            .try_collect()
            .await
            .expect("read_stream");
        assert_eq!(events, first);
        common::kill_sessions(&app).await;
        let page = store
            .read_all(Position::ZERO, 100, None)
            .await
            .expect("read_all");
        assert_eq!(page.events.len(), 12);
        common::kill_sessions(&app).await;
        assert_eq!(store.head().await.expect("head"), first[11].position);
        common::kill_sessions(&app).await;
        assert_eq!(
            store.stream_version(&stream).await.expect("version").get(),
            12
        );
        common::kill_sessions(&app).await;
        assert!(
            store
                .event_by_id(first[0].id)
                .await
                .expect("by id")
                .is_some()
        );
        common::kill_sessions(&app).await;
        assert!(
            store
                .load_snapshot(&stream, 1, ReadUntil::End)
                .await
                .expect("snapshot")
                .is_some()
        );
        common::kill_sessions(&app).await;
        let saved = if round == 0 {
            Position::ZERO
        } else {
            first[round - 1].position
        };
        assert_eq!(
            store.load_checkpoint("p").await.expect("checkpoint"),
            Some(saved)
        );
        common::kill_sessions(&app).await;
        store
            .save_checkpoint("p", first[round].position)
            .await
            .expect("save checkpoint");
    }
}

/// A stream read whose connection is cut in the middle goes on after the last event it
/// handed out, on a fresh connection: every event once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_read_cut_midway_goes_on_after_the_last_event_it_handed_out() {
    let _horizon = crate::common::horizon_shared().await;
    let proxy = common::proxy::Proxy::start().await;
    let writer = common::fresh_store().await;
    let store = common::same_schema(&writer, &proxy.url("es_cut_read")).await;
    // 20,000 events of 1 KB: far more than the sockets buffer, so the server is still
    // sending when the connection is cut.
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    for batch in 0..20 {
        let events = (0..1000)
            .map(|_| eventsource_core::NewEvent::new("t", 1, payload.clone().into_bytes()))
            .collect();
        let expected = if batch == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Any
        };
        writer
            .append(vec![write("long", expected, events)])
            .await
            .unwrap();
    }
    let stream = StreamId::new("long");
    let mut read = store.read_stream(&stream, Version::FIRST, ReadUntil::End);
    let mut versions = Vec::with_capacity(20_000);
    while let Some(e) = read.next().await {
        let e = e.expect("the read rides out the cut");
        versions.push(e.version.get());
        if versions.len() == 500 || versions.len() == 12_000 {
            proxy.drop_connections();
        }
    }
    assert_eq!(
        versions,
        (1..=20_000).collect::<Vec<u64>>(),
        "no gap, no duplicate"
    );
}

/// A real outage still surfaces, once the read has retried for its bound: a retryable
/// backend error, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_surfaces_after_the_reads_retry_bound() {
    let _horizon = crate::common::horizon_shared().await;
    let proxy = common::proxy::Proxy::start().await;
    let writer = common::fresh_store().await;
    let store = PgStore::builder()
        .schema(writer.schema().as_str())
        .read_retry_for(Duration::from_millis(300))
        .connect(&proxy.url("es_outage"))
        .await
        .unwrap();
    store.head().await.unwrap();
    proxy.cut();
    let started = std::time::Instant::now();
    let failed = tokio::time::timeout(Duration::from_secs(20), store.head())
        .await
        .expect("the read gives up in bounded time");
    assert!(
        matches!(
            failed,
            Err(StoreError::Backend {
                retryable: true,
                ..
            })
        ),
        "{failed:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it retried first"
    );
    proxy.restore();
    store
        .head()
        .await
        .expect("the store works once the server is back");
}

/// A checkpoint row holding an impossible position is a typed error naming the checkpoint,
/// for the core's reads and for the transactional runner (which never reads it as zero and
/// replays everything into its read model).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_corrupt_checkpoint_is_a_typed_error_naming_it() {
    use eventsource_core::testing::fixtures::AddedLog;
    use eventsource_core::{HandlerError, Projection, ProjectionError};
    use eventsource_postgres::{PgProjectionContext, PgProjectionRunner};

    struct Nothing;
    impl Projection for Nothing {
        const NAME: &'static str = "nothing";
        type Context = PgProjectionContext;
        async fn handle_event(
            &mut self,
            _: &RecordedEvent,
            _: &mut PgProjectionContext,
        ) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    store
        .append(vec![write("s", ExpectedVersion::NoStream, vec![event(1)])])
        .await
        .unwrap();
    let mut pg = PgProjectionRunner::new(store.clone(), Nothing);
    pg.catch_up().await.unwrap();
    eventsource_core::ProjectionRunner::new(store.clone(), AddedLog::default())
        .catch_up()
        .await
        .unwrap();
    let mut conn = common::raw().await;
    sqlx::query(&format!(
        "UPDATE \"{}\".checkpoints SET seq = -5",
        store.schema().as_str()
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    match store.load_checkpoint("conformance.added-log").await {
        Err(StoreError::CorruptCheckpoint { name, .. }) => {
            assert_eq!(name, "conformance.added-log")
        }
        other => panic!("expected CorruptCheckpoint, got {other:?}"),
    }
    drop(pg);
    let mut again = PgProjectionRunner::new(store.clone(), Nothing);
    match again.catch_up().await {
        Err(ProjectionError::Store {
            source: StoreError::CorruptCheckpoint { name, .. },
            ..
        }) => assert_eq!(name, "nothing"),
        other => panic!("expected the corrupt checkpoint, got {other:?}"),
    }
}
