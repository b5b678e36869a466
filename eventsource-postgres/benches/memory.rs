//! Peak memory on PostgreSQL: loading a 1,000,000-event stream, and a projection catching up
//! over a log of 10,000,000 events (batches of 1,000). Each runs in a process of its own
//! and reports its peak resident set (`VmHWM`) against the same process's before it started.
//! How: `docs/bench.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use eventsource_core::testing::fixtures::{CounterEvent, Tally};
use eventsource_core::{EventStore, ExpectedVersion, ProjectionRunner, Repository, StreamWrite};
use eventsource_postgres::PgStore;

mod common;
use common::Sum;

/// This process's resident set now and at its peak, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The prefix of the line on which a phase tells the parent its time, in seconds.
const SECS: &str = "phase secs: ";

fn scaled(n: u64) -> u64 {
    let scale: f64 = common::env_or("BENCH_SCALE", 1.0);
    // Whole batches of 1,000.
    (((n as f64 * scale) / 1000.0).round() as u64).max(1) * 1000
}

async fn store(url: &str, schema: &str) -> PgStore {
    PgStore::builder()
        .schema(schema)
        .max_connections(4)
        .connect(url)
        .await
        .unwrap()
}

/// Appends the log: the 1,000,000 events of stream `tally-big`, then the rest of the
/// 10,000,000 on streams of 1,000 events, in batches of 1,000 from two tasks.
async fn setup(store: &PgStore) {
    let big = scaled(1_000_000) / 1000;
    let all = scaled(10_000_000) / 1000;
    let event = CounterEvent::Added(1).to_new_event();
    let mut tasks = Vec::new();
    for t in 0..2u64 {
        let (store, event) = (store.clone(), event.clone());
        tasks.push(tokio::spawn(async move {
            for b in (t..all).step_by(2) {
                let stream = if b < big {
                    "tally-big".to_owned()
                } else {
                    format!("tally-{b}")
                };
                let events = (0..1000)
                    .map(|_| {
                        let mut e = event.clone();
                        e.id = eventsource_core::EventId::new_random();
                        e
                    })
                    .collect();
                let write = StreamWrite::new(stream, ExpectedVersion::Any, events);
                store.append(vec![write]).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let url = common::database_url();
    match std::env::var("BENCH_MEMORY_PHASE").ok().as_deref() {
        None => {
            let schema = format!("es_bench_mem_{:08x}", fastrand::u32(..));
            let store = store(&url, &schema).await;
            let started = Instant::now();
            setup(&store).await;
            eprintln!(
                "appended {} events in {:.0} s",
                scaled(10_000_000),
                started.elapsed().as_secs_f64()
            );
            // The first pass over fresh rows also sets their hint bits (writes): a reading of
            // the log goes first, and each reading of the whole log runs `BENCH_RUNS` times
            // (default 2), in turn.
            let runs: usize = common::env_or("BENCH_RUNS", 2);
            let mut phases = vec!["load"];
            for _ in 0..runs {
                phases.extend(["pages", "catch-up"]);
            }
            let (mut pages, mut ratios) = (None, Vec::new());
            for phase in phases {
                let out = std::process::Command::new(std::env::current_exe().unwrap())
                    .env("BENCH_MEMORY_PHASE", phase)
                    .env("BENCH_MEMORY_SCHEMA", &schema)
                    .output()
                    .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                eprint!("{}", String::from_utf8_lossy(&out.stderr));
                assert!(
                    out.status.success(),
                    "the {phase} phase failed: {}",
                    out.status
                );
                for line in stdout.lines() {
                    match line.strip_prefix(SECS) {
                        Some(secs) => {
                            let secs: f64 = secs.parse().unwrap();
                            match phase {
                                "pages" => pages = Some(secs),
                                "catch-up" => ratios.extend(pages.take().map(|p| p / secs)),
                                _ => {}
                            }
                        }
                        None => println!("{line}"),
                    }
                }
            }
            let mut sorted = ratios.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "catch-up through the runner against read_all_pages (events/s, each pair in turn): {:?}; median {:.3}",
                ratios
                    .iter()
                    .map(|r| (r * 1000.0).round() / 1000.0)
                    .collect::<Vec<_>>(),
                sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
            );
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(store.pool())
                .await
                .unwrap();
        }
        Some(phase) => {
            let schema = std::env::var("BENCH_MEMORY_SCHEMA").unwrap();
            let store = store(&url, &schema).await;
            // Warm: the pool's connections open, the statements prepared.
            store.head().await.unwrap();
            let (before, peak_before) = rss_kib();
            let started = Instant::now();
            let what = match phase {
                "load" => {
                    let loaded = Repository::<Tally, _>::new(store.clone())
                        .load("big")
                        .await
                        .unwrap();
                    assert_eq!(loaded.version.get(), scaled(1_000_000));
                    format!("load of a {}-event stream", loaded.version.get())
                }
                "pages" => {
                    // The log as a catch-up reads it, with no runner: the page stream, then
                    // `read_all` to the end; each event decoded and summed as `Sum` does.
                    let types: &[&str] = &["counter.added"];
                    let (mut sum, mut after) = (0i64, eventsource_core::Position::ZERO);
                    let mut pages = store.read_all_pages(after, 1000, Some(types));
                    while let Some(page) =
                        futures::TryStreamExt::try_next(&mut pages).await.unwrap()
                    {
                        sum += page
                            .events
                            .iter()
                            .map(|e| common::decode_n(&e.payload))
                            .sum::<i64>();
                        after = page.scanned_to;
                    }
                    drop(pages);
                    loop {
                        let page = store.read_all(after, 1000, Some(types)).await.unwrap();
                        if page.events.is_empty() {
                            break;
                        }
                        sum += page
                            .events
                            .iter()
                            .map(|e| common::decode_n(&e.payload))
                            .sum::<i64>();
                        after = page.scanned_to;
                    }
                    assert_eq!(u64::try_from(sum).unwrap(), scaled(10_000_000));
                    format!("read_all_pages over {sum} events, pages of 1,000, no runner")
                }
                _ => {
                    // From the start, whatever an earlier catch-up saved.
                    store
                        .save_checkpoint(
                            <Sum as eventsource_core::Projection>::NAME,
                            eventsource_core::Position::ZERO,
                        )
                        .await
                        .unwrap();
                    let mut runner = ProjectionRunner::new(store.clone(), Sum(0)).batch_size(1000);
                    runner.catch_up().await.unwrap();
                    let sum = runner.projection().0;
                    assert_eq!(u64::try_from(sum).unwrap(), scaled(10_000_000));
                    format!("catch-up over {sum} events, batches of 1,000")
                }
            };
            let secs = started.elapsed().as_secs_f64();
            let (_, peak) = rss_kib();
            println!("{SECS}{secs}");
            println!(
                "{what}: {secs:.1} s; peak RSS {:.1} MiB (before: {:.1} MiB resident, {:.1} MiB peak): +{:.1} MiB",
                peak as f64 / 1024.0,
                before as f64 / 1024.0,
                peak_before as f64 / 1024.0,
                peak.saturating_sub(before) as f64 / 1024.0
            );
        }
    }
}
