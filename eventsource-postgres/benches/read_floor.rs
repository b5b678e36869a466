//! Diagnostic for W4: what reading the log costs by the number of columns, on the same rows.
//!
//! Appends 100,000 events (100 streams x 1,000) to a fresh store schema, then times, interleaved
//! `BENCH_RUNS` times (default 3), a full pass over the log in pages of 1,000:
//! - `store`: `PgStore::read_all` filtered by type (what a projection runner does);
//! - `raw 3`: hand-written gap-safe pages of `(commit_id, seq, payload)` (the W4 baseline's
//!   columns);
//! - `raw 10`: the same pages with every column a `RecordedEvent` carries, not decoded.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p eventsource-postgres --bench read_floor`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use eventsource_core::testing::fixtures::CounterEvent;
use eventsource_core::{EventStore, ExpectedVersion, Position, StreamWrite};
use eventsource_postgres::PgStore;
use sqlx::Row;

async fn raw_pass(pool: &sqlx::PgPool, columns: &str, schema: &str) -> usize {
    let q = format!(
        "SELECT commit_id, seq, {columns} FROM {schema}.events \
         WHERE (commit_id, seq) > ($1, $2) \
           AND commit_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
         ORDER BY commit_id, seq LIMIT 1000"
    );
    let (mut a, mut b, mut n) = (0i64, 0i64, 0usize);
    loop {
        let rows = sqlx::query(&q)
            .bind(a)
            .bind(b)
            .fetch_all(pool)
            .await
            .unwrap();
        let Some(last) = rows.last() else { return n };
        n += rows.len();
        a = last.get(0);
        b = last.get(1);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = std::env::var("DATABASE_URL").expect("set DATABASE_URL");
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let schema = format!("es_floor_{:08x}", fastrand::u32(..));
    let store = PgStore::builder()
        .schema(&schema)
        .connect(&url)
        .await
        .unwrap();
    for b in 0..100 {
        let batch = (0..1000)
            .map(|i| CounterEvent::Added(i).to_new_event())
            .collect();
        store
            .append(vec![StreamWrite::new(
                format!("s-{b}"),
                ExpectedVersion::NoStream,
                batch,
            )])
            .await
            .unwrap();
    }
    // A reader in another "process" (no wait for its own writes).
    let reader = PgStore::builder()
        .schema(&schema)
        .connect(&url)
        .await
        .unwrap();
    let pool = store.pool().clone();
    let mut times: [Vec<f64>; 3] = Default::default();
    for _ in 0..runs {
        let t = Instant::now();
        let (mut after, mut n) = (Position::ZERO, 0usize);
        loop {
            let page = reader
                .read_all(after, 1000, Some(&["counter.added"]))
                .await
                .unwrap();
            if page.events.is_empty() {
                break;
            }
            n += page.events.len();
            after = page.scanned_to;
        }
        assert_eq!(n, 100_000);
        times[0].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        assert_eq!(raw_pass(&pool, "payload", &schema).await, 100_000);
        times[1].push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let all = "stream_id, version, event_id, event_type, schema_version, payload, metadata, \
                   recorded_at";
        assert_eq!(raw_pass(&pool, all, &schema).await, 100_000);
        times[2].push(t.elapsed().as_secs_f64());
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [store_t, raw3, raw10] = &mut times;
    let (s, r3, r10) = (median(store_t), median(raw3), median(raw10));
    println!("read 100,000 events, median of {runs} interleaved runs:");
    println!("  store read_all (typed) {s:.3} s");
    println!(
        "  raw 3 columns          {r3:.3} s  (store takes {:.2}x)",
        s / r3
    );
    println!(
        "  raw 10 columns         {r10:.3} s  (store takes {:.2}x)",
        s / r10
    );
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
