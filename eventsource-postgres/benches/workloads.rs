//! PgStore against hand-written sqlx on the same server: W1..W5. What each workload times,
//! how the runs are interleaved and measured, and the `BENCH_*` variables: `docs/bench.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

use eventsource_core::testing::fixtures::{Counter, CounterEvent, Tally};
use eventsource_core::{
    Aggregate, EventId, EventSet, EventStore, ExpectedVersion, NewEvent, Position,
    ProjectionRunner, Repository, RetryPolicy, Snapshot, StreamWrite, Version,
};
use eventsource_postgres::{PgStore, Xid8};
use sqlx::{PgPool, Row};
use uuid::Uuid;

mod common;
use common::{Kind, Sum, bench_pool, decode_n, median, on_pool, raw_command};

fn added(n: i64) -> NewEvent {
    CounterEvent::Added(n).to_new_event()
}

struct Env {
    url: String,
    pool: PgPool,
    /// A pool of one connection, configured alike, for W3's loads: each takes a few
    /// milliseconds, and on the shared pool each would run on another connection (sqlx hands
    /// idle connections out in turn), where its statements are not prepared yet.
    single: PgPool,
    scale: f64,
}

fn scaled(env: &Env, n: usize) -> usize {
    ((n as f64 * env.scale) as usize).max(1)
}

/// A store in a new schema, on the baselines' pool (see [`common::new_store`]), and its
/// schema.
async fn store(env: &Env) -> (PgStore, String) {
    let store = common::new_store(&env.url, &env.pool).await;
    let s = store.schema().as_str().to_owned();
    (store, s)
}

async fn baseline(env: &Env, kind: Kind) -> String {
    common::baseline_schema(&env.pool, kind).await
}

/// Writes out what earlier runs left dirty (`CHECKPOINT`), so that every timed part starts
/// from the same state and none pays for a checkpoint that an earlier run's writes
/// triggered (this machine's storage waits on I/O for much of a checkpoint).
async fn quiesce(env: &Env) {
    sqlx::query("CHECKPOINT").execute(&env.pool).await.unwrap();
}

async fn drop_schema(env: &Env, s: &str) {
    sqlx::query(&format!("DROP SCHEMA {s} CASCADE"))
        .execute(&env.pool)
        .await
        .unwrap();
}

// ---- hand-written baselines ----

/// The same command under a per-stream transaction-scoped advisory lock.
async fn raw_locked_command(pool: &PgPool, s: &str, stream: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("{s}/{stream}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    let rows = sqlx::query(&format!(
        "SELECT version, payload FROM {s}.events WHERE stream_id = $1 ORDER BY version"
    ))
    .bind(stream)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let mut version = 0i64;
    for r in &rows {
        version = r.get(0);
        std::hint::black_box(decode_n(r.get::<&[u8], _>(1)));
    }
    sqlx::query(&format!(
        "INSERT INTO {s}.events (stream_id, version, event_id, event_type, payload) \
         VALUES ($1, $2, $3, 'counter.added', $4)"
    ))
    .bind(stream)
    .bind(version + 1)
    .bind(Uuid::now_v7())
    .bind(CounterEvent::Added(1).encode().unwrap().as_ref())
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
}

/// The event ids W5 appends: time-ordered (UUID v7, what the store gives events by default)
/// or random (UUID v4).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ids {
    TimeOrdered,
    Random,
}

impl Ids {
    fn uuid(self) -> Uuid {
        match self {
            Ids::TimeOrdered => Uuid::now_v7(),
            Ids::Random => Uuid::new_v4(),
        }
    }
}

async fn raw_bulk(pool: &PgPool, s: &str, stream: &str, n: usize, ids: Ids) {
    let versions: Vec<i64> = (1..=n as i64).collect();
    let ids: Vec<Uuid> = (0..n).map(|_| ids.uuid()).collect();
    let payloads: Vec<Vec<u8>> = (0..n)
        .map(|i| CounterEvent::Added(i as i64).encode().unwrap().to_vec())
        .collect();
    sqlx::query(&format!(
        "INSERT INTO {s}.events (stream_id, version, event_id, event_type, payload) \
         SELECT $1, v, id, 'counter.added', p FROM unnest($2::bigint[], $3::uuid[], $4::bytea[]) AS t (v, id, p)"
    ))
    .bind(stream)
    .bind(&versions)
    .bind(&ids)
    .bind(&payloads)
    .execute(pool)
    .await
    .unwrap();
}

/// A schema whose events table has only what a bare log needs: (stream, version) as its one
/// key, the type and a `jsonb` payload; no event id, no sequence, no commit.
async fn keyless_schema(pool: &PgPool) -> String {
    let s = common::schema();
    for ddl in [
        format!("CREATE SCHEMA {s}"),
        format!(
            "CREATE TABLE {s}.events (stream_id text NOT NULL, version bigint NOT NULL, \
             event_type text NOT NULL, payload jsonb NOT NULL, PRIMARY KEY (stream_id, version))"
        ),
    ] {
        sqlx::query(&ddl).execute(pool).await.unwrap();
    }
    s
}

/// The keyless form of [`raw_bulk`].
async fn raw_bulk_keyless(pool: &PgPool, s: &str, stream: &str, n: usize) {
    let versions: Vec<i64> = (1..=n as i64).collect();
    let payloads: Vec<String> = (0..n)
        .map(|i| {
            String::from_utf8(CounterEvent::Added(i as i64).encode().unwrap().to_vec()).unwrap()
        })
        .collect();
    sqlx::query(&format!(
        "INSERT INTO {s}.events (stream_id, version, event_type, payload) \
         SELECT $1, v, 'counter.added', p::jsonb FROM unnest($2::bigint[], $3::text[]) AS t (v, p)"
    ))
    .bind(stream)
    .bind(&versions)
    .bind(&payloads)
    .execute(pool)
    .await
    .unwrap();
}

/// Catch-up by pages of 1,000 with a checkpoint upsert per page; returns the sum. The
/// gap-safe form decodes and binds `xid8` in binary (no text casts per row).
async fn raw_catch_up(pool: &PgPool, s: &str, kind: Kind) -> i64 {
    let (mut a, mut b) = (0u64, 0i64);
    let mut sum = 0i64;
    let page = match kind {
        Kind::Plain => {
            format!("SELECT id, payload FROM {s}.events WHERE id > $1 ORDER BY id LIMIT 1000")
        }
        Kind::GapSafe => format!(
            "SELECT tx, id, payload FROM {s}.events \
             WHERE (tx, id) > ($1, $2) AND tx < pg_snapshot_xmin(pg_current_snapshot()) \
             ORDER BY tx, id LIMIT 1000"
        ),
    };
    loop {
        let rows = match kind {
            Kind::Plain => sqlx::query(&page).bind(b).fetch_all(pool).await.unwrap(),
            Kind::GapSafe => sqlx::query(&page)
                .bind(Xid8(a))
                .bind(b)
                .fetch_all(pool)
                .await
                .unwrap(),
        };
        let Some(last) = rows.last() else {
            return sum;
        };
        let payload_at = if kind == Kind::Plain { 1 } else { 2 };
        for r in &rows {
            sum += decode_n(r.get::<&[u8], _>(payload_at));
        }
        match kind {
            Kind::Plain => b = last.get(0),
            Kind::GapSafe => {
                a = last.get::<Xid8, _>(0).0;
                b = last.get(1);
            }
        }
        sqlx::query(&format!(
            "INSERT INTO {s}.checkpoints VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET a = excluded.a, b = excluded.b"
        ))
        .bind("catch-up")
        .bind(a as i64)
        .bind(b)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// A gap-safe pass over the store's own log in pages of 1,000, fetching `columns` (after the
/// position) without decoding them; returns how many rows it read.
async fn raw_pass(pool: &PgPool, columns: &str, schema: &str) -> usize {
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

// ---- the store side ----

/// The [`Tally`] with snapshots configured, every 100 events (stream `sparse-<id>`), as a
/// user's aggregate with `snapshot_every = 100`: on W1's short streams no snapshot is ever
/// due, yet every load asks for one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Sparse(Counter);

impl Aggregate for Sparse {
    const NAME: &'static str = "sparse";
    const SNAPSHOT_EVERY: Option<u64> = Some(100);
    type Event = CounterEvent;

    fn apply_event(&mut self, event: &CounterEvent) {
        self.0.apply_event(event);
    }

    fn encode_snapshot(&self) -> Result<bytes::Bytes, eventsource_core::EncodeError> {
        self.0.encode_snapshot()
    }

    fn decode_snapshot(payload: &[u8]) -> Result<Self, eventsource_core::DecodeError> {
        Counter::decode_snapshot(payload).map(Sparse)
    }
}

// ---- workloads: each returns seconds for one run ----

/// W1; `cached`: the store's repository keeps states in memory (`Repository::with_cache`),
/// shared by the tasks; `snapshots`: its aggregate has snapshots configured ([`Sparse`]; the
/// baselines do not change). Returns commands per second.
async fn w1(env: &Env, target: Option<Kind>, tasks: usize, cached: bool, snapshots: bool) -> f64 {
    if snapshots {
        w1_on::<Sparse>(env, target, tasks, cached).await
    } else {
        w1_on::<Tally>(env, target, tasks, cached).await
    }
}

/// A counter W1 runs commands on.
trait Tallied: Aggregate<Event = CounterEvent> + Clone + Send + Sync {
    fn counter(&self) -> &Counter;
}

impl Tallied for Tally {
    fn counter(&self) -> &Counter {
        &self.0
    }
}

impl Tallied for Sparse {
    fn counter(&self) -> &Counter {
        &self.0
    }
}

async fn w1_on<A: Tallied>(env: &Env, target: Option<Kind>, tasks: usize, cached: bool) -> f64 {
    let commands = scaled(env, 10_000);
    let per_task = commands / tasks;
    let (store, s) = match target {
        None => store(env).await,
        Some(k) => {
            let s = baseline(env, k).await;
            let (st, s2) = store(env).await; // unused store schema keeps the setup symmetric
            drop_schema(env, &s2).await;
            (st, s)
        }
    };
    let repo = Repository::<A, _>::new(store);
    let repo = if cached { repo.with_cache(1000) } else { repo };
    let clock = Clock::start();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (repo, pool, s) = (repo.clone(), env.pool.clone(), s.clone());
        handles.push(tokio::spawn(async move {
            for i in 0..per_task {
                let id = format!("{}", (t * per_task + i) % 1000);
                match target {
                    None => {
                        repo.execute(&id, |c| c.counter().add(1)).await.unwrap();
                    }
                    Some(_) => while !raw_command(&pool, &s, &format!("tally-{id}")).await {},
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let secs = clock.secs();
    drop_schema(env, &s).await;
    commands as f64 / secs
}

/// W2; `locked` picks the per-stream lock variants, `cached` has the store's repository keep
/// states in memory (`Repository::with_cache`, shared by the 8 tasks; the baselines do not
/// change). Returns commands per second.
async fn w2(env: &Env, target: Option<Kind>, locked: bool, cached: bool) -> f64 {
    let tasks = 8;
    let per_task = scaled(env, 250);
    let (store, s) = match target {
        None => store(env).await,
        Some(k) => {
            let s = baseline(env, k).await;
            let (st, s2) = store(env).await;
            drop_schema(env, &s2).await;
            (st, s)
        }
    };
    // The default policy (retries, then the writers' lock for a command that keeps losing),
    // or every command under the writers' lock.
    let retry = match locked {
        false => RetryPolicy::default(),
        true => RetryPolicy::default().serialize_after(Some(0)),
    };
    let repo = Repository::<Tally, _>::new(store.clone()).with_retry(retry);
    let repo = if cached { repo.with_cache(16) } else { repo };
    let clock = Clock::start();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (pool, s, repo) = (env.pool.clone(), s.clone(), repo.clone());
        handles.push(tokio::spawn(async move {
            for _ in 0..per_task {
                match (target, locked) {
                    (None, _) => {
                        repo.execute("hot", |c| c.0.add(1)).await.unwrap();
                    }
                    (Some(_), false) => {
                        let mut attempt = 0u32;
                        while !raw_command(&pool, &s, "tally-hot").await {
                            attempt += 1;
                            let cap = (500u64 << attempt.min(7)).min(50_000);
                            tokio::time::sleep(Duration::from_micros(fastrand::u64(0..=cap))).await;
                        }
                    }
                    (Some(_), true) => raw_locked_command(&pool, &s, "tally-hot").await,
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let secs = clock.secs();
    // The final version is exactly right.
    let version: i64 = match target {
        None => store
            .stream_version(&Tally::stream_id("hot"))
            .await
            .unwrap()
            .get() as i64,
        Some(_) => sqlx::query_scalar(&format!("SELECT max(version) FROM {s}.events"))
            .fetch_one(&env.pool)
            .await
            .unwrap(),
    };
    assert_eq!(version as usize, tasks * per_task, "W2 final version");
    drop_schema(env, &s).await;
    (tasks * per_task) as f64 / secs
}

/// How many loads each W3 run times (it reports their median): a load after a snapshot
/// takes half a millisecond, where a single scheduling hiccup moves one load by as much.
const W3_LOADS: usize = 21;

/// W3: milliseconds to load a 10,000-event stream (tail of 100 after a snapshot when `snapshot`):
/// the median of [`W3_LOADS`] loads.
async fn w3(env: &Env, target: Option<Kind>, snapshot: bool) -> f64 {
    let n = scaled(env, 10_000);
    let snap_at = n.saturating_sub(100);
    let mut reps = Vec::new();
    match target {
        None => {
            let (store, s) = store(env).await;
            for chunk in 0..n.div_ceil(1000) {
                let k = 1000.min(n - chunk * 1000);
                let batch = (0..k).map(|i| added(i as i64)).collect();
                store
                    .append(vec![StreamWrite::new(
                        Counter::stream_id("big"),
                        ExpectedVersion::Any,
                        batch,
                    )])
                    .await
                    .unwrap();
            }
            if snapshot {
                let repo = Repository::<Counter, _>::new(store.clone());
                let at = repo
                    .load_at(
                        "big",
                        eventsource_core::At::Version(Version::new(snap_at as u64)),
                    )
                    .await
                    .unwrap();
                store
                    .save_snapshot(Snapshot {
                        stream: Counter::stream_id("big"),
                        version: at.version,
                        position: at.position,
                        event_recorded_at: chrono::Utc::now(),
                        schema_version: Counter::SNAPSHOT_VERSION,
                        payload: at.state.encode_snapshot().unwrap(),
                    })
                    .await
                    .unwrap();
            }
            let loader = on_pool(&env.single, &s).await;
            for _ in 0..W3_LOADS {
                let clock = Clock::start();
                let l = Repository::<Counter, _>::new(loader.clone())
                    .load("big")
                    .await
                    .unwrap();
                assert_eq!(l.version.get() as usize, n);
                assert_eq!(l.state.applied as usize, n);
                reps.push(clock.secs() * 1000.0);
            }
            drop_schema(env, &s).await;
        }
        Some(k) => {
            let s = baseline(env, k).await;
            for chunk in 0..n.div_ceil(1000) {
                let k = 1000.min(n - chunk * 1000);
                // Versions continue across chunks.
                let versions: Vec<i64> = (0..k as i64)
                    .map(|i| (chunk * 1000) as i64 + i + 1)
                    .collect();
                let ids: Vec<Uuid> = (0..k).map(|_| Uuid::now_v7()).collect();
                let payloads: Vec<Vec<u8>> = (0..k)
                    .map(|i| CounterEvent::Added(i as i64).encode().unwrap().to_vec())
                    .collect();
                sqlx::query(&format!(
                    "INSERT INTO {s}.events (stream_id, version, event_id, event_type, payload) \
                     SELECT 'big', v, id, 'counter.added', p FROM unnest($1::bigint[], $2::uuid[], $3::bytea[]) AS t (v, id, p)"
                ))
                .bind(&versions).bind(&ids).bind(&payloads)
                .execute(&env.pool).await.unwrap();
            }
            if snapshot {
                let payload = serde_json::to_vec(&Counter {
                    value: 0,
                    applied: snap_at as u64,
                })
                .unwrap();
                sqlx::query(&format!("INSERT INTO {s}.snapshots VALUES ('big', $1, $2)"))
                    .bind(snap_at as i64)
                    .bind(payload)
                    .execute(&env.pool)
                    .await
                    .unwrap();
            }
            for _ in 0..W3_LOADS {
                let clock = Clock::start();
                let mut state = Counter::default();
                let mut from = 1i64;
                if snapshot {
                    let row = sqlx::query(&format!(
                        "SELECT version, payload FROM {s}.snapshots WHERE stream_id = 'big'"
                    ))
                    .fetch_one(&env.single)
                    .await
                    .unwrap();
                    state = serde_json::from_slice(row.get::<&[u8], _>(1)).unwrap();
                    from = row.get::<i64, _>(0) + 1;
                }
                let rows = sqlx::query(&format!(
                    "SELECT version, event_type, payload FROM {s}.events WHERE stream_id = 'big' AND version >= $1 ORDER BY version"
                ))
                .bind(from)
                .fetch_all(&env.single).await.unwrap();
                for r in &rows {
                    state.apply_event(
                        &CounterEvent::decode(r.get(1), 1, r.get::<&[u8], _>(2)).unwrap(),
                    );
                }
                assert_eq!(state.applied as usize, n);
                reps.push(clock.secs() * 1000.0);
            }
            drop_schema(env, &s).await;
        }
    }
    reps.sort_by(f64::total_cmp);
    reps[reps.len() / 2]
}

/// W4: events per second caught up.
async fn w4(env: &Env, target: Option<Kind>) -> f64 {
    let n = scaled(env, 100_000);
    let batches = n.div_ceil(1000);
    match target {
        None => {
            let (store, s) = store(env).await;
            for b in 0..batches {
                let batch = (0..1000).map(|i| added(i as i64)).collect();
                store
                    .append(vec![StreamWrite::new(
                        format!("s-{b}"),
                        ExpectedVersion::Any,
                        batch,
                    )])
                    .await
                    .unwrap();
            }
            // A reader in another "process": no read-your-writes wait.
            let reader = on_pool(&env.pool, &s).await;
            if std::env::var("BENCH_W4_READ_ONLY").is_ok() {
                // Diagnostic: the reads alone, no runner, no checkpoints. One untimed pass
                // first: the first read of fresh rows also writes (it sets their hint bits),
                // which would be charged to whichever pass came first. (So with this set,
                // the store's timed catch-up below finds them set and the baselines' does not:
                // take W4's figures from a run without it.)
                raw_pass(&env.pool, "payload", &s).await;
                let start = Instant::now();
                let (mut after, mut sum) = (Position::ZERO, 0i64);
                loop {
                    let page = reader
                        .read_all(after, 1000, Some(&["counter.added"]))
                        .await
                        .unwrap();
                    if page.events.is_empty() {
                        break;
                    }
                    for e in &page.events {
                        sum += decode_n(&e.payload);
                    }
                    after = page.scanned_to;
                }
                let store_secs = start.elapsed().as_secs_f64();
                // The same rows by hand: the baseline's 3 columns, and all 10 a
                // `RecordedEvent` carries (fetched, not decoded).
                let all = "stream_id, version, event_id, event_type, schema_version, payload, \
                           metadata, recorded_at";
                let mut raw = Vec::new();
                for columns in ["payload", all] {
                    let start = Instant::now();
                    assert_eq!(raw_pass(&env.pool, columns, &s).await, batches * 1000);
                    raw.push(start.elapsed().as_secs_f64());
                }
                eprintln!(
                    "W4 reads alone: store read_all {store_secs:.3}s (sum {sum}), by hand: \
                     3 columns {:.3}s, 10 columns {:.3}s",
                    raw[0], raw[1]
                );
            }
            quiesce(env).await;
            let clock = Clock::start();
            let mut runner = ProjectionRunner::new(reader, Sum(0)).batch_size(1000);
            let reached = runner.catch_up().await.unwrap();
            let secs = clock.secs();
            assert!(reached > Position::ZERO);
            assert_eq!(runner.projection().0, (batches * 499_500) as i64);
            drop_schema(env, &s).await;
            (batches * 1000) as f64 / secs
        }
        Some(k) => {
            let s = baseline(env, k).await;
            for b in 0..batches {
                raw_bulk(&env.pool, &s, &format!("s-{b}"), 1000, Ids::TimeOrdered).await;
            }
            quiesce(env).await;
            let clock = Clock::start();
            let sum = raw_catch_up(&env.pool, &s, k).await;
            let secs = clock.secs();
            assert_eq!(sum, (batches * 499_500) as i64);
            drop_schema(env, &s).await;
            (batches * 1000) as f64 / secs
        }
    }
}

/// Who W5 times: the store, a baseline (with the unique keys the store has), or the bare
/// keyless log ([`keyless_schema`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bulk {
    Store,
    Baseline(Kind),
    Keyless,
}

/// W5: events per second appended in batches of 1,000, with event ids `ids`.
async fn w5(env: &Env, who: Bulk, ids: Ids) -> f64 {
    let batches = scaled(env, 100_000).div_ceil(1000);
    let (store, s) = store(env).await;
    let s = match who {
        Bulk::Store => s,
        Bulk::Baseline(k) => baseline(env, k).await,
        Bulk::Keyless => keyless_schema(&env.pool).await,
    };
    let batch_events: Vec<Vec<NewEvent>> = (0..batches)
        .map(|_| {
            (0..1000)
                .map(|i| match ids {
                    Ids::TimeOrdered => added(i as i64),
                    Ids::Random => added(i as i64).with_id(EventId::new_random()),
                })
                .collect()
        })
        .collect();
    let clock = Clock::start();
    for (b, events) in batch_events.into_iter().enumerate() {
        let stream = format!("s-{b}");
        match who {
            Bulk::Store => {
                store
                    .append(vec![StreamWrite::new(
                        stream,
                        ExpectedVersion::NoStream,
                        events,
                    )])
                    .await
                    .unwrap();
            }
            Bulk::Baseline(_) => raw_bulk(&env.pool, &s, &stream, 1000, ids).await,
            Bulk::Keyless => raw_bulk_keyless(&env.pool, &s, &stream, 1000).await,
        }
    }
    let secs = clock.secs();
    drop_schema(env, &s).await;
    if who != Bulk::Store {
        drop_schema(env, store.schema().as_str()).await;
    }
    (batches * 1000) as f64 / secs
}

/// CPU seconds used so far by the server (every process named `postgres` on this machine:
/// the figures assume a local server) and by this process; `None` without a local server.
/// `/proc` counts in ticks of 10 ms, so only a timed part of some 0.2 s or more gives a
/// meaningful figure.
fn cpu_now() -> Option<(f64, f64)> {
    fn ticks(stat: &str) -> Option<u64> {
        // Fields after the command name (which may hold spaces): utime and stime are the
        // 12th and 13th.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let mut fields = rest.split(' ').skip(11);
        Some(fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?)
    }
    let mut server = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if stat.contains(" (postgres) ") {
            *server.get_or_insert(0) += ticks(&stat).unwrap_or(0);
        }
    }
    let own = ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    // USER_HZ is 100 on Linux.
    Some((server? as f64 / 100.0, own as f64 / 100.0))
}

/// CPU seconds (server, this process) of the timed parts since the last [`take_cpu`].
static CPU: std::sync::Mutex<(f64, f64)> = std::sync::Mutex::new((0.0, 0.0));

fn take_cpu() -> (f64, f64) {
    std::mem::take(&mut *CPU.lock().unwrap())
}

/// Times one timed part: wall seconds, and the CPU both sides spent in it (added to [`CPU`]).
struct Clock {
    cpu: Option<(f64, f64)>,
    wall: Instant,
}

impl Clock {
    fn start() -> Self {
        let cpu = cpu_now();
        Self {
            cpu,
            wall: Instant::now(),
        }
    }

    fn secs(self) -> f64 {
        let secs = self.wall.elapsed().as_secs_f64();
        if let (Some(a), Some(b)) = (self.cpu, cpu_now()) {
            let mut cpu = CPU.lock().unwrap();
            cpu.0 += b.0 - a.0;
            cpu.1 += b.1 - a.1;
        }
        secs
    }
}

/// The median; NaN when there is nothing (a side `BENCH_SIDES` left out).
struct Row3 {
    name: &'static str,
    store: Vec<f64>,
    plain: Vec<f64>,
    gapsafe: Vec<f64>,
    /// CPU seconds (server, this process) of each run: store, gapsafe.
    cpu_store: Vec<(f64, f64)>,
    cpu_gapsafe: Vec<(f64, f64)>,
    lower_is_better: bool,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let url = common::database_url();
    let runs: usize = common::env_or("BENCH_RUNS", 5);
    let scale: f64 = common::env_or("BENCH_SCALE", 1.0);
    let only = std::env::var("BENCH_ONLY").ok();
    // For profiling one side alone: `BENCH_SIDES=store` (or `plain`, `gapsafe`, comma-separated).
    let sides = std::env::var("BENCH_SIDES").unwrap_or_else(|_| "store,plain,gapsafe".into());
    let pool = bench_pool(&url, 12).await;
    let single = bench_pool(&url, 1).await;
    let env = Env {
        url,
        pool,
        single,
        scale,
    };

    let names = [
        "W1 1 task (cmd/s)",
        "W1 8 tasks (cmd/s)",
        "W1 1 task, cached",
        "W1 8 tasks, cached",
        "W1 1 task, snapshots",
        "W1 8 tasks, snapshots",
        "W2 retries (cmd/s)",
        "W2 lock (cmd/s)",
        "W2 retries, cached",
        "W2 lock, cached",
        "W3 no snapshot (ms)",
        "W3 snapshot (ms)",
        "W4 catch-up (ev/s)",
        "W5 bulk (ev/s)",
        "W5 bulk, v4 ids",
        "W5 bulk, keyless",
    ];
    let mut rows: Vec<Row3> = names
        .iter()
        .map(|n| Row3 {
            name: n,
            store: vec![],
            plain: vec![],
            gapsafe: vec![],
            cpu_store: vec![],
            cpu_gapsafe: vec![],
            lower_is_better: n.starts_with("W3"),
        })
        .collect();
    for run in 0..runs {
        for (i, row) in rows.iter_mut().enumerate() {
            if only.as_deref().is_some_and(|o| !row.name.starts_with(o)) {
                continue;
            }
            for (slot, target) in [(0, None), (1, Some(Kind::Plain)), (2, Some(Kind::GapSafe))] {
                let side = ["store", "plain", "gapsafe"][slot];
                if !sides.split(',').any(|s| s.trim() == side) {
                    continue;
                }
                // The keyless row's baseline is the bare log, in the `plain` column.
                if i == 15 && slot == 2 {
                    continue;
                }
                let bulk = match (i, target) {
                    (_, None) => Bulk::Store,
                    (15, Some(_)) => Bulk::Keyless,
                    (_, Some(k)) => Bulk::Baseline(k),
                };
                quiesce(&env).await;
                take_cpu();
                let v = match i {
                    0 => w1(&env, target, 1, false, false).await,
                    1 => w1(&env, target, 8, false, false).await,
                    2 => w1(&env, target, 1, true, false).await,
                    3 => w1(&env, target, 8, true, false).await,
                    4 => w1(&env, target, 1, false, true).await,
                    5 => w1(&env, target, 8, false, true).await,
                    6 => w2(&env, target, false, false).await,
                    7 => w2(&env, target, true, false).await,
                    8 => w2(&env, target, false, true).await,
                    9 => w2(&env, target, true, true).await,
                    10 => w3(&env, target, false).await,
                    11 => w3(&env, target, true).await,
                    12 => w4(&env, target).await,
                    13 => w5(&env, bulk, Ids::TimeOrdered).await,
                    14 => w5(&env, bulk, Ids::Random).await,
                    _ => w5(&env, bulk, Ids::TimeOrdered).await,
                };
                match slot {
                    0 => {
                        row.store.push(v);
                        row.cpu_store.push(take_cpu());
                    }
                    1 => row.plain.push(v),
                    _ => {
                        row.gapsafe.push(v);
                        row.cpu_gapsafe.push(take_cpu());
                    }
                }
            }
            eprintln!(
                "run {}: {:<20} store {:>10.4} plain {:>10.4} gapsafe {:>10.4}",
                run + 1,
                row.name,
                row.store.last().unwrap_or(&f64::NAN),
                row.plain.last().unwrap_or(&f64::NAN),
                row.gapsafe.last().unwrap_or(&f64::NAN)
            );
        }
    }
    println!(
        "\n{:<22} {:>12} {:>12} {:>12} {:>14} {:>14}",
        "workload", "store", "plain", "gapsafe", "store/plain", "store/gapsafe"
    );
    for row in rows
        .iter()
        .filter(|r| !(r.store.is_empty() && r.plain.is_empty() && r.gapsafe.is_empty()))
    {
        let ratio = |b: &[f64]| median(row.store.iter().zip(b).map(|(s, b)| s / b).collect());
        println!(
            "{:<22} {:>12.4} {:>12.4} {:>12.4} {:>14.3} {:>14.3}{}",
            row.name,
            median(row.store.clone()),
            median(row.plain.clone()),
            median(row.gapsafe.clone()),
            ratio(&row.plain),
            ratio(&row.gapsafe),
            if row.lower_is_better {
                "  (time: lower is better)"
            } else {
                ""
            }
        );
    }
    if cpu_now().is_none() {
        println!("\n(no local server: no CPU figures)");
        return;
    }
    println!(
        "\nCPU seconds per run, medians: the server's (every local process named postgres) \
         and this process's; store/gapsafe: the median ratio of their sums (lower: the store \
         spends less; '-': under 0.2 s, below what /proc resolves)"
    );
    println!(
        "{:<22} {:>12} {:>12} {:>12} {:>12} {:>14}",
        "workload", "store srv", "store client", "gapsafe srv", "gs client", "store/gapsafe"
    );
    for row in rows
        .iter()
        .filter(|r| !(r.cpu_store.is_empty() && r.cpu_gapsafe.is_empty()))
    {
        let part = |v: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| median(v.iter().map(f).collect());
        let sum = |c: &(f64, f64)| c.0 + c.1;
        let measurable = row
            .cpu_store
            .iter()
            .chain(&row.cpu_gapsafe)
            .all(|c| sum(c) >= 0.2);
        let ratio = if measurable {
            let r = median(
                row.cpu_store
                    .iter()
                    .zip(&row.cpu_gapsafe)
                    .map(|(s, g)| sum(s) / sum(g))
                    .collect(),
            );
            format!("{r:.3}")
        } else {
            "-".to_owned()
        };
        println!(
            "{:<22} {:>12.3} {:>12.3} {:>12.3} {:>12.3} {:>14}",
            row.name,
            part(&row.cpu_store, |c| c.0),
            part(&row.cpu_store, |c| c.1),
            part(&row.cpu_gapsafe, |c| c.0),
            part(&row.cpu_gapsafe, |c| c.1),
            ratio
        );
    }
}
