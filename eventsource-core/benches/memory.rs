//! In-memory store baseline: append throughput (single and batched), load of a 10,000-event
//! aggregate with and without a snapshot, projection catch-up.
//!
//! `cargo bench -p eventsource-core --features testing --bench memory`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use eventsource_core::testing::fixtures::{AddedLog, Counter, CounterEvent};
use eventsource_core::{
    Aggregate, EventStore, ExpectedVersion, InMemoryStore, NewEvent, Position, ProjectionRunner,
    Repository, StreamWrite,
};

fn added(n: i64) -> NewEvent {
    CounterEvent::Added(n).to_new_event()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn seeded(stream: &str, events: usize) -> InMemoryStore {
    let store = InMemoryStore::new();
    for chunk in 0..events / 1000 {
        let batch = (0..1000)
            .map(|i| added((chunk * 1000 + i) as i64))
            .collect();
        store
            .append(vec![StreamWrite::new(stream, ExpectedVersion::Any, batch)])
            .await
            .unwrap();
    }
    store
}

fn append(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1));
    g.bench_function("single_event", |b| {
        let store = InMemoryStore::new();
        let mut i = 0u64;
        b.to_async(&rt).iter(|| {
            i += 1;
            let stream = format!("s-{}", i % 1000);
            let store = store.clone();
            async move {
                store
                    .append(vec![StreamWrite::new(
                        stream,
                        ExpectedVersion::Any,
                        vec![added(1)],
                    )])
                    .await
                    .unwrap()
            }
        });
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_of_100", |b| {
        let store = InMemoryStore::new();
        let mut i = 0u64;
        b.to_async(&rt).iter_batched(
            || {
                i += 1;
                (
                    format!("s-{}", i % 1000),
                    (0..100).map(added).collect::<Vec<_>>(),
                )
            },
            |(stream, events)| {
                let store = store.clone();
                async move {
                    store
                        .append(vec![StreamWrite::new(stream, ExpectedVersion::Any, events)])
                        .await
                        .unwrap()
                }
            },
            BatchSize::SmallInput,
        );
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("load_10k");
    g.throughput(Throughput::Elements(10_000));
    let store = rt.block_on(seeded("counter-big", 10_000));
    let repo = Repository::<Counter, _>::new(store.clone());
    g.bench_function("without_snapshot", |b| {
        b.to_async(&rt)
            .iter(|| async { repo.load("big").await.unwrap() });
    });
    // One command writes a snapshot at version 10,000 (the counter snapshots every 5 events).
    let with_snapshot = rt.block_on(async {
        let store = seeded("counter-big", 9_999).await;
        store
            .append(vec![StreamWrite::new(
                Counter::stream_id("big"),
                ExpectedVersion::Any,
                (0..999).map(added).collect(),
            )])
            .await
            .unwrap();
        let repo = Repository::<Counter, _>::new(store);
        repo.execute("big", |c| c.add(1)).await.unwrap();
        repo
    });
    g.bench_function("with_snapshot", |b| {
        b.to_async(&rt)
            .iter(|| async { with_snapshot.load("big").await.unwrap() });
    });
    g.finish();
}

fn catch_up(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("projection_catch_up");
    g.throughput(Throughput::Elements(100_000));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    let store = rt.block_on(seeded("counter-log", 100_000));
    g.bench_function("100k_events", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            async move {
                // The checkpoint name is the projection type's; reset it so each run starts
                // from zero (one map insert, negligible next to 100,000 events).
                store
                    .save_checkpoint("conformance.added-log", Position::ZERO)
                    .await
                    .unwrap();
                let mut runner = ProjectionRunner::new(store, AddedLog::default()).batch_size(1000);
                runner.catch_up().await.unwrap()
            }
        });
    });
    g.finish();
}

criterion_group!(benches, append, load, catch_up);
criterion_main!(benches);
