//! The client sweep: per-command latency percentiles and throughput at 1 to 64 concurrent
//! tasks, W1 (many streams) and W2 (one hot stream), the store (without and with its state
//! cache) against the gap-safe baseline on the pool and on connections held by each task.
//! How it is measured and the `BENCH_*` variables: `docs/bench.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use eventsource_core::Repository;
use eventsource_core::testing::fixtures::Tally;
use sqlx::PgPool;

mod common;
use common::{
    Kind, baseline_schema, bench_pool, median, new_store_grouped, raw_command, raw_command_held,
};
use eventsource_postgres::GroupCommit;

/// The concurrent tasks of each point.
const TASKS: [usize; 7] = [1, 2, 4, 8, 16, 32, 64];

/// The pool every side runs on: room for 64 tasks holding a connection each (the server
/// allows 100).
const POOL: u32 = 72;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    /// Commands over 1,000 streams.
    W1,
    /// Commands on one stream.
    W2,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    Store,
    StoreCached,
    /// The store with group commit (`GroupCommit::new(BENCH_GROUP_IN_FLIGHT)`, default 4).
    Grouped,
    /// The same, with the state cache.
    GroupedCached,
    /// The gap-safe baseline, statement by statement on the pool.
    Pool,
    /// The gap-safe baseline, each task on a connection it holds.
    Held,
}

const SIDES: [Side; 6] = [
    Side::Store,
    Side::StoreCached,
    Side::Grouped,
    Side::GroupedCached,
    Side::Pool,
    Side::Held,
];

/// Where the baselines sit in [`SIDES`].
const POOL_SIDE: usize = 4;
const HELD_SIDE: usize = 5;

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Store => "store",
            Side::StoreCached => "store, cached",
            Side::Grouped => "grouped",
            Side::GroupedCached => "grouped, cached",
            Side::Pool => "gap-safe, pool",
            Side::Held => "gap-safe, held",
        }
    }
}

/// One timed part: commands per second and each command's latency in milliseconds.
struct Sample {
    rate: f64,
    latencies: Vec<f64>,
}

/// The `q` quantile of sorted `v` (nearest rank).
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The jittered backoff of the baselines after their `attempt`-th lost race in a row (as
/// in W2's).
async fn backoff(attempt: &mut u32) {
    *attempt += 1;
    let cap = (500u64 << (*attempt).min(7)).min(50_000);
    tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=cap))).await;
}

async fn point(
    url: &str,
    pool: &PgPool,
    workload: Workload,
    tasks: usize,
    side: Side,
    scale: f64,
) -> Sample {
    let total = match workload {
        Workload::W1 => (4_000.0 * scale) as usize,
        Workload::W2 => (1_000.0 * scale) as usize,
    };
    let per_task = (total / tasks).max(4);
    let stream_of = move |t: usize, i: usize| match workload {
        Workload::W1 => format!("{}", (t * per_task + i) % 1000),
        Workload::W2 => "hot".to_owned(),
    };
    let (store, s) = match side {
        Side::Store | Side::StoreCached | Side::Grouped | Side::GroupedCached => {
            let group = matches!(side, Side::Grouped | Side::GroupedCached)
                .then(|| GroupCommit::new(common::env_or("BENCH_GROUP_IN_FLIGHT", 4)));
            let store = new_store_grouped(url, pool, group).await;
            let s = store.schema().as_str().to_owned();
            (Some(store), s)
        }
        Side::Pool | Side::Held => (None, baseline_schema(pool, Kind::GapSafe).await),
    };
    let repo = store.map(|store| {
        let repo = Repository::<Tally, _>::new(store);
        if matches!(side, Side::StoreCached | Side::GroupedCached) {
            repo.with_cache(1000)
        } else {
            repo
        }
    });
    sqlx::query("CHECKPOINT").execute(pool).await.unwrap();
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (repo, pool, s) = (repo.clone(), pool.clone(), s.clone());
        handles.push(tokio::spawn(async move {
            let mut held = match side {
                Side::Held => Some(pool.acquire().await.unwrap()),
                _ => None,
            };
            let mut latencies = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let id = stream_of(t, i);
                let stream = format!("tally-{id}");
                let at = Instant::now();
                match (&repo, held.as_deref_mut()) {
                    (Some(repo), _) => {
                        repo.execute(&id, |c| c.0.add(1)).await.unwrap();
                    }
                    (None, Some(conn)) => {
                        let mut attempt = 0;
                        while !raw_command_held(conn, &s, &stream).await {
                            backoff(&mut attempt).await;
                        }
                    }
                    (None, None) => {
                        let mut attempt = 0;
                        while !raw_command(&pool, &s, &stream).await {
                            backoff(&mut attempt).await;
                        }
                    }
                }
                latencies.push(at.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(per_task * tasks);
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    sqlx::query(&format!("DROP SCHEMA {s} CASCADE"))
        .execute(pool)
        .await
        .unwrap();
    latencies.sort_by(f64::total_cmp);
    Sample {
        rate: latencies.len() as f64 / secs,
        latencies,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = common::database_url();
    let runs: usize = common::env_or("BENCH_RUNS", 5);
    let scale: f64 = common::env_or("BENCH_SCALE", 1.0);
    let only = std::env::var("BENCH_ONLY").ok();
    let pool = bench_pool(&url, POOL).await;
    // Open every connection before the first timed part.
    let warm: Vec<_> = futures::future::join_all((0..POOL).map(|_| pool.acquire())).await;
    drop(warm);
    let workloads = [Workload::W1, Workload::W2]
        .into_iter()
        .filter(|w| {
            only.as_deref()
                .is_none_or(|o| format!("{w:?}").starts_with(o))
        })
        .collect::<Vec<_>>();
    // samples[(workload, tasks, side)]: one per run.
    let mut samples: std::collections::BTreeMap<(usize, usize, usize), Vec<Sample>> =
        Default::default();
    // `BENCH_TASKS=1,8,64`: only those points.
    let points: Vec<usize> = std::env::var("BENCH_TASKS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| TASKS.to_vec());
    for run in 0..runs {
        for (wi, &workload) in workloads.iter().enumerate() {
            for &tasks in &points {
                // The sides' order turns with the run, so none always runs first.
                for k in 0..SIDES.len() {
                    let si = (k + run) % SIDES.len();
                    let sample = point(&url, &pool, workload, tasks, SIDES[si], scale).await;
                    eprintln!(
                        "run {}: {workload:?} {tasks:>2} tasks {:<15} {:>8.0} cmd/s p50 {:>7.2} ms p99 {:>7.2} ms",
                        run + 1,
                        SIDES[si].name(),
                        sample.rate,
                        quantile(&sample.latencies, 0.5),
                        quantile(&sample.latencies, 0.99),
                    );
                    samples.entry((wi, tasks, si)).or_default().push(sample);
                }
            }
        }
    }
    println!(
        "\nsweep: pool of {POOL} connections, medians of {runs} runs (latency per command, ms)"
    );
    println!(
        "{:<4} {:>5} {:<15} {:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "", "tasks", "side", "commands", "cmd/s", "p50", "p99", "p99.9", "/pool", "/held"
    );
    for (wi, workload) in workloads.iter().enumerate() {
        for &tasks in &points {
            let rates = |si: usize| -> Vec<f64> {
                samples
                    .get(&(wi, tasks, si))
                    .map(|v| v.iter().map(|s| s.rate).collect())
                    .unwrap_or_default()
            };
            for (si, side) in SIDES.iter().enumerate() {
                let Some(runs) = samples.get(&(wi, tasks, si)) else {
                    continue;
                };
                let q = |q: f64| median(runs.iter().map(|s| quantile(&s.latencies, q)).collect());
                // The ratios of each run's rates, then their median.
                let ratio = |base: usize| {
                    median(
                        rates(si)
                            .iter()
                            .zip(rates(base))
                            .map(|(r, b)| r / b)
                            .collect(),
                    )
                };
                println!(
                    "{:<4} {:>5} {:<15} {:>8} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>9.3} {:>9.3}",
                    format!("{workload:?}"),
                    tasks,
                    side.name(),
                    runs[0].latencies.len(),
                    median(rates(si)),
                    q(0.5),
                    q(0.99),
                    q(0.999),
                    ratio(POOL_SIDE),
                    ratio(HELD_SIDE),
                );
            }
        }
    }
}
