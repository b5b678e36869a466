//! Transactional projections, the one-runner lease, inline projections.

use std::time::Duration;

use eventsource_core::{
    EventStore, ExpectedVersion, HandlerError, Position, Projection, ProjectionError,
    RecordedEvent, StoreError, StreamId,
};
use eventsource_postgres::{PgProjectionContext, PgProjectionRunner, PgStore};

use crate::common::{self, event, write};

/// A read model in the store's database: one row per applied event (a second application
/// would violate the primary key) and a running sum per stream. Fails on the event whose
/// `n` is `fail_on`.
#[derive(Default)]
struct Sums {
    fail_on: Option<u64>,
    panic_on: Option<u64>,
}

fn n_of(event: &RecordedEvent) -> Result<u64, HandlerError> {
    let v: serde_json::Value = serde_json::from_slice(&event.payload)?;
    v["n"].as_u64().ok_or_else(|| "no n".into())
}

impl Projection for Sums {
    const NAME: &'static str = "sums";
    type Context = PgProjectionContext;

    fn event_types() -> Option<&'static [&'static str]> {
        Some(&["test.added"])
    }

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        let n = n_of(event)?;
        if self.fail_on == Some(n) {
            return Err(format!("refusing n = {n}").into());
        }
        if self.panic_on == Some(n) {
            panic!("panicking on n = {n}");
        }
        let schema = ctx.store().schema().as_str().to_owned();
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".applied (event_id) VALUES ($1)"
        ))
        .bind(event.id.as_uuid())
        .execute(ctx.conn())
        .await?;
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".sums (stream, total) VALUES ($1, $2) \
             ON CONFLICT (stream) DO UPDATE SET total = sums.total + excluded.total"
        ))
        .bind(event.stream.as_str())
        .bind(n as i64)
        .execute(ctx.conn())
        .await?;
        Ok(())
    }

    async fn reset(&mut self, ctx: &mut PgProjectionContext) -> Result<(), HandlerError> {
        let schema = ctx.store().schema().as_str().to_owned();
        sqlx::query(&format!("TRUNCATE \"{schema}\".applied, \"{schema}\".sums"))
            .execute(ctx.conn())
            .await?;
        Ok(())
    }
}

async fn create_read_model(store: &PgStore) {
    let schema = store.schema().as_str();
    let mut conn = common::raw().await;
    for ddl in [
        format!("CREATE TABLE \"{schema}\".applied (event_id uuid PRIMARY KEY)"),
        format!("CREATE TABLE \"{schema}\".sums (stream text PRIMARY KEY, total bigint NOT NULL)"),
    ] {
        sqlx::query(&ddl).execute(&mut conn).await.unwrap();
    }
}

async fn read_model(store: &PgStore) -> (i64, Option<i64>) {
    let schema = store.schema().as_str();
    let mut conn = common::raw().await;
    let applied: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".applied"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let total: Option<i64> =
        sqlx::query_scalar(&format!("SELECT sum(total)::bigint FROM \"{schema}\".sums"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
    (applied, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handler_failing_halfway_leaves_neither_read_model_nor_checkpoint_changed() {
    // Its batches must be the runner's (3 events each): a transaction of a test running
    // beside it that began before event 5 would hold the horizon there and cut a page short
    // (seen: batches [1, 2, 3], [4], then [5, ..] failing).
    let _horizon = crate::common::horizon_exclusive().await;
    let store = common::fresh_store().await;
    create_read_model(&store).await;
    let mut positions = Vec::new();
    for n in 1..=10 {
        let c = store
            .append(vec![write("s", ExpectedVersion::Any, vec![event(n)])])
            .await
            .unwrap();
        positions.push(c.position);
    }

    // Batches of 3: [1,2,3] commits, [4,5,6] fails at 5 and rolls back whole.
    let mut runner = PgProjectionRunner::new(
        store.clone(),
        Sums {
            fail_on: Some(5),
            ..Sums::default()
        },
    )
    .batch_size(3);
    let err = runner.catch_up().await.unwrap_err();
    match err {
        ProjectionError::Handler { version, .. } => assert_eq!(version.get(), 5),
        other => panic!("expected a handler error, got {other:?}"),
    }
    drop(runner);
    assert_eq!(
        read_model(&store).await,
        (3, Some(6)),
        "only the first batch committed"
    );
    assert_eq!(
        store.load_checkpoint(Sums::NAME).await.unwrap(),
        Some(positions[2]),
        "the checkpoint is where the read model is"
    );

    // A restart resumes exactly there: every event applied once (the primary key would
    // reject a second application).
    let mut runner = PgProjectionRunner::new(
        store.clone(),
        Sums {
            fail_on: None,
            ..Sums::default()
        },
    )
    .batch_size(3);
    let reached = runner.catch_up().await.unwrap();
    assert!(reached >= positions[9]);
    assert_eq!(read_model(&store).await, (10, Some(55)));

    // And a rebuild replays from zero in one go.
    let reached = runner.rebuild().await.unwrap();
    assert!(reached >= positions[9]);
    assert_eq!(read_model(&store).await, (10, Some(55)));
}

/// A spawned runner that stops on a handler error reports that error, typed (the event it
/// failed on), through its handle; the failed batch left the read model as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spawned_runner_stopped_by_its_handler_reports_the_failed_event() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    create_read_model(&store).await;
    let mut last = Position::ZERO;
    for n in 1..=5 {
        last = store
            .append(vec![write("s", ExpectedVersion::Any, vec![event(n)])])
            .await
            .unwrap()
            .position;
    }
    let handle = PgProjectionRunner::new(
        store.clone(),
        Sums {
            fail_on: Some(3),
            ..Sums::default()
        },
    )
    .spawn();
    match handle.wait_for(last, Duration::from_secs(10)).await {
        Err(ProjectionError::Stopped {
            cause: Some(cause), ..
        }) => match cause.as_ref() {
            ProjectionError::Handler {
                projection,
                stream,
                version,
                ..
            } => assert_eq!(
                (&**projection, stream.as_str(), version.get()),
                ("sums", "s", 3)
            ),
            other => panic!("expected the handler's error, got {other:?}"),
        },
        other => panic!("expected Stopped with a cause, got {other:?}"),
    }
    assert!(matches!(
        handle.status().failed.as_deref(),
        Some(ProjectionError::Handler { .. })
    ));
    assert_eq!(read_model(&store).await, (0, None));
}

/// A writer with the read model, and two more handles on its schema for two runners (as two
/// processes): the first one's sessions carry the returned application name, so a test can
/// end them all.
async fn lease_stores() -> (PgStore, PgStore, PgStore, String) {
    let writer = common::fresh_store().await;
    create_read_model(&writer).await;
    let app = format!("es_lease_{:08x}", fastrand::u32(..));
    let first = common::same_schema(&writer, &common::url_with_application(&app)).await;
    let second = common::same_schema(&writer, &common::database_url()).await;
    (writer, first, second, app)
}

/// A runner whose lease was taken over while it was cut off (its sessions ended, as in a
/// network partition) finds out at its next commit: the batch is rolled back and the error is
/// typed, so it never writes next to the new holder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runner_that_lost_its_lease_gets_a_typed_error_and_writes_nothing() {
    let _horizon = crate::common::horizon_shared().await;
    let (writer, cut_off, other, app) = lease_stores().await;
    // The runners read from other store handles than the writer's: a catch-up ends at what
    // they can read, so wait until the appends are readable there (another test's open
    // transaction may hold the horizon back for a moment).
    let append = |from: u64, to: u64| {
        let (writer, cut_off) = (writer.clone(), cut_off.clone());
        async move {
            let mut last = Position::ZERO;
            for n in from..=to {
                last = writer
                    .append(vec![write("s", ExpectedVersion::Any, vec![event(n)])])
                    .await
                    .unwrap()
                    .position;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while cut_off.head().await.unwrap() < last {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{last} never readable"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    append(1, 5).await;
    let mut first = PgProjectionRunner::new(
        cut_off.clone(),
        Sums {
            fail_on: None,
            ..Sums::default()
        },
    );
    first.catch_up().await.unwrap();
    assert_eq!(read_model(&writer).await, (5, Some(15)));

    // Every session of the first runner ends (its lease lock with them); the second runner
    // takes the lease.
    common::kill_sessions(&app).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut second = PgProjectionRunner::new(
        other,
        Sums {
            fail_on: None,
            ..Sums::default()
        },
    );
    second.catch_up().await.unwrap();

    append(6, 8).await;
    match first.catch_up().await {
        Err(ProjectionError::LeaseLost { projection }) => assert_eq!(&*projection, "sums"),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    assert_eq!(
        read_model(&writer).await,
        (5, Some(15)),
        "the cut-off runner's batch was rolled back"
    );
    second.catch_up().await.unwrap();
    assert_eq!(read_model(&writer).await, (8, Some(36)));
}

/// One runner leads, the other stands by. The leader's process is cut off from the server
/// (a network partition: its sessions end, its lease lock with them, and it cannot connect
/// again): the standby takes over and applies every event once. The cut-off runner no
/// longer says it leads; once it can reach the server again it finds the lease taken and
/// stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_runner_holds_the_lease_and_a_standby_takes_over_when_it_dies() {
    let _horizon = crate::common::horizon_shared().await;
    let proxy = common::proxy::Proxy::start().await;
    let (writer, _, second_store, _) = lease_stores().await;
    let first_store = common::same_schema(&writer, &proxy.url("es_lease_cut")).await;

    let first = PgProjectionRunner::new(first_store, Sums::default())
        .standby_poll(Duration::from_millis(100))
        .spawn();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !first.status().leader {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first runner leads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = PgProjectionRunner::new(second_store, Sums::default())
        .standby_poll(Duration::from_millis(100))
        .spawn();
    let mut last = Position::ZERO;
    for n in 1..=10 {
        last = writer
            .append(vec![write("s", ExpectedVersion::Any, vec![event(n)])])
            .await
            .unwrap()
            .position;
    }
    first.wait_for(last, Duration::from_secs(10)).await.unwrap();
    assert!(first.status().leader);
    assert!(!second.status().leader, "the second runner stands by");

    proxy.cut();
    for n in 11..=20 {
        last = writer
            .append(vec![write("s", ExpectedVersion::Any, vec![event(n)])])
            .await
            .unwrap()
            .position;
    }
    second
        .wait_for(last, Duration::from_secs(15))
        .await
        .unwrap();
    assert!(second.status().leader, "the standby took over");
    assert_eq!(
        read_model(&writer).await,
        (20, Some(210)),
        "each event applied once"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while first.status().leader {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a runner cut off from its lease's session does not say it leads"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !first.status().leader,
        "back, it finds the lease taken and stands by"
    );
    assert!(second.status().leader);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_projection_is_consistent_when_the_append_returns_and_a_failure_appends_nothing()
{
    let _horizon = crate::common::horizon_shared().await;
    let plain = common::fresh_store().await;
    create_read_model(&plain).await;
    let store = PgStore::builder()
        .schema(plain.schema().as_str())
        .connect(&common::database_url())
        .await
        .unwrap()
        .with_inline_projection(Sums {
            fail_on: Some(666),
            ..Sums::default()
        })
        .unwrap();
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![event(1), event(2)],
        )])
        .await
        .unwrap();
    assert_eq!(
        read_model(&store).await,
        (2, Some(3)),
        "read model updated with the append"
    );

    let err = store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![event(3), event(666)],
        )])
        .await
        .unwrap_err();
    match &err {
        StoreError::InlineProjection {
            projection,
            stream,
            version,
            event_type,
            ..
        } => assert_eq!(
            (
                *projection,
                stream.as_str(),
                version.get(),
                event_type.as_str()
            ),
            ("sums", "s", 4, "test.added"),
            "names the projection and the event it failed on"
        ),
        other => panic!("expected InlineProjection, got {other:?}"),
    }
    assert_eq!(read_model(&store).await, (2, Some(3)));
    assert_eq!(
        store
            .stream_version(&StreamId::new("s"))
            .await
            .unwrap()
            .get(),
        2,
        "nothing appended"
    );
}

/// A core runner's checkpoint that moves forward commits without waiting for its WAL flush
/// (a crash then only means handling some events again); the first one, and one that moves
/// back (a rebuild's reset), wait as any commit does, and the setting never outlives the
/// statement's transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_waits_for_its_flush_only_when_it_does_not_move_forward() {
    use sqlx::Connection;

    let store = common::fresh_store().await;
    let mut conn = sqlx::PgConnection::connect(&common::database_url())
        .await
        .unwrap();
    let statement = store.save_checkpoint_statement().to_owned();
    let default: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_ne!(
        default, "off",
        "the test needs a server that waits for flushes"
    );
    // (position to save, whether that commit waits for its flush)
    let steps = [
        ((5, 1), true),  // the first checkpoint
        ((5, 9), false), // forward
        ((7, 2), false), // forward
        ((7, 2), false), // the same again
        ((0, 0), true),  // back to zero: a reset
        ((3, 4), false), // forward from there
        ((2, 8), true),  // back
    ];
    for ((c, s), waits) in steps {
        let mut tx = conn.begin().await.unwrap();
        sqlx::query(&statement)
            .bind("p")
            .bind(c as i64)
            .bind(s as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
        let during: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let expected = if waits { default.as_str() } else { "off" };
        assert_eq!(during, expected, "saving ({c}, {s})");
        let after: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(after, default, "the setting outlived the transaction");
        assert_eq!(
            store.load_checkpoint("p").await.unwrap(),
            Some(Position::new(c, s))
        );
    }

    // Through the store's own call, in autocommit: saved, and no connection keeps the setting.
    store
        .save_checkpoint("q", Position::new(9, 9))
        .await
        .unwrap();
    store
        .save_checkpoint("q", Position::new(10, 1))
        .await
        .unwrap();
    assert_eq!(
        store.load_checkpoint("q").await.unwrap(),
        Some(Position::new(10, 1))
    );
    for _ in 0..8 {
        let now: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(now, default);
    }
}

/// A transactional runner whose handler panics stops with `HandlerPanicked` naming the event,
/// in its status; the batch is rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transactional_handler_that_panics_is_a_typed_error_and_rolls_its_batch_back() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    create_read_model(&store).await;
    let mut last = Position::ZERO;
    for n in 1..=4 {
        last = store
            .append(vec![write("s", ExpectedVersion::Any, vec![event(n)])])
            .await
            .unwrap()
            .position;
    }
    let sums = Sums {
        panic_on: Some(3),
        ..Sums::default()
    };
    let handle = PgProjectionRunner::new(store.clone(), sums).spawn();
    assert!(
        handle
            .wait_for(last, Duration::from_secs(10))
            .await
            .is_err()
    );
    match handle.status().failed.as_deref() {
        Some(ProjectionError::HandlerPanicked {
            stream,
            version,
            message,
            ..
        }) => {
            assert_eq!((stream.as_str(), version.get()), ("s", 3));
            assert!(message.contains("panicking on n = 3"), "{message}");
        }
        other => panic!("expected HandlerPanicked, got {other:?}"),
    }
    assert_eq!(read_model(&store).await, (0, None), "the batch rolled back");
}

/// An inline projection that panics fails the append with a typed error and appends nothing;
/// the store works on. Appends under the writers' lock run the inline projections too, in a
/// transaction on the lock's own session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_inline_projection_that_panics_appends_nothing_and_locked_appends_run_inline_too() {
    let _horizon = crate::common::horizon_shared().await;
    let plain = common::fresh_store().await;
    create_read_model(&plain).await;
    let store = PgStore::builder()
        .schema(plain.schema().as_str())
        .connect(&common::database_url())
        .await
        .unwrap()
        .with_inline_projection(Sums {
            panic_on: Some(13),
            ..Sums::default()
        })
        .unwrap();
    store
        .append(vec![write("s", ExpectedVersion::NoStream, vec![event(1)])])
        .await
        .unwrap();
    match store
        .append(vec![write("s", ExpectedVersion::Any, vec![event(13)])])
        .await
    {
        Err(StoreError::InlineProjection {
            version, source, ..
        }) => {
            assert_eq!(version.get(), 2);
            assert!(
                source.to_string().contains("panicking on n = 13"),
                "{source}"
            );
        }
        other => panic!("expected InlineProjection, got {other:?}"),
    }
    assert_eq!(read_model(&store).await, (1, Some(1)));
    let stream = StreamId::new("s");
    let mut lock = store
        .lock_streams(std::slice::from_ref(&stream))
        .await
        .unwrap();
    assert!(matches!(
        plain
            .append(vec![write("s", ExpectedVersion::Any, vec![event(5)])])
            .await,
        Err(StoreError::StreamLocked { .. })
    ));
    match lock
        .append(vec![write("s", ExpectedVersion::Any, vec![event(13)])])
        .await
    {
        Err(StoreError::InlineProjection { .. }) => {}
        other => panic!("expected InlineProjection under the lock, got {other:?}"),
    }
    lock.append(vec![write(
        "s",
        ExpectedVersion::Exact(eventsource_core::Version::new(1)),
        vec![event(2)],
    )])
    .await
    .expect("the lock's append, inline projection included");
    assert_eq!(read_model(&store).await, (2, Some(3)));
    assert!(
        matches!(
            plain
                .append(vec![write("s", ExpectedVersion::Any, vec![event(5)])])
                .await,
            Err(StoreError::StreamLocked { .. })
        ),
        "still locked after the lock's appends"
    );
    lock.release().await.unwrap();
    plain
        .append(vec![write("s", ExpectedVersion::Any, vec![event(4)])])
        .await
        .expect("released");
    assert_eq!(store.stream_version(&stream).await.unwrap().get(), 3);
}
