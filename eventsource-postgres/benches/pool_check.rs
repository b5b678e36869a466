//! What sqlx's check of a connection handed back to its pool costs. How it is measured:
//! `docs/bench.md`; why it matters: `docs/connections.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};

mod common;

const TASKS: usize = 8;
const COMMANDS: usize = 10_000;

/// The command on `conn`, or on the pool when `conn` is `None`. A lost race (unique
/// violation) is not retried: it only happens when two tasks meet on a stream.
async fn command(conn: Option<&mut PgConnection>, pool: &PgPool, s: &str, stream: &str) {
    match conn {
        Some(conn) => drop(common::raw_command_held(conn, s, stream).await),
        None => drop(common::raw_command(pool, s, stream).await),
    }
}

/// CPU seconds so far of every local process named `postgres` and of this one.
fn cpu() -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        let own = name == "self";
        if !own && !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if own || stat.contains(" (postgres) ") {
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            let mut fields = rest.split(' ').skip(11);
            ticks += fields.next().unwrap().parse::<u64>().unwrap()
                + fields.next().unwrap().parse::<u64>().unwrap();
        }
    }
    ticks as f64 / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = common::database_url();
    let runs: usize = common::env_or("BENCH_RUNS", 5);
    let pool = PgPoolOptions::new()
        .max_connections(12)
        .test_before_acquire(false)
        .connect(&url)
        .await
        .unwrap();
    let (mut speed, mut work) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let mut per_side = [(0.0, 0.0); 2];
        for (side, held) in [false, true].into_iter().enumerate() {
            let s = common::baseline_schema(&pool, common::Kind::GapSafe).await;
            sqlx::query("CHECKPOINT").execute(&pool).await.unwrap();
            let (cpu0, wall) = (cpu(), Instant::now());
            let mut tasks = Vec::new();
            for t in 0..TASKS {
                let (pool, s) = (pool.clone(), s.clone());
                tasks.push(tokio::spawn(async move {
                    let mut conn = if held {
                        Some(pool.acquire().await.unwrap())
                    } else {
                        None
                    };
                    let per_task = COMMANDS / TASKS;
                    for i in 0..per_task {
                        let stream = format!("tally-{}", (t * per_task + i) % 1000);
                        command(conn.as_deref_mut(), &pool, &s, &stream).await;
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            per_side[side] = (COMMANDS as f64 / wall.elapsed().as_secs_f64(), cpu() - cpu0);
            sqlx::query(&format!("DROP SCHEMA {s} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
        }
        let [(pool_rate, pool_cpu), (held_rate, held_cpu)] = per_side;
        eprintln!(
            "run {run}: on the pool {pool_rate:.0} cmd/s, {pool_cpu:.2} CPU s; \
             held {held_rate:.0} cmd/s, {held_cpu:.2} CPU s"
        );
        speed.push(held_rate / pool_rate);
        work.push(held_cpu / pool_cpu);
    }
    println!(
        "held/pool, medians of {runs} runs: commands per second {:.3}, CPU {:.3}",
        common::median(speed),
        common::median(work)
    );
}
