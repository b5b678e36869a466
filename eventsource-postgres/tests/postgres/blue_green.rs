//! A blue/green rebuild with the transactional runner: version 2 of a read model kept in the
//! store's database warms up into its own table beside version 1 and takes over, while 4
//! writers append, a reader reads the serving version in one snapshot at a time, and the new
//! version's sessions are ended under it. Side effects go to an outbox in the batch's
//! transaction, only for events that are not replays: each event is emailed exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsource_core::projection::is_replay;
use eventsource_core::{
    EventStore, ExpectedVersion, HandlerError, Position, Projection, ProjectionVersions,
    RecordedEvent, version_key,
};
use eventsource_postgres::{PgProjectionContext, PgProjectionRunner, PgStore};
use sqlx::Connection;

use crate::common::{self, event, write};

const WAIT: Duration = Duration::from_secs(60);
const NAME: &str = "balances";

/// One row per event in the version's own table; one outbox row per event that is not a
/// replay (a second one violates the outbox's key, which stops the runner).
#[derive(Clone)]
struct Balances {
    table: &'static str,
}

impl Projection for Balances {
    const NAME: &'static str = NAME;
    type Context = PgProjectionContext;

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        let schema = ctx.store().schema().as_str().to_owned();
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".{} (event_id) VALUES ($1)",
            self.table
        ))
        .bind(event.id.as_uuid())
        .execute(ctx.conn())
        .await?;
        if !is_replay() {
            sqlx::query(&format!(
                "INSERT INTO \"{schema}\".outbox (event_id, sent_by) VALUES ($1, $2)"
            ))
            .bind(event.id.as_uuid())
            .bind(self.table)
            .execute(ctx.conn())
            .await?;
        }
        Ok(())
    }
}

async fn add(store: &PgStore, stream: &str, n: u64) -> Position {
    store
        .append(vec![write(stream, ExpectedVersion::Any, vec![event(n)])])
        .await
        .unwrap()
        .position
}

/// What a reader sees in one snapshot: the serving version, its checkpoint, its rows.
async fn read_serving(conn: &mut sqlx::PgConnection, schema: &str) -> (i32, (i64, i64), i64) {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await
        .unwrap();
    let serving: Option<i32> = sqlx::query_scalar(&format!(
        "SELECT serving FROM \"{schema}\".projection_versions WHERE name = $1"
    ))
    .bind(NAME)
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    let serving = serving.unwrap_or(1);
    let key = version_key(NAME, serving as u32);
    let checkpoint: (i64, i64) = sqlx::query_as(&format!(
        "SELECT commit_id, seq FROM \"{schema}\".checkpoints WHERE name = $1"
    ))
    .bind(&key)
    .fetch_optional(&mut *tx)
    .await
    .unwrap()
    .unwrap_or((0, 0));
    let rows: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".balances_v{serving}"
    ))
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    (serving, checkpoint, rows)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_version_takes_over_under_writers_readers_and_ended_sessions_and_emails_each_event_once()
 {
    let _horizon = common::horizon_shared().await;
    const V1: &str = "es_bg_v1";
    const V2: &str = "es_bg_v2";
    let blue = common::builder()
        .connect(&common::url_with_application(V1))
        .await
        .unwrap();
    let schema = blue.schema().as_str().to_owned();
    let mut conn = common::raw().await;
    for ddl in [
        "CREATE TABLE \"{s}\".balances_v1 (event_id uuid PRIMARY KEY)",
        "CREATE TABLE \"{s}\".balances_v2 (event_id uuid PRIMARY KEY)",
        "CREATE TABLE \"{s}\".outbox (event_id uuid PRIMARY KEY, sent_by text NOT NULL)",
    ] {
        sqlx::query(&ddl.replace("{s}", &schema))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let green = common::same_schema(&blue, &common::url_with_application(V2)).await;
    let writer = common::same_schema(&blue, &common::database_url()).await;
    for n in 1..=50 {
        add(&writer, &format!("s{}", n % 5), n).await;
    }
    let v1 = PgProjectionRunner::new(
        blue.clone(),
        Balances {
            table: "balances_v1",
        },
    )
    .batch_size(8)
    .standby_poll(Duration::from_millis(50))
    .spawn();
    v1.wait_for(writer.head().await.unwrap(), WAIT)
        .await
        .expect("version 1 live");

    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, schema) = (stop.clone(), schema.clone());
        tokio::spawn(async move {
            let mut conn = common::raw().await;
            let mut samples = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                samples.push(read_serving(&mut conn, &schema).await);
            }
            samples
        })
    };
    // The writers go on until version 2 took over, and for 20 events each after.
    let switched = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (writer, switched) = (writer.clone(), switched.clone());
            tokio::spawn(async move {
                let mut after = 0;
                for n in 1..=5_000 {
                    add(&writer, &format!("w{w}"), n).await;
                    if n % 15 == 0 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if switched.load(Ordering::SeqCst) {
                        after += 1;
                        if after == 20 {
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let v2 = PgProjectionRunner::new(
        green.clone(),
        Balances {
            table: "balances_v2",
        },
    )
    .version(2)
    .unwrap()
    .batch_size(8)
    .standby_poll(Duration::from_millis(50))
    .spawn();
    let killer = tokio::spawn(async move {
        let mut ended = 0;
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(120)).await;
            ended += common::kill_sessions(V2).await;
        }
        ended
    });
    v2.wait_serving(WAIT).await.expect("version 2 takes over");
    switched.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        killer.await.unwrap() > 0,
        "no session of version 2 was ended"
    );
    let head = writer.head().await.unwrap();
    v2.wait_for(head, WAIT)
        .await
        .expect("version 2 follows live");
    stop.store(true, Ordering::SeqCst);
    let samples = reader.await.unwrap();

    assert_eq!(
        writer.projection_versions(NAME).await.unwrap(),
        ProjectionVersions::with(2, None)
    );
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".events"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let count = |sql: String| {
        let sql = sql.replace("{s}", &schema);
        async move {
            let mut conn = common::raw().await;
            sqlx::query_scalar::<_, i64>(&sql)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM \"{s}\".balances_v2".into()).await,
        total
    );
    assert_eq!(
        count("SELECT count(*) FROM \"{s}\".outbox".into()).await,
        total,
        "every event emailed, none twice (the outbox's key)"
    );
    assert!(
        count("SELECT count(*) FROM \"{s}\".outbox WHERE sent_by = 'balances_v2'".into()).await > 0,
        "version 2 emailed the events after the switch"
    );

    // The reader: version 1, then version 2, never back; the checkpoint never back; never
    // an empty model; in each snapshot the model holds exactly the events its checkpoint
    // passed.
    assert!(samples.iter().any(|s| s.0 == 1) && samples.iter().any(|s| s.0 == 2));
    let mut last = (0, (0, 0));
    for (serving, checkpoint, rows) in &samples {
        assert!(*rows > 0, "an empty model (version {serving})");
        assert!(
            *serving >= last.0 && *checkpoint >= last.1,
            "went back from {last:?} to {:?}",
            (serving, checkpoint)
        );
        let passed: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM \"{schema}\".events WHERE (commit_id, seq) <= ($1, $2)"
        ))
        .bind(checkpoint.0)
        .bind(checkpoint.1)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(*rows, passed, "version {serving} at {checkpoint:?}");
        last = (*serving, *checkpoint);
    }

    // Version 1 stopped, superseded, its checkpoint sealed where the switch took place.
    let stopped = tokio::time::timeout(WAIT, async {
        loop {
            let s = v1.status();
            if s.stopped {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("version 1 stops");
    assert_eq!(stopped.superseded_by, Some(2));
    let sealed_at = writer.load_checkpoint(NAME).await.unwrap().unwrap();
    assert!(sealed_at < head);
    v2.shutdown().await.unwrap();
}
