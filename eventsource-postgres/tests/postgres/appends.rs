//! Appends: conflicts, idempotency, hot streams, odd names.

use std::collections::HashSet;

use eventsource_core::{
    EventStore, ExpectedVersion, NewEvent, ReadUntil, StoreError, StreamId, Version,
};
use eventsource_postgres::PgStore;
use futures::TryStreamExt;

use crate::common::{self, event, write};

async fn versions(store: &PgStore, stream: &str) -> Vec<u64> {
    let id = StreamId::new(stream);
    store
        .read_stream(&id, Version::FIRST, ReadUntil::End)
        .map_ok(|e| e.version.get())
        .try_collect()
        .await
        .expect("read")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_append_is_rejected_with_expected_and_actual_and_nothing_is_written() {
    let store = common::fresh_store().await;
    store
        .append(vec![write(
            "s",
            ExpectedVersion::NoStream,
            vec![event(1), event(2)],
        )])
        .await
        .unwrap();
    let err = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(1)),
            vec![event(3)],
        )])
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream.as_str(), "s");
            assert_eq!(expected, ExpectedVersion::Exact(Version::new(1)));
            assert_eq!(actual, Version::new(2));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(versions(&store, "s").await, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_any_appends_on_one_new_stream_never_surface_a_unique_violation() {
    let store = common::fresh_store().await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                store
                    .append(vec![write(
                        "hot",
                        ExpectedVersion::Any,
                        vec![event(t * 100 + i)],
                    )])
                    .await
                    .expect("an Any append never fails");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(versions(&store, "hot").await, (1..=200).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_batch_appended_concurrently_commits_once_and_both_get_the_first_commit() {
    let store = common::fresh_store().await;
    for round in 0..20 {
        let stream = format!("s{round}");
        let batch = vec![event(1), event(2), event(3)];
        let a = store.append(vec![write(&stream, ExpectedVersion::Any, batch.clone())]);
        let b = store.append(vec![write(&stream, ExpectedVersion::Any, batch.clone())]);
        let (a, b) = tokio::join!(a, b);
        let (a, b) = (a.expect("first"), b.expect("second"));
        assert_eq!(a, b, "both callers get the original commit");
        assert_eq!(versions(&store, &stream).await, vec![1, 2, 3]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payload_that_differs_only_in_json_formatting_is_a_different_event() {
    // jsonb would normalise these two into one value; the store compares bytes.
    let store = common::fresh_store().await;
    let first = NewEvent::new("t", 1, &br#"{"a":1,"b":2}"#[..]);
    let reformatted = NewEvent::new("t", 1, &br#"{"b":2, "a":1}"#[..]).with_id(first.id);
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![first.clone()])])
        .await
        .unwrap();
    let err = store
        .append(vec![write("s", ExpectedVersion::Any, vec![reformatted])])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::EventIdReused { .. }), "{err:?}");
    let stored = store.event_by_id(first.id).await.unwrap().unwrap();
    assert_eq!(
        stored.payload, first.payload,
        "payload bytes round-trip exactly"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multi_stream_appends_in_opposite_orders_never_deadlock_or_lose_events() {
    let store = common::fresh_store().await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let (x, y) = if t % 2 == 0 { ("x", "y") } else { ("y", "x") };
                store
                    .append(vec![
                        write(x, ExpectedVersion::Any, vec![event(i)]),
                        write(y, ExpectedVersion::Any, vec![event(i)]),
                    ])
                    .await
                    .expect("multi-stream append");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(versions(&store, "x").await.len(), 160);
    assert_eq!(versions(&store, "y").await.len(), 160);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stream_ids_with_quotes_sql_and_unicode_are_plain_data() {
    let store = common::fresh_store().await;
    let odd = [
        "'; DROP TABLE events; --",
        "a\"b\\c",
        "ünïcödé-流-🦀",
        "$1 $$ %s",
    ];
    for (i, s) in odd.iter().enumerate() {
        store
            .append(vec![write(
                s,
                ExpectedVersion::NoStream,
                vec![event(i as u64)],
            )])
            .await
            .unwrap();
    }
    for s in odd {
        assert_eq!(versions(&store, s).await, vec![1], "{s}");
        assert_eq!(
            store.stream_version(&StreamId::new(s)).await.unwrap(),
            Version::new(1)
        );
    }
    let page = store
        .read_all(Default::default(), 100, Some(&["test.added", "'; x"]))
        .await
        .unwrap();
    let streams: HashSet<_> = page.events.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, odd.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_name_that_is_not_an_identifier_is_rejected_before_any_sql() {
    for bad in [
        "x; DROP TABLE y",
        "Robert'); DROP TABLE students;--",
        "a\"b",
        "",
        "pg_temp",
    ] {
        let err = PgStore::builder()
            .schema(bad)
            .connect(&common::database_url())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Config(_)), "{bad:?}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn migrating_from_many_processes_at_once_is_safe_and_idempotent() {
    let schema = common::unique_schema();
    let url = common::database_url();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (schema, url) = (schema.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            PgStore::builder()
                .schema(&schema)
                .max_connections(2)
                .connect(&url)
                .await
                .expect("store")
        }));
    }
    let mut stores = Vec::new();
    for t in tasks {
        stores.push(t.await.unwrap());
    }
    stores[0].migrate().await.expect("again");
    stores[1]
        .append(vec![write("s", ExpectedVersion::NoStream, vec![event(1)])])
        .await
        .unwrap();
    assert_eq!(versions(&stores[2], "s").await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_stream_lock_serialises_a_hot_stream_without_conflicts() {
    let store = common::fresh_store().await;
    let stream = StreamId::new("hot");
    let mut tasks = Vec::new();
    for t in 0..6u64 {
        let (store, stream) = (store.clone(), stream.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..15u64 {
                let lock = store.lock_stream(&stream).await.expect("lock");
                let v = store.stream_version(&stream).await.expect("version");
                store
                    .append(vec![write(
                        stream.as_str(),
                        ExpectedVersion::Exact(v),
                        vec![event(t * 100 + i)],
                    )])
                    .await
                    .expect("under the lock nothing conflicts");
                lock.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(versions(&store, "hot").await.len(), 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn time_travel_reads_are_served_by_indexes() {
    let store = common::fresh_store().await;
    let mut conn = common::raw().await;
    let schema = store.schema().as_str().to_owned();
    sqlx::query(&format!(
        "INSERT INTO \"{schema}\".events (commit_id, stream_id, version, event_id, event_type, \
           schema_version, payload, recorded_at) \
         SELECT 1, 's' || (g % 100), g, gen_random_uuid(), 't', 1, '\\x00', now() \
         FROM generate_series(1, 20000) g"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query(&format!("ANALYZE \"{schema}\".events"))
        .execute(&mut conn)
        .await
        .unwrap();
    for query in [
        format!(
            "EXPLAIN SELECT version FROM \"{schema}\".events WHERE stream_id = 's1' \
             AND recorded_at <= now() ORDER BY recorded_at DESC, version DESC LIMIT 1"
        ),
        format!(
            "EXPLAIN SELECT * FROM \"{schema}\".events WHERE stream_id = 's1' \
             AND version >= 1 AND version <= 50 ORDER BY version LIMIT 512"
        ),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(&query)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(plan.contains("Index"), "{plan}");
        assert!(!plan.contains("Seq Scan"), "{plan}");
    }
}
