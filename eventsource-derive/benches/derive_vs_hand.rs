//! The derived aggregate and projection against the same code written by hand: folding
//! 1,000,000 events, decoding 100,000 stored events of mixed versions, and feeding 100,000
//! recorded events to a projection. The derive should cost nothing: ratios near 1.0.
//!
//! `cargo bench -p eventsource-derive --bench derive_vs_hand`

// Benchmarks are not a public API; their setup may unwrap.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use eventsource_core::prelude::*;
use eventsource_core::{DecodeError, EncodeError, EventId, EventSet, EventType};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- events (shared payloads)

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.opened")]
pub struct Opened {
    pub owner: String,
}

#[derive(Debug, Deserialize, DomainEvent)]
#[event(name = "account.deposited")]
pub struct DepositedV1 {
    pub amount: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.deposited", version = 2, previous = DepositedV1)]
pub struct Deposited {
    pub amount_cents: i64,
}

impl From<DepositedV1> for Deposited {
    fn from(v1: DepositedV1) -> Self {
        Deposited {
            amount_cents: (v1.amount * 100.0).round() as i64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, DomainEvent)]
#[event(name = "account.withdrawn")]
pub struct Withdrawn {
    pub amount_cents: i64,
}

// ---------------------------------------------------------------- derived

#[derive(Debug, Default, Aggregate)]
#[aggregate(name = "account", events(Opened, Deposited, Withdrawn))]
pub struct Derived {
    opened: bool,
    balance: i64,
}

impl Apply<Opened> for Derived {
    fn apply(&mut self, _: &Opened) {
        self.opened = true
    }
}

impl Apply<Deposited> for Derived {
    fn apply(&mut self, e: &Deposited) {
        self.balance += e.amount_cents
    }
}

impl Apply<Withdrawn> for Derived {
    fn apply(&mut self, e: &Withdrawn) {
        self.balance -= e.amount_cents
    }
}

#[derive(Default, Projection)]
#[projection(name = "balances", events(Opened, Deposited, Withdrawn))]
pub struct DerivedBalances {
    accounts: u64,
    total: i64,
}

impl Handle<Opened> for DerivedBalances {
    async fn handle(
        &mut self,
        _: Opened,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.accounts += 1;
        Ok(())
    }
}

impl Handle<Deposited> for DerivedBalances {
    async fn handle(
        &mut self,
        e: Deposited,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.total += e.amount_cents;
        Ok(())
    }
}

impl Handle<Withdrawn> for DerivedBalances {
    async fn handle(
        &mut self,
        e: Withdrawn,
        _: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        self.total -= e.amount_cents;
        Ok(())
    }
}

// ---------------------------------------------------------------- by hand

#[derive(Debug, Clone, PartialEq)]
pub enum HandEvent {
    Opened(Opened),
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

impl EventSet for HandEvent {
    const EVENT_TYPES: &'static [EventType] = &[
        EventType::of::<Opened>(),
        EventType::of::<Deposited>(),
        EventType::of::<Withdrawn>(),
    ];

    fn event_type(&self) -> &'static str {
        match self {
            HandEvent::Opened(_) => "account.opened",
            HandEvent::Deposited(_) => "account.deposited",
            HandEvent::Withdrawn(_) => "account.withdrawn",
        }
    }

    fn schema_version(&self) -> u32 {
        match self {
            HandEvent::Deposited(_) => 2,
            _ => 1,
        }
    }

    fn encode(&self) -> Result<bytes::Bytes, EncodeError> {
        match self {
            HandEvent::Opened(e) => eventsource_core::codec::encode_json("account.opened", e),
            HandEvent::Deposited(e) => eventsource_core::codec::encode_json("account.deposited", e),
            HandEvent::Withdrawn(e) => eventsource_core::codec::encode_json("account.withdrawn", e),
        }
    }

    fn decode(name: &str, version: u32, payload: &[u8]) -> Result<Self, DecodeError> {
        hand_decode(name, version, payload)
    }
}

fn hand_decode(name: &str, version: u32, payload: &[u8]) -> Result<HandEvent, DecodeError> {
    use eventsource_core::codec::decode_json;
    match (name, version) {
        ("account.opened", 1) => decode_json(name, version, payload).map(HandEvent::Opened),
        ("account.deposited", 2) => decode_json(name, version, payload).map(HandEvent::Deposited),
        ("account.deposited", 1) => decode_json::<DepositedV1>(name, version, payload)
            .map(|v1| HandEvent::Deposited(v1.into())),
        ("account.withdrawn", 1) => decode_json(name, version, payload).map(HandEvent::Withdrawn),
        _ => Err(DecodeError::UnknownEvent {
            name: name.into(),
            version,
        }),
    }
}

#[derive(Debug, Default)]
pub struct Hand {
    opened: bool,
    balance: i64,
}

impl Aggregate for Hand {
    const NAME: &'static str = "account";
    type Event = HandEvent;

    fn apply_event(&mut self, event: &HandEvent) {
        match event {
            HandEvent::Opened(_) => self.opened = true,
            HandEvent::Deposited(e) => self.balance += e.amount_cents,
            HandEvent::Withdrawn(e) => self.balance -= e.amount_cents,
        }
    }
}

#[derive(Default)]
pub struct HandBalances {
    accounts: u64,
    total: i64,
}

impl Projection for HandBalances {
    const NAME: &'static str = "balances";
    type Context = ();

    fn event_types() -> Option<&'static [&'static str]> {
        Some(&["account.opened", "account.deposited", "account.withdrawn"])
    }

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        if !matches!(
            event.event_type.as_str(),
            "account.opened" | "account.deposited" | "account.withdrawn"
        ) {
            return Ok(());
        }
        match hand_decode(&event.event_type, event.schema_version, &event.payload)? {
            HandEvent::Opened(_) => self.accounts += 1,
            HandEvent::Deposited(e) => self.total += e.amount_cents,
            HandEvent::Withdrawn(e) => self.total -= e.amount_cents,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- data

/// The stored events of the decode benchmarks: a mix of every type and of both versions of
/// `account.deposited`.
fn stored(n: usize) -> Vec<(&'static str, u32, bytes::Bytes)> {
    (0..n)
        .map(|i| match i % 5 {
            0 => (
                "account.opened",
                1,
                bytes::Bytes::from(format!(r#"{{"owner":"owner-{i}"}}"#)),
            ),
            1 => (
                "account.deposited",
                1,
                bytes::Bytes::from(format!(r#"{{"amount":{}.25}}"#, i % 1000)),
            ),
            2 | 3 => (
                "account.deposited",
                2,
                bytes::Bytes::from(format!(r#"{{"amount_cents":{}}}"#, i % 997)),
            ),
            _ => (
                "account.withdrawn",
                1,
                bytes::Bytes::from(format!(r#"{{"amount_cents":{}}}"#, i % 13)),
            ),
        })
        .collect()
}

fn recorded(n: usize) -> Vec<RecordedEvent> {
    let now = chrono::Utc::now();
    stored(n)
        .into_iter()
        .enumerate()
        .map(|(i, (name, version, payload))| RecordedEvent {
            id: EventId::new_random(),
            stream: StreamId::new(format!("account-{}", i % 100)),
            version: Version::new(i as u64 + 1),
            position: Position::new(i as u64 + 1, 0),
            event_type: name.into(),
            schema_version: version,
            payload,
            metadata: Metadata::default(),
            recorded_at: now,
        })
        .collect()
}

fn folded<E: From<Opened> + From<Deposited> + From<Withdrawn>>(n: usize) -> Vec<E> {
    (0..n)
        .map(|i| match i % 3 {
            0 => E::from(Opened {
                owner: String::new(),
            }),
            1 => E::from(Deposited {
                amount_cents: i as i64,
            }),
            _ => E::from(Withdrawn { amount_cents: 1 }),
        })
        .collect()
}

impl From<Opened> for HandEvent {
    fn from(e: Opened) -> Self {
        HandEvent::Opened(e)
    }
}
impl From<Deposited> for HandEvent {
    fn from(e: Deposited) -> Self {
        HandEvent::Deposited(e)
    }
}
impl From<Withdrawn> for HandEvent {
    fn from(e: Withdrawn) -> Self {
        HandEvent::Withdrawn(e)
    }
}

// ---------------------------------------------------------------- workloads

fn fold_derived(events: &[DerivedEvent]) -> i64 {
    let mut state = Derived::default();
    for e in events {
        Aggregate::apply_event(&mut state, e);
    }
    state.balance
}

fn fold_hand(events: &[HandEvent]) -> i64 {
    let mut state = Hand::default();
    for e in events {
        Aggregate::apply_event(&mut state, e);
    }
    state.balance
}

fn decode_derived(events: &[(&'static str, u32, bytes::Bytes)]) -> i64 {
    let mut state = Derived::default();
    for (name, version, payload) in events {
        let e = DerivedEvent::decode(name, *version, payload).unwrap();
        Aggregate::apply_event(&mut state, &e);
    }
    state.balance
}

fn decode_hand(events: &[(&'static str, u32, bytes::Bytes)]) -> i64 {
    let mut state = Hand::default();
    for (name, version, payload) in events {
        let e = HandEvent::decode(name, *version, payload).unwrap();
        Aggregate::apply_event(&mut state, &e);
    }
    state.balance
}

fn project_derived(events: &[RecordedEvent]) -> (u64, i64) {
    let mut p = DerivedBalances::default();
    futures::executor::block_on(async {
        for e in events {
            p.handle_event(e, &mut ()).await.unwrap();
        }
    });
    (p.accounts, p.total)
}

fn project_hand(events: &[RecordedEvent]) -> (u64, i64) {
    let mut p = HandBalances::default();
    futures::executor::block_on(async {
        for e in events {
            p.handle_event(e, &mut ()).await.unwrap();
        }
    });
    (p.accounts, p.total)
}

// ---------------------------------------------------------------- benchmarks

const APPLY_N: usize = 1_000_000;
const DECODE_N: usize = 100_000;

fn apply(c: &mut Criterion) {
    let derived: Vec<DerivedEvent> = folded(APPLY_N);
    let hand: Vec<HandEvent> = folded(APPLY_N);
    let mut g = c.benchmark_group("apply_1m");
    g.throughput(Throughput::Elements(APPLY_N as u64));
    g.bench_function("derived", |b| b.iter(|| fold_derived(black_box(&derived))));
    g.bench_function("hand", |b| b.iter(|| fold_hand(black_box(&hand))));
    g.finish();
}

fn decode(c: &mut Criterion) {
    let events = stored(DECODE_N);
    let mut g = c.benchmark_group("decode_100k_mixed_versions");
    g.throughput(Throughput::Elements(DECODE_N as u64));
    g.bench_function("derived", |b| b.iter(|| decode_derived(black_box(&events))));
    g.bench_function("hand", |b| b.iter(|| decode_hand(black_box(&events))));
    g.finish();
}

fn project(c: &mut Criterion) {
    let events = recorded(DECODE_N);
    let mut g = c.benchmark_group("project_100k_mixed_versions");
    g.throughput(Throughput::Elements(DECODE_N as u64));
    g.bench_function("derived", |b| {
        b.iter(|| project_derived(black_box(&events)))
    });
    g.bench_function("hand", |b| b.iter(|| project_hand(black_box(&events))));
    g.finish();
}

/// The derived/hand ratio of each workload, measured interleaved (derived, hand, derived, ...)
/// alternating which goes first, and taking each side's fastest run: on a shared machine, load spikes hit both sides alike
/// and the minimum is the run least disturbed. Printed before criterion's own report.
fn interleaved_ratios() {
    const ROUNDS: usize = 40;
    fn ratio<A, B>(mut derived: impl FnMut() -> A, mut hand: impl FnMut() -> B) -> (f64, f64, f64) {
        let (mut d, mut h) = (f64::MAX, f64::MAX);
        for round in 0..ROUNDS {
            // Alternate which side goes first, so neither always runs on a warmer cache.
            for side in [round % 2, 1 - round % 2] {
                let t = std::time::Instant::now();
                if side == 0 {
                    black_box(derived());
                    d = d.min(t.elapsed().as_secs_f64());
                } else {
                    black_box(hand());
                    h = h.min(t.elapsed().as_secs_f64());
                }
            }
        }
        (d * 1e3, h * 1e3, d / h)
    }
    let (fd, fh) = (
        folded::<DerivedEvent>(APPLY_N),
        folded::<HandEvent>(APPLY_N),
    );
    let stored = stored(DECODE_N);
    let recorded = recorded(DECODE_N);
    let rows = [
        (
            "apply 1,000,000 events",
            ratio(
                || fold_derived(black_box(&fd)),
                || fold_hand(black_box(&fh)),
            ),
        ),
        (
            "decode 100,000 mixed versions",
            ratio(
                || decode_derived(black_box(&stored)),
                || decode_hand(black_box(&stored)),
            ),
        ),
        (
            "project 100,000 mixed versions",
            ratio(
                || project_derived(black_box(&recorded)),
                || project_hand(black_box(&recorded)),
            ),
        ),
    ];
    println!("derived vs hand-written, fastest of {ROUNDS} interleaved runs each:");
    for (name, (d, h, r)) in rows {
        println!("  {name:<32} derived {d:8.3} ms   hand {h:8.3} ms   ratio {r:.3}");
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(6));
    targets = apply, decode, project
}
/// `RATIOS=only` prints the interleaved ratios and skips criterion; `RATIOS=skip` runs only
/// criterion (as does giving a filter).
fn main() {
    let mode = std::env::var("RATIOS").unwrap_or_default();
    let filtered = std::env::args().skip(1).any(|a| !a.starts_with('-'));
    if mode != "skip" && !filtered {
        interleaved_ratios();
    }
    if mode != "only" {
        benches();
        Criterion::default().configure_from_args().final_summary();
    }
}
