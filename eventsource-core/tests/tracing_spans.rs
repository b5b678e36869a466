//! A user sees what happened without adding prints: load, decide, append, snapshot and each
//! projection batch are spans whose fields carry the stream, versions and positions.

// Test code: a failed expectation is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use eventsource_core::testing::fixtures::{AddedLog, Counter};
use eventsource_core::{InMemoryStore, ProjectionRunner, Repository};
use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

type Fields = BTreeMap<String, String>;

/// Closed spans, and events (their fields, `message` among them).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, Fields)>>>, Arc<Mutex<Vec<Fields>>>);

struct FieldsVisitor<'a>(&'a mut Fields);

impl Visit for FieldsVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut FieldsVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(&mut FieldsVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut FieldsVisitor(&mut fields));
        self.1.lock().push(fields);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(&id) {
            let fields = span
                .extensions()
                .get::<Fields>()
                .cloned()
                .unwrap_or_default();
            self.0.lock().push((span.name().to_owned(), fields));
        }
    }
}

/// Runs `body` on a current-thread runtime, with every span and event captured in `capture`.
fn traced<F: std::future::Future>(capture: &Capture, body: F) -> F::Output {
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body)
}

#[test]
fn commands_snapshots_and_projection_batches_are_traced_with_streams_versions_and_positions() {
    let capture = Capture::default();
    let (last_position, checkpoint) = traced(&capture, async {
        let store = InMemoryStore::new();
        let repo = Repository::<Counter, _>::new(store.clone());
        let mut last = None;
        for _ in 0..5 {
            last = Some(repo.execute("c", |c| c.add(1)).await.unwrap());
        }
        let mut runner = ProjectionRunner::new(store, AddedLog::default()).batch_size(2);
        let checkpoint = runner.catch_up().await.unwrap();
        (last.unwrap().commit.position, checkpoint)
    });
    let spans = capture.0.lock().clone();
    let named = |name: &str| -> Vec<&Fields> {
        spans
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, f)| f)
            .collect()
    };

    let loads = named("load");
    assert_eq!(loads.len(), 5, "one load per command");
    assert!(loads.iter().all(|f| f["stream"] == "counter-c"));
    assert_eq!(
        loads.last().unwrap()["version"],
        "4",
        "the load records the version it reached"
    );

    let decides = named("decide");
    assert_eq!(decides.len(), 5);
    assert!(
        decides
            .iter()
            .all(|f| f["events"] == "1" && f["rejected"] == "false")
    );

    let appends = named("append");
    assert_eq!(appends.len(), 5);
    let last_append = appends.last().unwrap();
    assert_eq!(
        (
            last_append["stream"].as_str(),
            last_append["expected"].as_str()
        ),
        ("counter-c", "4")
    );
    assert_eq!(last_append["version"], "5");
    assert_eq!(last_append["position"], last_position.to_string());

    let executes = named("execute");
    assert!(executes.iter().all(|f| f["attempts"] == "1"
        && f["conflicts"] == "0"
        && f["backoff_us"] == "0"
        && f["serialized"] == "false"
        && f.contains_key("position")));

    let snapshots = named("snapshot");
    assert_eq!(snapshots.len(), 1, "the counter snapshots every 5 events");
    assert_eq!(snapshots[0]["version"], "5");

    let batches = named("projection_batch");
    assert_eq!(batches.len(), 3, "5 events in batches of 2");
    assert_eq!(batches.last().unwrap()["to"], checkpoint.to_string());
    assert_eq!(
        batches
            .iter()
            .map(|f| f["events"].parse::<usize>().unwrap())
            .sum::<usize>(),
        5
    );
}

/// A snapshot its stream does not hold is passed over on every load, and reported once. (The
/// stream is longer than the snapshot interval: a shorter one is loaded without a snapshot.)
#[test]
fn a_snapshot_passed_over_is_reported_once_not_on_every_load() {
    use eventsource_core::{EventStore, Position, Snapshot, StreamId, Version};
    let capture = Capture::default();
    traced(&capture, async {
        let store = InMemoryStore::new();
        let repo = Repository::<Counter, _>::new(store.clone());
        for _ in 0..6 {
            repo.execute("c", |c| c.add(1)).await.unwrap();
        }
        store
            .save_snapshot(Snapshot {
                stream: StreamId::new("counter-c"),
                version: Version::new(30),
                position: Position::new(99, 99),
                event_recorded_at: chrono::Utc::now(),
                schema_version: 1,
                payload: bytes::Bytes::from_static(br#"{"value":30,"applied":30}"#),
            })
            .await
            .unwrap();
        for _ in 0..3 {
            let loaded = repo.clone().load("c").await.unwrap();
            assert_eq!(loaded.version.get(), 6);
            assert_eq!(loaded.state.value, 6);
        }
    });
    let reports = capture
        .1
        .lock()
        .iter()
        .filter(|f| {
            f.get("message")
                .is_some_and(|m| m == "snapshot passed over")
        })
        .count();
    assert_eq!(reports, 1);
}

/// With snapshots every 5 events, a stream the repository (or a clone) last saw shorter than
/// that is loaded without asking for a snapshot; one another process grew past it meanwhile
/// is folded from its start once, to the right state, and then loaded from its snapshot.
#[test]
fn a_stream_last_seen_shorter_than_the_snapshot_interval_is_loaded_without_a_snapshot() {
    use eventsource_core::{At, Version};
    let capture = Capture::default();
    let short_loads = || -> Vec<bool> {
        let spans = std::mem::take(&mut *capture.0.lock());
        spans
            .iter()
            .filter(|(n, _)| n == "load")
            .map(|(_, f)| f.get("short").is_some_and(|v| v == "true"))
            .collect()
    };
    traced(&capture, async {
        let store = InMemoryStore::new();
        let other = Repository::<Counter, _>::new(store.clone());
        for _ in 0..3 {
            other.execute("c", |c| c.add(1)).await.unwrap();
        }
        let repo = Repository::<Counter, _>::new(store.clone());
        let _ = short_loads();
        // Unknown to `repo`: asked for a snapshot; then known short, by its clones too.
        assert_eq!(repo.load("c").await.unwrap().version.get(), 3);
        assert_eq!(repo.clone().load("c").await.unwrap().version.get(), 3);
        repo.execute("c", |c| c.add(1)).await.unwrap();
        assert_eq!(short_loads(), [false, true, true]);
        // At the interval (a snapshot is taken at 5): asked for one again.
        repo.execute("c", |c| c.add(1)).await.unwrap();
        let loaded = repo.load("c").await.unwrap();
        assert_eq!((loaded.version.get(), loaded.state.value), (5, 5));
        assert_eq!(short_loads(), [true, false]);
        // Time travel within a short stream folds it too.
        repo.execute("e", |c| c.add(1)).await.unwrap();
        repo.execute("e", |c| c.add(1)).await.unwrap();
        let _ = short_loads();
        let at = repo
            .load_at("e", At::Version(Version::new(1)))
            .await
            .unwrap();
        assert_eq!((at.version.get(), at.state.value), (1, 1));
        assert_eq!(short_loads(), [true]);
        // Streams grown past the interval by another repository after `repo` saw them short:
        // the fold stops at the interval and the load asks for the snapshot, to the same state,
        // by time travel too; from then on they are known long.
        for s in ["d", "f"] {
            repo.execute(s, |c| c.add(1)).await.unwrap();
            for _ in 0..11 {
                other.execute(s, |c| c.add(1)).await.unwrap();
            }
        }
        let _ = short_loads();
        for _ in 0..2 {
            let loaded = repo.load("d").await.unwrap();
            assert_eq!((loaded.version.get(), loaded.state.value), (12, 12));
            let at = repo
                .load_at("f", At::Version(Version::new(8)))
                .await
                .unwrap();
            assert_eq!((at.version.get(), at.state.value), (8, 8));
        }
        assert_eq!(short_loads(), [false, false, false, false]);
    });
}
