//! Faults are weather: projections and subscriptions ride out a server that ends their
//! sessions every few hundred milliseconds, and a server that restarts, with no restart by
//! the caller. Writers append 4,000 events meanwhile (retrying failed appends with the same
//! event ids); afterwards both runners' read models are complete (the PostgreSQL runner's
//! exactly once: its read model's primary key refuses a second application) and the
//! subscription has yielded every event once, in order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use eventsource_core::{
    EventId, EventStore, ExpectedVersion, HandlerError, NewEvent, Position, Projection,
    ProjectionRunner, RecordedEvent, subscribe,
};
use eventsource_postgres::{PgProjectionContext, PgProjectionRunner, PgStore};
use futures::StreamExt;
use sqlx::Connection;
use std::sync::Mutex;

use crate::common::{self, write};

/// Whether the writers are still writing (the weather must meet them).
static WRITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The application name of the test's own check, which the weather spares.
const CHECK: &str = "es_weather_check";

const WRITERS: usize = 4;
const PER_WRITER: usize = 1_000;

/// Applies each event once into `applied` (a second application violates the key).
struct Applied;

impl Projection for Applied {
    const NAME: &'static str = "weather.applied";
    type Context = PgProjectionContext;

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        let schema = ctx.store().schema().as_str().to_owned();
        sqlx::query(&format!(
            "INSERT INTO \"{schema}\".applied (event_id, position) VALUES ($1, $2)"
        ))
        .bind(event.id.as_uuid())
        .bind(event.position.to_string())
        .execute(ctx.conn())
        .await?;
        Ok(())
    }
}

/// Collects every event id it is handed (at least once).
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<EventId>>>);

impl Projection for Seen {
    const NAME: &'static str = "weather.seen";
    type Context = ();

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.id);
        Ok(())
    }
}

/// A store on `url` in a fresh schema, with the read model's table; and a second handle on
/// that schema for the writers.
async fn stores(url: &str) -> (PgStore, PgStore) {
    let reader = PgStore::builder()
        .schema(&common::unique_schema())
        .max_connections(8)
        .connect(url)
        .await
        .unwrap();
    let schema = reader.schema().as_str().to_owned();
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!(
        "CREATE TABLE \"{schema}\".applied (event_id uuid PRIMARY KEY, position text NOT NULL)"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let writer = PgStore::builder()
        .schema(&schema)
        .max_connections(8)
        .connect(url)
        .await
        .unwrap();
    (reader, writer)
}

/// Appends `PER_WRITER` events to each of `WRITERS` streams, one event per append, every
/// failed append tried again with the same event: its ids make a retry after a lost reply
/// return the first commit. Returns every id written, and how many appends failed.
async fn write_all(writer: &PgStore) -> (HashSet<EventId>, usize) {
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(PER_WRITER);
            let mut failures = 0;
            for i in 0..PER_WRITER {
                let event = NewEvent::new("weather.tick", 1, format!("{{\"n\":{i}}}").into_bytes());
                ids.push(event.id);
                let write = write(&format!("w{w}"), ExpectedVersion::Any, vec![event]);
                // Paced, so the weather meets the writers (a few seconds of writing).
                tokio::time::sleep(Duration::from_millis(1)).await;
                let mut tries = 0;
                while let Err(e) = writer.append(vec![write.clone()]).await {
                    assert!(e.is_retryable(), "only transient failures: {e:?}");
                    failures += 1;
                    tries += 1;
                    assert!(tries < 1_000, "appends never went through: {e:?}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            (ids, failures)
        }));
    }
    let (mut all, mut failed) = (HashSet::new(), 0);
    for t in tasks {
        let (ids, failures) = t.await.unwrap();
        all.extend(ids);
        failed += failures;
    }
    (all, failed)
}

/// Runs the writers with both runners and a subscription following, while `weather` does its
/// worst; then checks that everything arrived, and as often as promised. Returns how many
/// appends failed (the weather reached the writers).
async fn ride_out(url: &str, weather: impl std::future::Future<Output = ()>) -> usize {
    let (reader, writer) = stores(url).await;
    let pg = PgProjectionRunner::new(reader.clone(), Applied)
        .batch_size(100)
        .spawn();
    let seen = Seen::default();
    let core = ProjectionRunner::new(reader.clone(), seen.clone())
        .batch_size(100)
        .spawn();
    let subscribed = Arc::new(Mutex::new(Vec::<RecordedEvent>::new()));
    let subscription = {
        let (reader, subscribed) = (reader.clone(), subscribed.clone());
        tokio::spawn(async move {
            let mut sub = subscribe(reader, Position::ZERO, 100);
            while let Some(e) = sub.next().await {
                subscribed
                    .lock()
                    .unwrap()
                    .push(e.expect("a subscription rides out transient faults"));
            }
        })
    };
    let writes = async {
        let written = write_all(&writer).await;
        WRITING.store(false, std::sync::atomic::Ordering::SeqCst);
        written
    };
    WRITING.store(true, std::sync::atomic::Ordering::SeqCst);
    let ((written, failed), ()) = tokio::join!(writes, weather);
    assert_eq!(written.len(), WRITERS * PER_WRITER);
    // Everything is readable once the weather has passed.
    let head = loop {
        match writer.head().await {
            Ok(head) => break head,
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
    };
    for (handle, which) in [(&pg, "PostgreSQL"), (&core, "core")] {
        let status = handle.status();
        assert!(
            !status.stopped,
            "the {which} runner never stops: {status:?}"
        );
        handle
            .wait_for(head, Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("the {which} runner catches up: {e:?}"));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while subscribed.lock().unwrap().len() < written.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscription delivers everything"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The PostgreSQL runner: exactly once (the key refused any second application; the
    // runner would have stopped on it), every event.
    let schema = reader.schema().as_str().to_owned();
    // The weather spares this one connection (its application name), the test's own check.
    let sep = if url.contains('?') { '&' } else { '?' };
    let check_url = format!("{url}{sep}application_name={CHECK}");
    let mut conn = sqlx::PgConnection::connect(&check_url).await.unwrap();
    let applied: Vec<uuid::Uuid> =
        sqlx::query_scalar(&format!("SELECT event_id FROM \"{schema}\".applied"))
            .fetch_all(&mut conn)
            .await
            .unwrap();
    let applied: HashSet<EventId> = applied.into_iter().map(EventId::from_uuid).collect();
    assert_eq!(
        applied, written,
        "the PostgreSQL runner's read model is complete"
    );
    // The core runner: at least once, every event.
    let core_seen: HashSet<EventId> = seen.0.lock().unwrap().iter().copied().collect();
    assert_eq!(
        core_seen, written,
        "the core runner's read model is complete"
    );
    // The subscription: each event once, in position order.
    let subscribed = subscribed.lock().unwrap().clone();
    let ids: HashSet<EventId> = subscribed.iter().map(|e| e.id).collect();
    assert_eq!(ids.len(), subscribed.len(), "nothing yielded twice");
    assert_eq!(ids, written);
    assert!(subscribed.windows(2).all(|w| w[0].position < w[1].position));

    for handle in [pg, core] {
        assert!(handle.status().failed.is_none());
        handle.shutdown().await.expect("shut down cleanly");
    }
    subscription.abort();
    failed
}

/// Every session of the test's own database is ended about every 400 ms while the writers
/// write and the runners follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_and_a_subscription_ride_out_sessions_ended_every_400_ms() {
    let _horizon = crate::common::horizon_shared().await;
    let database = common::database::Database::create().await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (name, done) = (database.name.clone(), done.clone());
        tokio::spawn(async move {
            let mut rounds = 0;
            let mut conn = common::raw().await;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let ended: Vec<bool> = sqlx::query_scalar(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2",
                )
                .bind(&name)
                .bind(CHECK)
                .fetch_all(&mut conn)
                .await
                .unwrap();
                let writing = WRITING.load(std::sync::atomic::Ordering::SeqCst);
                rounds += usize::from(!ended.is_empty() && writing);
            }
            rounds
        })
    };
    let weather = async {
        // The writers take a few seconds; the killer runs throughout.
    };
    let failed = ride_out(&database.url, weather).await;
    eprintln!("sessions ended: {failed} appends failed and were tried again");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let rounds = killer.await.unwrap();
    assert!(
        rounds >= 3,
        "sessions were ended {rounds} times while the writers wrote"
    );
}

/// The server itself restarts twice (a fast shutdown ends every session; the listener, the
/// leases and the pools all lose their connections) while the writers write and the runners
/// follow. On a cluster of the test's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn runners_and_a_subscription_ride_out_two_server_restarts() {
    let _horizon = crate::common::horizon_shared().await;
    let cluster = Arc::new(common::cluster::Cluster::start(""));
    let during = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let weather = {
        let (cluster, during) = (cluster.clone(), during.clone());
        async move {
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let cluster = cluster.clone();
                tokio::task::spawn_blocking(move || cluster.restart())
                    .await
                    .unwrap();
                if WRITING.load(std::sync::atomic::Ordering::SeqCst) {
                    during.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    let failed = ride_out(&cluster.url, weather).await;
    let during = during.load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("two restarts, {during} while writing: {failed} appends failed and were tried again");
    assert_eq!(during, 2, "both restarts happened while the writers wrote");
}
