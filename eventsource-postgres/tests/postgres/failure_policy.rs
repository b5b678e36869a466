//! The transactional runner's failure policy: a poison event parks its stream in a read
//! model kept in the store's database (its letters in the batch's transaction), while writers
//! go on and the runner's sessions are ended under it; a retry after the fix applies the
//! stream in order, exactly once; a dead-letter write that fails rolls its batch back and
//! stops the runner.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_core::projection::{DeadLetterSelect, FailurePolicy, OnFailure};
use eventsource_core::store::{DeadLetterQuery, DeadLetterReason};
use eventsource_core::{
    EventStore, ExpectedVersion, HandlerError, Position, Projection, ProjectionError, RecordedEvent,
};
use eventsource_postgres::{PgProjectionContext, PgProjectionRunner, PgStore};

use crate::common::{self, event, write};

const WAIT: Duration = Duration::from_secs(60);

/// One row per applied event, numbered in the order applied (a second application violates
/// the key and stops the runner). Fails while the event's `n` is poisoned.
#[derive(Clone, Default)]
struct Ledger {
    poisoned: Arc<Mutex<BTreeSet<u64>>>,
    /// Fail with a transient error on these, every time.
    flaky: Arc<Mutex<BTreeSet<u64>>>,
}

impl Projection for Ledger {
    const NAME: &'static str = "ledger";
    type Context = PgProjectionContext;

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        let v: serde_json::Value = serde_json::from_slice(&event.payload)?;
        let n = v["n"].as_u64().ok_or("no n")?;
        if self.poisoned.lock().unwrap().contains(&n) {
            return Err(format!("{n} is poison").into());
        }
        if self.flaky.lock().unwrap().contains(&n) {
            return Err(eventsource_core::Transient::new(format!("{n} times out")).into());
        }
        let schema = ctx.store().schema().as_str().to_owned();
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".ledger (event_id, stream, version) VALUES ($1, $2, $3)"
        ))
        .bind(event.id.as_uuid())
        .bind(event.stream.as_str())
        .bind(event.version.get() as i64)
        .execute(ctx.conn())
        .await?;
        Ok(())
    }
}

async fn ledger_store(app: &str) -> PgStore {
    let store = common::builder()
        .connect(&common::url_with_application(app))
        .await
        .unwrap();
    let schema = store.schema().as_str();
    let mut conn = common::raw().await;
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".ledger (n bigserial, event_id uuid PRIMARY KEY, \
         stream text NOT NULL, version bigint NOT NULL)"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    store
}

/// The versions applied of `stream`, in the order they were applied.
async fn applied(store: &PgStore, stream: &str) -> Vec<i64> {
    let schema = store.schema().as_str();
    let mut conn = common::raw().await;
    sqlx::query_scalar(&format!(
        "SELECT version FROM \"{schema}\".ledger WHERE stream = $1 ORDER BY n"
    ))
    .bind(stream)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn add(store: &PgStore, stream: &str, n: u64) -> Position {
    store
        .append(vec![write(stream, ExpectedVersion::Any, vec![event(n)])])
        .await
        .unwrap()
        .position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_poison_event_parks_its_stream_while_4_writers_go_on_and_sessions_end_then_a_retry_applies_it_in_order()
 {
    let _horizon = common::horizon_shared().await;
    const APP: &str = "es_fp_park_runner";
    let store = ledger_store(APP).await;
    let writer = common::same_schema(&store, &common::database_url()).await;
    let ledger = Ledger::default();
    ledger.poisoned.lock().unwrap().insert(666);
    let handle = PgProjectionRunner::new(store.clone(), ledger.clone())
        .batch_size(16)
        .standby_poll(Duration::from_millis(50))
        .on_failure(FailurePolicy::default().live(OnFailure::ParkStream))
        .spawn();

    add(&writer, "p", 1).await;
    add(&writer, "p", 2).await;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let writer = writer.clone();
            tokio::spawn(async move {
                for n in 1..=60 {
                    add(&writer, &format!("w{w}"), n).await;
                }
            })
        })
        .collect();
    let killer = tokio::spawn(async move {
        let mut ended = 0;
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            ended += common::kill_sessions(APP).await;
        }
        ended
    });
    let poison = add(&writer, "p", 666).await;
    let behind = [add(&writer, "p", 3).await, add(&writer, "p", 4).await];
    for w in writers {
        w.await.unwrap();
    }
    assert!(
        killer.await.unwrap() > 0,
        "the runner's sessions were ended"
    );
    let head = writer.head().await.unwrap();
    let reached = handle
        .wait_for(head, WAIT)
        .await
        .expect("passed the poison");

    for w in 0..4 {
        assert_eq!(
            applied(&store, &format!("w{w}")).await,
            (1..=60).collect::<Vec<_>>(),
            "every other stream flows, in order, exactly once"
        );
    }
    assert_eq!(applied(&store, "p").await, vec![1, 2]);
    assert_eq!(
        reached.dead_lettered,
        vec![poison, behind[0], behind[1]],
        "wait_for names what it passed by"
    );
    let letters = store
        .dead_letters("ledger", &DeadLetterQuery::all())
        .await
        .unwrap();
    let listed: Vec<(Position, DeadLetterReason)> = letters
        .iter()
        .map(|l| (l.event.position, l.reason))
        .collect();
    assert_eq!(
        listed,
        vec![
            (poison, DeadLetterReason::Failed),
            (behind[0], DeadLetterReason::Parked),
            (behind[1], DeadLetterReason::Parked),
        ],
        "one letter per event, in stream order, whatever the ended sessions replayed"
    );

    ledger.poisoned.lock().unwrap().clear();
    // The ended sessions may still be making the runner lead again (its lease's watchdog
    // finds a dead session within a few seconds): a retry asks the runner that leads.
    // A retry cut short (the lease lost midway) may have applied its first letters: the one
    // that succeeds then applies the rest, and every letter is applied once, in order (the
    // ledger below).
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut cut_short = Vec::new();
    let retried = loop {
        match handle
            .retry_dead_letters(DeadLetterSelect::Stream("p".into()))
            .await
        {
            Ok(retried) => break retried,
            Err(e @ (ProjectionError::NotLeading { .. } | ProjectionError::LeaseLost { .. })) => {
                assert!(tokio::time::Instant::now() < deadline, "{e:?}");
                cut_short.push(e);
            }
            Err(e) if e.is_transient() => {
                assert!(tokio::time::Instant::now() < deadline);
                cut_short.push(e);
            }
            Err(e) => panic!("retry: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(retried.failed.is_empty(), "{retried:?}");
    if cut_short.is_empty() {
        assert_eq!(retried.handled.len(), 3, "{retried:?}");
    } else {
        assert!(
            (1..=3).contains(&retried.handled.len()),
            "{retried:?} after {cut_short:?}"
        );
    }
    let later = add(&writer, "p", 5).await;
    let reached = handle.wait_for(later, WAIT).await.unwrap();
    assert!(reached.is_complete(), "{reached:?}");
    assert_eq!(applied(&store, "p").await, vec![1, 2, 3, 4, 5, 6]);
    assert!(
        store
            .dead_letters("ledger", &DeadLetterQuery::pending())
            .await
            .unwrap()
            .is_empty()
    );
    handle.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_write_that_fails_rolls_its_batch_back_and_stops_the_runner() {
    let _horizon = common::horizon_shared().await;
    let store = ledger_store("es_fp_refused").await;
    let schema = store.schema().as_str().to_owned();
    let mut conn = common::raw().await;
    for ddl in [
        format!(
            "CREATE FUNCTION \"{schema}\".refuse() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'no dead letters today'; END $$"
        ),
        format!(
            "CREATE TRIGGER refuse BEFORE INSERT ON \"{schema}\".dead_letters \
             FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse()"
        ),
    ] {
        sqlx::query(&ddl).execute(&mut conn).await.unwrap();
    }
    let first = add(&store, "s", 1).await;
    let mut runner = PgProjectionRunner::new(store.clone(), Ledger::default());
    runner.catch_up().await.unwrap();
    drop(runner);
    add(&store, "s", 2).await;
    let poison = add(&store, "s", 666).await;
    add(&store, "s", 3).await;

    let ledger = Ledger::default();
    ledger.poisoned.lock().unwrap().insert(666);
    let mut runner = PgProjectionRunner::new(store.clone(), ledger)
        .on_failure(FailurePolicy::default().live(OnFailure::Skip));
    let ended = tokio::time::timeout(WAIT, runner.catch_up())
        .await
        .expect("never hangs");
    assert!(
        matches!(&ended, Err(ProjectionError::Store { source, .. }) if !source.is_retryable()),
        "{ended:?}"
    );
    drop(runner);
    assert_eq!(
        applied(&store, "s").await,
        vec![1],
        "the batch that could not write its letter left nothing"
    );
    let checkpoint = store.load_checkpoint("ledger").await.unwrap().unwrap();
    assert!(checkpoint >= first && checkpoint < poison);
    let letters: HashSet<Position> = store
        .dead_letters("ledger", &DeadLetterQuery::all())
        .await
        .unwrap()
        .iter()
        .map(|l| l.event.position)
        .collect();
    assert!(letters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_error_behind_a_poison_event_in_one_batch_still_reaches_the_policy() {
    let _horizon = common::horizon_shared().await;
    let store = ledger_store("es_fp_flaky").await;
    add(&store, "a", 1).await;
    let poison = add(&store, "a", 666).await;
    let flaky = add(&store, "b", 777).await;
    add(&store, "b", 2).await;
    let ledger = Ledger::default();
    ledger.poisoned.lock().unwrap().insert(666);
    ledger.flaky.lock().unwrap().insert(777);
    let mut runner = PgProjectionRunner::new(store.clone(), ledger).on_failure(
        FailurePolicy::default()
            .live(OnFailure::Skip)
            .transient_attempts(3),
    );
    tokio::time::timeout(WAIT, runner.catch_up())
        .await
        .expect("the tries of one event are counted whatever else the batch meets")
        .expect("caught up");
    let letters: Vec<Position> = store
        .dead_letters("ledger", &DeadLetterQuery::pending())
        .await
        .unwrap()
        .iter()
        .map(|l| l.event.position)
        .collect();
    assert_eq!(letters, vec![poison, flaky]);
    assert_eq!(applied(&store, "a").await, vec![1]);
    assert_eq!(applied(&store, "b").await, vec![2]);
}
