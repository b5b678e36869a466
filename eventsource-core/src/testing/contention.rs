//! Writers racing on one hot stream through the repository, for the conformance suite and for
//! stores' own tests that split the writers over several store handles (as several processes
//! would be).

use std::time::{Duration, Instant};

use super::fixtures::Counter;
use crate::repository::Repository;
use crate::store::EventStore;

/// What a race on one stream came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaceReport {
    /// Commands run (all of them committed).
    pub commands: u64,
    /// The longest a single command took.
    pub slowest: Duration,
    /// The most appends one command made.
    pub most_attempts: u32,
    /// How many commands ran their last attempt under the writers' lock.
    pub serialized: u64,
    /// All lost races.
    pub conflicts: u64,
}

/// Runs `tasks` writers, each running `commands` deposits of 1 on the counter `id` through
/// `repos[task % repos.len()]`, then checks that every command committed exactly once: the
/// stream's version and the counter's value are `tasks * commands` more than before. Panics
/// (a test helper) on any failed command or a wrong total.
pub async fn deposits_on_one_stream<S: EventStore>(
    repos: &[Repository<Counter, S>],
    id: &str,
    tasks: usize,
    commands: usize,
) -> RaceReport {
    assert!(!repos.is_empty(), "at least one repository");
    let before = repos[0].load(id).await.expect("load before");
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let repo = repos[t % repos.len()].clone();
        let id = id.to_owned();
        handles.push(tokio::spawn(async move {
            let mut report = RaceReport::default();
            for _ in 0..commands {
                let started = Instant::now();
                let executed = repo
                    .execute(&id, |c| c.add(1))
                    .await
                    .expect("a command under contention commits");
                report.slowest = report.slowest.max(started.elapsed());
                report.most_attempts = report.most_attempts.max(executed.attempts);
                report.serialized += u64::from(executed.serialized);
                report.conflicts += u64::from(executed.conflicts);
                report.commands += 1;
            }
            report
        }));
    }
    let mut report = RaceReport::default();
    for h in handles {
        let r = h.await.expect("writer task");
        report.commands += r.commands;
        report.slowest = report.slowest.max(r.slowest);
        report.most_attempts = report.most_attempts.max(r.most_attempts);
        report.serialized += r.serialized;
        report.conflicts += r.conflicts;
    }
    let total = (tasks * commands) as u64;
    // A fresh repository (no cache) sees exactly the commands' events.
    let after = Repository::<Counter, S>::new(repos[0].store().clone())
        .load(id)
        .await
        .expect("load after");
    assert_eq!(
        after.version.get(),
        before.version.get() + total,
        "every command once"
    );
    assert_eq!(after.state.value, before.state.value + total as i64);
    assert_eq!(after.state.applied, before.state.applied + total);
    assert_eq!(report.commands, total);
    report
}

/// How many times the race tests repeat (`ES_RACE_RUNS`, default 1): set it to run them in a
/// row many times.
pub fn race_runs() -> usize {
    std::env::var("ES_RACE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}
