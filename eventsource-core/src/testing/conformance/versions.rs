//! Versions of a projection (blue/green rebuilds): the store's steps of a switch are
//! compare-and-set and a sealed checkpoint never moves; a new version warms up beside the
//! serving one and takes over while readers read and writers write, with no empty model and
//! no checkpoint going back; replayed events are told apart; an interrupted warm-up or
//! switch resumes, and a switch given up leaves the old version serving.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::envelope::{Commit, RecordedEvent};
use crate::error::StoreError;
use crate::event::EventSet;
use crate::ids::{ExpectedVersion, Position};
use crate::projection::{
    HandlerError, Projection, ProjectionError, ProjectionHandle, ProjectionRunner, is_replay,
};
use crate::store::{EventStore, ProjectionVersions, Switching, VersionStep, version_key};
use crate::testing::fixtures::CounterEvent;

use super::support::{added, write};

const WAIT: Duration = Duration::from_secs(30);
const NAME: &str = "conformance.model";

/// A read model of `counter.added` events, one per version: each event it handled by
/// position (its amount, and whether it was a replay), every call in order, and the side
/// effects it made ("emails", shared by the versions, as a mail relay would be).
#[derive(Clone, Default)]
struct Model {
    seen: Arc<Mutex<BTreeMap<Position, (i64, bool)>>>,
    calls: Arc<Mutex<Vec<Position>>>,
    emails: Arc<Mutex<Vec<Position>>>,
    poison: Arc<Mutex<Option<i64>>>,
}

impl Model {
    fn sharing_emails(other: &Model) -> Self {
        Model {
            emails: Arc::clone(&other.emails),
            ..Model::default()
        }
    }

    /// How many events at or before `checkpoint` the model holds.
    fn held_to(&self, checkpoint: Position) -> usize {
        self.seen.lock().range(..=checkpoint).count()
    }
}

impl Projection for Model {
    const NAME: &'static str = NAME;
    type Context = ();

    fn event_types() -> Option<&'static [&'static str]> {
        Some(&["counter.added"])
    }

    async fn handle_event(
        &mut self,
        event: &RecordedEvent,
        _: &mut (),
    ) -> Result<(), HandlerError> {
        let CounterEvent::Added(n) =
            CounterEvent::decode(&event.event_type, event.schema_version, &event.payload)?
        else {
            return Err("not an addition".into());
        };
        if *self.poison.lock() == Some(n) {
            return Err(format!("{n} is poison").into());
        }
        let replay = is_replay();
        self.seen.lock().insert(event.position, (n, replay));
        self.calls.lock().push(event.position);
        if !replay {
            self.emails.lock().push(event.position);
        }
        Ok(())
    }

    async fn reset(&mut self, _: &mut ()) -> Result<(), HandlerError> {
        self.seen.lock().clear();
        Ok(())
    }
}

async fn add<S: EventStore>(store: &S, stream: &str, n: i64) -> Commit {
    store
        .append(vec![write(stream, ExpectedVersion::Any, vec![added(n)])])
        .await
        .expect("append")
}

/// Every event position of the log, in order.
async fn log_positions<S: EventStore>(store: &S) -> Vec<Position> {
    let mut all = Vec::new();
    let mut after = Position::ZERO;
    loop {
        let page = store
            .read_all(after, 500, None)
            .await
            .expect("read the log");
        if page.events.is_empty() {
            return all;
        }
        after = page.scanned_to;
        all.extend(page.events.iter().map(|e| e.position));
    }
}

/// Waits until the runner stopped, and says why.
async fn stopped(handle: &ProjectionHandle) -> crate::projection::ProjectionStatus {
    let wait = async {
        loop {
            let status = handle.status();
            if status.stopped {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .expect("the runner stops")
}

/// The store's steps: each is a compare-and-set, repeats answer as the first did, a sealed
/// checkpoint is refused every save, and of two racing seals one wins.
pub async fn version_steps_are_compare_and_set_and_a_sealed_checkpoint_never_moves<
    S: EventStore,
>(
    store: S,
) {
    let p = |n| Position::new(n, 0);
    assert_eq!(
        store.projection_versions(NAME).await.unwrap(),
        ProjectionVersions::new()
    );
    store.save_checkpoint(NAME, p(10)).await.unwrap();
    let seal = VersionStep::Seal { from: 1, to: 2 };
    let sealed = store.switch_version(NAME, seal).await.unwrap();
    assert_eq!(sealed.switching, Some(Switching::new(2, p(10))));
    assert_eq!(store.projection_versions(NAME).await.unwrap(), sealed);
    assert!(matches!(
        store.save_checkpoint(NAME, p(11)).await,
        Err(StoreError::CheckpointSealed { ref name }) if name == NAME
    ));
    assert!(matches!(
        store.save_checkpoint(NAME, Position::ZERO).await,
        Err(StoreError::CheckpointSealed { .. })
    ));
    assert!(
        matches!(
            store.save_checkpoint(NAME, p(10)).await,
            Err(StoreError::CheckpointSealed { .. })
        ),
        "not even where it is (a retried dead letter of the old version commits so)"
    );
    assert_eq!(store.load_checkpoint(NAME).await.unwrap(), Some(p(10)));
    // Repeated: the same seal, at the same place.
    assert_eq!(store.switch_version(NAME, seal).await.unwrap(), sealed);

    let v2 = version_key(NAME, 2);
    store.save_checkpoint(&v2, p(9)).await.unwrap();
    let promote = VersionStep::Promote { from: 1, to: 2 };
    assert!(matches!(
        store.switch_version(NAME, promote).await,
        Err(StoreError::SwitchRefused { .. })
    ));
    assert_eq!(store.projection_versions(NAME).await.unwrap(), sealed);
    store.save_checkpoint(&v2, p(12)).await.unwrap();
    let promoted = store.switch_version(NAME, promote).await.unwrap();
    assert_eq!(promoted, ProjectionVersions::with(2, None));
    assert_eq!(store.switch_version(NAME, promote).await.unwrap(), promoted);
    assert!(
        store.save_checkpoint(NAME, p(13)).await.is_err(),
        "the version switched away from stays sealed"
    );
    for refused in [
        VersionStep::Seal { from: 1, to: 3 },
        VersionStep::Abort { from: 1, to: 2 },
        VersionStep::Seal { from: 2, to: 2 },
        VersionStep::Seal { from: 0, to: 3 },
    ] {
        assert!(
            matches!(
                store.switch_version(NAME, refused).await,
                Err(StoreError::SwitchRefused { .. } | StoreError::InvalidRequest(_))
            ),
            "{refused:?}"
        );
    }
    assert_eq!(store.projection_versions(NAME).await.unwrap(), promoted);

    // Two racing seals of version 2: one wins, the other is refused.
    let (a, b) = tokio::join!(
        store.switch_version(NAME, VersionStep::Seal { from: 2, to: 3 }),
        store.switch_version(NAME, VersionStep::Seal { from: 2, to: 4 }),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    let to = if a.is_ok() { 3 } else { 4 };
    assert!(store.save_checkpoint(&v2, p(14)).await.is_err());
    let aborted = store
        .switch_version(NAME, VersionStep::Abort { from: 2, to })
        .await
        .unwrap();
    assert_eq!(aborted, ProjectionVersions::with(2, None));
    store
        .save_checkpoint(&v2, p(14))
        .await
        .expect("unsealed by the abort");
    // Names are checked.
    assert!(matches!(
        store.projection_versions("").await,
        Err(StoreError::InvalidRequest(_))
    ));
    assert!(matches!(
        store.switch_version("a\0b", seal).await,
        Err(StoreError::InvalidRequest(_))
    ));
}

/// Version 1 serves while 4 writers append; version 2 warms up beside it and takes over. A
/// reader follows the serving version all along and never sees an empty model, a model
/// missing an event its checkpoint passed, or a checkpoint that goes back. Version 2's
/// handlers are told which events are replays (exactly those at or before where version 1
/// was sealed), so no email is sent twice by version 2; version 1 stops, superseded.
pub async fn a_new_version_takes_over_while_readers_read_and_writers_write<S: EventStore>(
    store: S,
) {
    let v1 = Model::default();
    let v2 = Model::sharing_emails(&v1);
    for n in 1..=20 {
        add(&store, &format!("s{}", n % 3), n).await;
    }
    let serving = ProjectionRunner::new(store.clone(), v1.clone())
        .batch_size(5)
        .spawn();
    let head = store.head().await.unwrap();
    serving.wait_for(head, WAIT).await.expect("version 1 live");

    let stop = Arc::new(AtomicBool::new(false));
    // Samples of (serving version, its checkpoint, events the model holds up to it).
    let samples = Arc::new(Mutex::new(Vec::<(u32, Position, usize)>::new()));
    let reader = {
        let (store, stop, samples) = (store.clone(), stop.clone(), samples.clone());
        let models = [v1.clone(), v2.clone()];
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let version = store.projection_versions(NAME).await.unwrap().serving;
                let key = version_key(NAME, version);
                let checkpoint = store
                    .load_checkpoint(&key)
                    .await
                    .unwrap()
                    .unwrap_or_default();
                let held = models[version as usize - 1].held_to(checkpoint);
                samples.lock().push((version, checkpoint, held));
                tokio::task::yield_now().await;
            }
        })
    };
    // The reader sees version 1 serve before version 2 starts (on a busy machine it might
    // not be scheduled before the switch is over).
    let first_sample = tokio::time::Instant::now() + WAIT;
    while samples.lock().is_empty() && tokio::time::Instant::now() < first_sample {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 1..=40 {
                    add(&store, &format!("w{w}"), 100 * (w + 1) + n).await;
                    if n % 10 == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            })
        })
        .collect();
    let next = ProjectionRunner::new(store.clone(), v2.clone())
        .version(2)
        .expect("version 2")
        .batch_size(5)
        .spawn();
    next.wait_serving(WAIT).await.expect("version 2 takes over");
    for writer in writers {
        writer.await.expect("writer");
    }
    let head = store.head().await.unwrap();
    next.wait_for(head, WAIT)
        .await
        .expect("version 2 follows live");
    stop.store(true, Ordering::SeqCst);
    reader.await.expect("reader");

    let old = stopped(&serving).await;
    assert_eq!(old.superseded_by, Some(2));
    assert!(old.failed.is_none(), "{:?}", old.failed);
    assert_eq!(
        store.projection_versions(NAME).await.unwrap(),
        ProjectionVersions::with(2, None)
    );
    let at = store.load_checkpoint(NAME).await.unwrap().expect("sealed");

    // The reader: the model never empty, holding everything its checkpoint passed, the
    // checkpoint never back, version 1 then version 2, never back to 1.
    let log = log_positions(&store).await;
    let samples = samples.lock().clone();
    assert!(samples.iter().any(|s| s.0 == 1) && samples.iter().any(|s| s.0 == 2));
    let mut last = (0, Position::ZERO);
    for (version, checkpoint, held) in samples {
        assert!(held > 0, "an empty model was read (version {version})");
        let passed = log.iter().filter(|p| **p <= checkpoint).count();
        assert_eq!(held, passed, "version {version} at {checkpoint}");
        assert!(
            (version, checkpoint) >= last && checkpoint >= last.1,
            "went back from {last:?} to {:?}",
            (version, checkpoint)
        );
        last = (version, checkpoint);
    }

    // Version 2 holds the whole log, each event handled once; the replays are exactly the
    // events up to the seal.
    let seen = v2.seen.lock().clone();
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), log);
    assert_eq!(v2.calls.lock().len(), log.len(), "each event handled once");
    for (position, (_, replay)) in &seen {
        assert_eq!(*replay, *position <= at, "at {position} (sealed at {at})");
    }
    // Every event was emailed: once (by version 1) up to the seal; after it by version 2,
    // and by version 1 only where it handled a batch its checkpoint could not pass (at least
    // once, as the core's batches are).
    let emails = v1.emails.lock().clone();
    for p in &log {
        let sent = emails.iter().filter(|e| *e == p).count();
        if *p <= at {
            assert_eq!(sent, 1, "emails for {p}, before the seal at {at}");
        } else {
            assert!(
                (1..=2).contains(&sent),
                "emails for {p}, after the seal: {sent}"
            );
        }
    }
    next.shutdown().await.expect("shut down");
}

/// A warm-up interrupted (the new version stopped on an event it failed on) resumes from its
/// own checkpoint, handling no event twice; a switch interrupted after the seal (the seal
/// taken, the new version not yet running) resumes too: the old version stands by meanwhile,
/// its checkpoint still, and stops once the new version took over.
pub async fn an_interrupted_warm_up_or_switch_resumes_where_it_stopped<S: EventStore>(store: S) {
    let v1 = Model::default();
    let v2 = Model::sharing_emails(&v1);
    for n in 1..=60 {
        add(&store, &format!("s{}", n % 4), n).await;
    }
    let serving = ProjectionRunner::new(store.clone(), v1.clone())
        .batch_size(7)
        .spawn();
    serving
        .wait_for(store.head().await.unwrap(), WAIT)
        .await
        .expect("version 1 live");

    // The first warm-up stops on event 30.
    *v2.poison.lock() = Some(30);
    let first = ProjectionRunner::new(store.clone(), v2.clone())
        .version(2)
        .unwrap()
        .batch_size(7)
        .spawn();
    let status = stopped(&first).await;
    assert!(
        matches!(
            status.failed.as_deref(),
            Some(ProjectionError::Handler { .. })
        ),
        "{:?}",
        status.failed
    );
    let v2_key = version_key(NAME, 2);
    let resumed_from = store
        .load_checkpoint(&v2_key)
        .await
        .unwrap()
        .expect("saved");
    assert_eq!(v2.calls.lock().len(), 29);
    assert_eq!(
        store.projection_versions(NAME).await.unwrap(),
        ProjectionVersions::new(),
        "no switch began"
    );

    // An operator's seal stands for a switch interrupted after it.
    let sealed = store
        .switch_version(NAME, VersionStep::Seal { from: 1, to: 2 })
        .await
        .unwrap();
    let at = sealed.switching.expect("switching").at;
    for n in 61..=70 {
        add(&store, "late", n).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        store.load_checkpoint(NAME).await.unwrap(),
        Some(at),
        "sealed"
    );
    assert!(!serving.status().leader, "the sealed version stands by");

    *v2.poison.lock() = None;
    let second = ProjectionRunner::new(store.clone(), v2.clone())
        .version(2)
        .unwrap()
        .batch_size(7)
        .spawn();
    second.wait_serving(WAIT).await.expect("takes over");
    let head = store.head().await.unwrap();
    second.wait_for(head, WAIT).await.expect("live");
    let calls = v2.calls.lock().clone();
    let log = log_positions(&store).await;
    assert_eq!(calls, log, "each event once, in order, across the two runs");
    assert!(calls[29] > resumed_from && calls[28] <= resumed_from);
    assert_eq!(stopped(&serving).await.superseded_by, Some(2));
    assert_eq!(store.load_checkpoint(NAME).await.unwrap(), Some(at));
    second.shutdown().await.unwrap();
}

/// A switch the new version cannot finish (it fails after the seal) is given up: the old
/// version is unsealed, leads again and follows the log, and readers stay on it.
pub async fn a_switch_given_up_leaves_the_old_version_serving<S: EventStore>(store: S) {
    let v1 = Model::default();
    let v2 = Model::sharing_emails(&v1);
    for n in 1..=30 {
        add(&store, "s", n).await;
    }
    let serving = ProjectionRunner::new(store.clone(), v1.clone())
        .batch_size(4)
        .spawn();
    serving
        .wait_for(store.head().await.unwrap(), WAIT)
        .await
        .expect("live");
    store
        .switch_version(NAME, VersionStep::Seal { from: 1, to: 2 })
        .await
        .unwrap();
    *v2.poison.lock() = Some(17);
    let next = ProjectionRunner::new(store.clone(), v2.clone())
        .version(2)
        .unwrap()
        .batch_size(4)
        .spawn();
    assert!(matches!(
        next.wait_serving(WAIT).await,
        Err(ProjectionError::Stopped { .. })
    ));
    assert_eq!(
        store.projection_versions(NAME).await.unwrap(),
        ProjectionVersions::new(),
        "given up"
    );
    let late = add(&store, "s", 31).await;
    serving
        .wait_for(late.position, WAIT)
        .await
        .expect("the old version serves on");
    assert!(v1.seen.lock().contains_key(&late.position));
    assert!(serving.status().serving);
    // A version older than the serving one stops at once.
    store
        .switch_version(NAME, VersionStep::Seal { from: 1, to: 3 })
        .await
        .unwrap();
    let v3 = version_key(NAME, 3);
    store
        .save_checkpoint(&v3, store.load_checkpoint(NAME).await.unwrap().unwrap())
        .await
        .unwrap();
    store
        .switch_version(NAME, VersionStep::Promote { from: 1, to: 3 })
        .await
        .unwrap();
    assert_eq!(stopped(&serving).await.superseded_by, Some(3));
    let stale = ProjectionRunner::new(store.clone(), Model::default())
        .version(2)
        .unwrap()
        .spawn();
    assert_eq!(stopped(&stale).await.superseded_by, Some(3));
    let mut one_shot = ProjectionRunner::new(store.clone(), Model::default());
    assert!(matches!(
        one_shot.catch_up().await,
        Err(ProjectionError::Superseded { by: 3, .. })
    ));
}
