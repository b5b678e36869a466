//! What sqlx's check of a connection handed back to its pool costs. How it is measured:
//! `docs/bench.md`; why it matters: `docs/connections.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

const TASKS: usize = 8;
const COMMANDS: usize = 10_000;

/// The command on `conn`, or on the pool when `conn` is `None`. A lost race (unique
/// violation) is not retried: it only happens when two tasks meet on a stream.
async fn command(conn: Option<&mut PgConnection>, pool: &PgPool, s: &str, stream: &str) {
    let read =
        format!("SELECT version, payload FROM {s}.events WHERE stream_id = $1 ORDER BY version");
    let write = format!(
        "INSERT INTO {s}.events (stream_id, version, event_id, event_type, payload) \
         VALUES ($1, $2, $3, 'counter.added', $4)"
    );
    let payload = &br#"{"Added":1}"#[..];
    let rows = match conn {
        Some(conn) => {
            let rows = sqlx::query(&read).bind(stream).fetch_all(&mut *conn).await;
            let version = last_version(&rows.unwrap());
            let insert = sqlx::query(&write)
                .bind(stream)
                .bind(version + 1)
                .bind(Uuid::new_v4());
            return drop(insert.bind(payload).execute(&mut *conn).await);
        }
        None => sqlx::query(&read)
            .bind(stream)
            .fetch_all(pool)
            .await
            .unwrap(),
    };
    let version = last_version(&rows);
    let insert = sqlx::query(&write)
        .bind(stream)
        .bind(version + 1)
        .bind(Uuid::new_v4());
    drop(insert.bind(payload).execute(pool).await);
}

fn last_version(rows: &[sqlx::postgres::PgRow]) -> i64 {
    let mut version = 0;
    for r in rows {
        version = r.get(0);
        std::hint::black_box(r.get::<&[u8], _>(1));
    }
    version
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

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("set DATABASE_URL");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
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
            let s = format!("es_bench_{:08x}", fastrand::u32(..));
            for ddl in [
                format!("CREATE SCHEMA {s}"),
                format!(
                    "CREATE TABLE {s}.events (id bigserial PRIMARY KEY, \
                     tx xid8 NOT NULL DEFAULT pg_current_xact_id(), stream_id text NOT NULL, \
                     version bigint NOT NULL, event_id uuid NOT NULL UNIQUE, \
                     event_type text NOT NULL, payload bytea NOT NULL, \
                     recorded_at timestamptz NOT NULL DEFAULT now(), UNIQUE (stream_id, version))"
                ),
                format!("CREATE INDEX ON {s}.events (tx, id)"),
                "CHECKPOINT".to_owned(),
            ] {
                sqlx::query(&ddl).execute(&pool).await.unwrap();
            }
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
        median(speed),
        median(work)
    );
}
