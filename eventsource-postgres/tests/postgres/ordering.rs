//! The gap-safe global order: concurrent writers, slow commits, a held horizon.

use std::collections::HashSet;
use std::time::Duration;

use eventsource_core::{
    EventId, EventStore, ExpectedVersion, HandlerError, NewEvent, Position, Projection,
    RecordedEvent, subscribe,
};
use eventsource_postgres::{PgProjectionContext, PgStore};
use futures::StreamExt;

use crate::common::{self, event, write};

/// An inline projection that only makes the append's transaction slow to commit: it sleeps
/// after the events got their positions and before the commit.
struct SlowCommit;

impl Projection for SlowCommit {
    const NAME: &'static str = "slow_commit";
    type Context = PgProjectionContext;

    async fn handle_event(
        &mut self,
        _event: &RecordedEvent,
        _ctx: &mut PgProjectionContext,
    ) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..25))).await;
        Ok(())
    }
}

/// Reads the log live until `count` events arrived (or the timeout), returning them in
/// delivery order.
async fn collect(store: PgStore, count: usize, timeout: Duration) -> Vec<RecordedEvent> {
    let mut sub = subscribe(store, Position::ZERO, 50);
    let mut seen = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + timeout;
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(Ok(e))) => seen.push(e),
            Ok(Some(Err(e))) => panic!("subscription failed: {e}"),
            Ok(None) | Err(_) => break,
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_with_slow_commits_are_delivered_once_each_in_one_order() {
    let _horizon = crate::common::horizon_shared().await;
    const WRITERS: u64 = 8;
    const APPENDS: u64 = 40;
    const TOTAL: usize = (WRITERS * APPENDS) as usize;
    let url = common::database_url();
    let fast = common::fresh_store().await;
    let slow = PgStore::builder()
        .schema(fast.schema().as_str())
        .max_connections(8)
        .connect(&url)
        .await
        .unwrap()
        .with_inline_projection(SlowCommit)
        .unwrap();
    // Readers are separate stores, as in another process.
    let reader_a = common::same_schema(&fast, &url).await;
    let reader_b = common::same_schema(&fast, &url).await;
    let sub_a = tokio::spawn(collect(reader_a, TOTAL, Duration::from_secs(60)));
    let sub_b = tokio::spawn(collect(reader_b, TOTAL, Duration::from_secs(60)));

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        // Writers 0 and 1 commit slowly, holding lower positions open while others commit.
        let store = if w < 2 { slow.clone() } else { fast.clone() };
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..APPENDS {
                let e = event(w * 1000 + i);
                ids.push(e.id);
                store
                    .append(vec![write(&format!("w{w}"), ExpectedVersion::Any, vec![e])])
                    .await
                    .expect("append");
            }
            ids
        }));
    }
    let mut written: HashSet<EventId> = HashSet::new();
    for w in writers {
        written.extend(w.await.unwrap());
    }
    let (a, b) = (sub_a.await.unwrap(), sub_b.await.unwrap());
    for seen in [&a, &b] {
        assert_eq!(seen.len(), TOTAL, "every event delivered");
        let ids: HashSet<EventId> = seen.iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), TOTAL, "no event delivered twice");
        assert_eq!(ids, written, "exactly the written events");
        assert!(
            seen.windows(2).all(|p| p[0].position < p[1].position),
            "positions strictly increase"
        );
    }
    let order_a: Vec<EventId> = a.iter().map(|e| e.id).collect();
    let order_b: Vec<EventId> = b.iter().map(|e| e.id).collect();
    assert_eq!(order_a, order_b, "both subscribers see one order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_write_transaction_elsewhere_delays_delivery_is_reported_and_loses_nothing() {
    let _horizon = crate::common::horizon_exclusive().await;
    let url = common::database_url();
    let writer = common::fresh_store().await;
    let reader = common::same_schema(&writer, &url).await;

    // Another session (it could be any database of the cluster) opens a write transaction.
    let mut other = common::raw().await;
    let other_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut other)
        .await
        .unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut other)
        .await
        .unwrap();

    let mut ids = Vec::new();
    for i in 0..10 {
        let e = event(i);
        ids.push(e.id);
        writer
            .append(vec![write("s", ExpectedVersion::Any, vec![e])])
            .await
            .unwrap();
    }
    let mut sub = subscribe(reader.clone(), Position::ZERO, 100);
    let early = tokio::time::timeout(Duration::from_millis(400), sub.next()).await;
    assert!(
        early.is_err(),
        "nothing is delivered past a running older transaction"
    );

    let lag = reader.lag().await.unwrap();
    assert_eq!(lag.events_behind, 10, "{lag:?}");
    assert!(lag.newest_committed > lag.horizon, "{lag:?}");
    // The oldest holder is ours unless another session of the cluster is older still.
    let holder = lag
        .holders
        .iter()
        .find(|h| h.pid == other_pid)
        .expect("the open transaction is reported as holding the horizon");
    assert!(holder.age_seconds >= 0.3, "{lag:?}");
    assert_eq!(
        holder.state.as_deref(),
        Some("idle in transaction"),
        "{lag:?}"
    );

    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let seen = common::next_ids(&mut sub, ids.len(), "delivered once the transaction ends").await;
    assert_eq!(seen, ids, "all of them, in order, once");
    let lag = reader.lag().await.unwrap();
    assert!(
        lag.holders.iter().all(|h| h.pid != other_pid),
        "the committed transaction no longer holds it: {lag:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restore_into_a_cluster_with_older_xids_moves_to_a_new_era_and_positions_keep_rising() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    let before = store
        .append(vec![write("s", ExpectedVersion::Any, vec![event(1)])])
        .await
        .unwrap();
    // One-event appends at an exact version (the direct statement, which folds the era in
    // as a constant), so this store's connections hold its plan from the old era.
    for v in 0..8u64 {
        let stream = format!("d-{v}");
        store
            .append(vec![write(
                &stream,
                ExpectedVersion::NoStream,
                vec![event(v)],
            )])
            .await
            .unwrap();
    }
    // Simulate a restore from a cluster whose xids were far ahead of this one's.
    let mut conn = common::raw().await;
    let schema = store.schema().as_str().to_owned();
    sqlx::query(&format!(
        "UPDATE \"{schema}\".events SET commit_id = (1::bigint << 40)"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let restored = PgStore::builder()
        .schema(&schema)
        .connect(&common::database_url())
        .await
        .unwrap();
    let after = restored
        .append(vec![write("s", ExpectedVersion::Any, vec![event(2)])])
        .await
        .unwrap();
    assert!(
        after.position > Position::new(1 << 40, u64::MAX),
        "{after:?} vs {before:?}"
    );
    let page = restored.read_all(Position::ZERO, 20, None).await.unwrap();
    let versions: Vec<u64> = page
        .events
        .iter()
        .filter(|e| e.stream.as_str() == "s")
        .map(|e| e.version.get())
        .collect();
    assert_eq!(
        versions,
        vec![1, 2],
        "the old event first, then the new era's"
    );
    // The store that was running during the bump: its cached plans of the direct statement
    // were invalidated with the era's function, so its new positions are in the new era too.
    for v in 0..8u64 {
        let stream = format!("d-{v}");
        let commit = store
            .append(vec![write(
                &stream,
                ExpectedVersion::Exact(eventsource_core::Version::new(1)),
                vec![event(10 + v)],
            )])
            .await
            .unwrap();
        assert!(
            commit.position > after.position,
            "{commit:?} after the bump, vs {after:?}"
        );
    }
}

/// `store_era()` (the era the direct append folds in) is repaired on start when it disagrees
/// with `store_meta`, the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_era_function_that_disagrees_with_the_record_is_repaired_on_start() {
    let store = common::fresh_store().await;
    let schema = store.schema().as_str().to_owned();
    let mut conn = common::raw().await;
    sqlx::query(&format!(
        "CREATE OR REPLACE FUNCTION \"{schema}\".store_era() RETURNS bigint LANGUAGE sql \
         IMMUTABLE AS 'SELECT 7::bigint'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    let _restarted = common::same_schema(&store, &common::database_url()).await;
    let (era, folded): (i64, i64) = sqlx::query_as(&format!(
        "SELECT m.era, \"{schema}\".store_era() FROM \"{schema}\".store_meta m"
    ))
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((era, folded), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_process_is_woken_by_notify_long_before_its_idle_poll() {
    let _horizon = crate::common::horizon_shared().await;
    let writer = common::fresh_store().await;
    let reader = PgStore::builder()
        .schema(writer.schema().as_str())
        .idle_poll_interval(Duration::from_secs(30))
        .connect(&common::database_url())
        .await
        .unwrap();
    // Let the reader's LISTEN connection come up.
    let head = reader.head().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(300), reader.wait_for_events(head)).await;

    let waiting = tokio::spawn({
        let reader = reader.clone();
        async move {
            let start = tokio::time::Instant::now();
            reader.wait_for_events(head).await.unwrap();
            start.elapsed()
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer
        .append(vec![write("s", ExpectedVersion::Any, vec![event(1)])])
        .await
        .unwrap();
    let waited = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("woken by the notification, not the 30 s poll")
        .unwrap();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // Woken means committed, not readable: another transaction in the cluster may still hold
    // the horizon for a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = reader.read_all(head, 10, None).await.unwrap();
        if page.events.len() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the event became readable"
        );
        reader.wait_for_events(head).await.unwrap();
    }
}

/// A page of the log is always a walk of the position index from the reader's position, also
/// on a table without statistics (before autoanalyze reaches it) and with a type filter: the
/// planner's guess that the filter is selective once made it read every later event with a
/// bitmap scan and sort them, for every page (a catch-up went quadratic). Checked on the
/// custom plans and on the generic plan PostgreSQL switches to after five executions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_pages_walk_the_position_index_even_without_statistics() {
    let store = common::fresh_store().await;
    let schema = store.schema().as_str().to_owned();
    let mut conn = common::raw().await;
    sqlx::query(&format!(
        "ALTER TABLE \"{schema}\".events SET (autovacuum_enabled = false)"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    for b in 0..20u64 {
        let events = (0..1000)
            .map(|i| {
                let ty = if i % 10 == 0 { "rare" } else { "common" };
                eventsource_core::NewEvent::new(ty, 1, b"{}".to_vec())
            })
            .collect();
        store
            .append(vec![write(
                &format!("s-{b}"),
                ExpectedVersion::NoStream,
                events,
            )])
            .await
            .unwrap();
    }
    let analyzed: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
        "SELECT coalesce(last_analyze, last_autoanalyze) FROM pg_stat_user_tables \
         WHERE schemaname = $1 AND relname = 'events'",
    )
    .bind(&schema)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(analyzed, None, "the table must have no statistics");
    sqlx::raw_sql(&format!("PREPARE page AS {}", store.read_all_statement()))
        .execute(&mut conn)
        .await
        .unwrap();
    for types in ["ARRAY['rare']", "ARRAY['common', 'rare']", "NULL"] {
        for execution in 0..7 {
            let plan: Vec<(String,)> =
                sqlx::query_as(&format!("EXPLAIN EXECUTE page(0, 0, 100, {types})"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
            let plan: Vec<String> = plan.into_iter().map(|(line,)| line).collect();
            let text = plan.join("\n");
            assert!(
                text.contains("Index Scan using events_position on events e")
                    && !text.contains("Sort")
                    && !text.contains("Bitmap"),
                "types {types}, execution {execution}: the page does not walk the index:\n{text}"
            );
            // Executing it moves the statement towards its generic plan.
            sqlx::raw_sql(&format!("EXECUTE page(0, 0, 100, {types})"))
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
}

/// Every event of the log, paged with `read_all` (pages of 1,000), keeping only `types`.
async fn paged(store: &PgStore, types: Option<&[&str]>) -> Vec<EventId> {
    let (mut after, mut ids) = (Position::ZERO, Vec::new());
    loop {
        let page = store.read_all(after, 1000, types).await.unwrap();
        if page.events.is_empty() && page.scanned_to <= after {
            return ids;
        }
        after = page.scanned_to;
        ids.extend(page.events.iter().map(|e| e.id));
    }
}

/// A page stream longer than one of its queries (at least 4,096 events each) hands out
/// every event once, in order, in full pages but the last, also when a page spans two
/// queries and when filtering; with no writer running it reaches the end of the log by
/// itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_stream_spans_queries_and_hands_out_every_event() {
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    for b in 0..20u64 {
        let events = (0..500)
            .map(|i| {
                if i % 7 == 3 {
                    NewEvent::new("test.other", 1, b"{}".to_vec())
                } else {
                    event(b * 500 + i)
                }
            })
            .collect();
        store
            .append(vec![write(
                &format!("s-{}", b % 4),
                ExpectedVersion::Any,
                events,
            )])
            .await
            .unwrap();
    }
    let log = paged(&store, None).await;
    assert_eq!(log.len(), 10_000);
    let added = paged(&store, Some(&["test.added"])).await;
    assert!(
        added.len() > 8_000,
        "enough for several queries: {}",
        added.len()
    );
    let from_middle = store.read_all(Position::ZERO, 5_000, None).await.unwrap();
    let middle = from_middle.events[4_999].position;
    for (after, limit, types, expected) in [
        (Position::ZERO, 100, None, &log[..]),
        (Position::ZERO, 250, None, &log[..]),
        (Position::ZERO, 100, Some(&["test.added"][..]), &added[..]),
        (middle, 100, None, &log[5_000..]),
    ] {
        let pages: Vec<_> = store
            .read_all_pages(after, limit, types)
            .map(|p| p.unwrap())
            .collect()
            .await;
        let (last, full) = pages.split_last().unwrap();
        assert!(
            full.iter().all(|p| p.events.len() == limit) && !last.events.is_empty(),
            "limit {limit}: full pages but the last"
        );
        let mut at = after;
        for page in &pages {
            assert!(page.events.first().unwrap().position > at);
            at = page.scanned_to;
            assert_eq!(at, page.events.last().unwrap().position);
        }
        let ids: Vec<EventId> = pages
            .iter()
            .flat_map(|p| p.events.iter().map(|e| e.id))
            .collect();
        assert_eq!(
            ids, expected,
            "limit {limit}, types {types:?}: each event once, in order"
        );
    }
}

/// A projection whose handler waits on a page stalls the stream: it stops (its query and
/// transaction end, its connection goes back) instead of holding them while the handler
/// works, and the runner reads on page by page without losing or repeating an event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_runner_does_not_keep_a_page_stream_open() {
    struct Slow {
        schema: String,
        seen: Vec<EventId>,
        open_while_waiting: Option<i64>,
    }
    impl Projection for Slow {
        const NAME: &'static str = "slow";
        type Context = ();
        async fn handle_event(
            &mut self,
            e: &RecordedEvent,
            _: &mut (),
        ) -> Result<(), HandlerError> {
            self.seen.push(e.id);
            if self.seen.len() == 250 {
                // Well past the runner's stall limit (500 ms): the stream reading pages
                // ahead must have stopped by now.
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                let mut conn = common::raw().await;
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE state <> 'idle' \
                     AND pid <> pg_backend_pid() AND strpos(query, $1) > 0",
                )
                .bind(format!("\"{}\".events", self.schema))
                .fetch_one(&mut conn)
                .await?;
                self.open_while_waiting = Some(open);
            }
            Ok(())
        }
    }
    let _horizon = crate::common::horizon_shared().await;
    let store = common::fresh_store().await;
    for b in 0..5u64 {
        let events = (0..1000).map(|i| event(b * 1000 + i)).collect();
        store
            .append(vec![write(
                &format!("s-{b}"),
                ExpectedVersion::NoStream,
                events,
            )])
            .await
            .unwrap();
    }
    let log = paged(&store, None).await;
    let slow = Slow {
        schema: store.schema().as_str().to_owned(),
        seen: Vec::new(),
        open_while_waiting: None,
    };
    let mut runner = eventsource_core::ProjectionRunner::new(store.clone(), slow).batch_size(100);
    runner.catch_up().await.unwrap();
    let slow = runner.projection();
    assert_eq!(slow.seen, log, "each event once, in order");
    assert_eq!(
        slow.open_while_waiting,
        Some(0),
        "the page stream's query was still open while the handler waited"
    );
}
