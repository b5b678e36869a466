//! Memory follows the batch size, never the length of a stream or of the log: loading a long
//! stream, catching a projection up and following a subscription hold one batch at a time.
//!
//! Measured with a counting global allocator (this test binary only): the peak allocated while
//! reading must stay far below what the events would take if they were collected.

#![allow(clippy::unwrap_used)] // test setup helpers, not library code

use eventsource_core::testing::fixtures::{Counter, CounterEvent};
use eventsource_core::{
    Aggregate, EventSet, EventStore, ExpectedVersion, HandlerError, InMemoryStore, Position,
    Projection, ProjectionRunner, RecordedEvent, Repository, StreamWrite, subscribe,
};
use futures::StreamExt;
use peak_alloc::PeakAlloc;

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

const EVENTS: usize = 200_000;
/// A `RecordedEvent` collected in a `Vec` costs well over 100 bytes (the struct plus its type
/// name); the whole stream would take more than 20 MB. One batch takes a few hundred KB.
const BOUND: usize = 4 * 1024 * 1024;

async fn seeded() -> InMemoryStore {
    let store = InMemoryStore::new();
    for _ in 0..EVENTS / 1000 {
        let batch = (0..1000)
            .map(|i| CounterEvent::Added(i).to_new_event())
            .collect();
        store
            .append(vec![StreamWrite::new(
                Counter::stream_id("long"),
                ExpectedVersion::Any,
                batch,
            )])
            .await
            .unwrap();
    }
    store
}

/// Runs `f` and returns how far allocation rose above where it started.
async fn peak_during<F: std::future::Future>(f: F) -> (F::Output, usize) {
    let before = ALLOCATOR.current_usage();
    ALLOCATOR.reset_peak_usage();
    let out = f.await;
    (out, ALLOCATOR.peak_usage().saturating_sub(before))
}

/// Sums the amounts it sees: a read model of constant size.
struct Sum(i64);

impl Projection for Sum {
    const NAME: &'static str = "sum";
    type Context = ();

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        if let CounterEvent::Added(n) =
            CounterEvent::decode(&event.event_type, event.schema_version, &event.payload)?
        {
            self.0 += n;
        }
        Ok(())
    }
}

// One test function, so no other test allocates concurrently in this binary.
#[test]
fn long_streams_and_logs_are_read_one_batch_at_a_time() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = seeded().await;

        let repo = Repository::<Counter, _>::new(store.clone());
        let (loaded, peak) = peak_during(repo.load("long")).await;
        let loaded = loaded.unwrap();
        assert_eq!(loaded.version.get(), EVENTS as u64);
        assert!(
            peak < BOUND,
            "loading {EVENTS} events peaked at {peak} bytes"
        );

        let mut runner = ProjectionRunner::new(store.clone(), Sum(0)).batch_size(1000);
        let (reached, peak) = peak_during(runner.catch_up()).await;
        assert_eq!(reached.unwrap(), store.head().await.unwrap());
        assert_eq!(
            runner.projection().0,
            (0..1000).sum::<i64>() * (EVENTS / 1000) as i64
        );
        assert!(
            peak < BOUND,
            "catching a projection up over {EVENTS} events peaked at {peak} bytes"
        );
        drop(runner);

        let (count, peak) = peak_during(
            subscribe(store.clone(), Position::ZERO, 500)
                .take(EVENTS)
                .count(),
        )
        .await;
        assert_eq!(count, EVENTS);
        assert!(
            peak < BOUND,
            "a subscription over {EVENTS} events peaked at {peak} bytes"
        );
    });
}
