//! Dead letters through the store trait: one letter per (projection, event id), how
//! resolutions and new failures change it, listing in position order, and input checks.

use super::support::{added, write};
use crate::store::{
    DeadLetter, DeadLetterChange, DeadLetterQuery, DeadLetterReason, ResolutionKind,
};
use crate::{
    EventStore, ExpectedVersion, InMemoryStore, Position, ReadUntil, RecordedEvent, StoreError,
    StreamId, Version,
};
use futures::TryStreamExt;

/// Appends `n` events to `stream` and reads them back as stored.
async fn recorded<S: EventStore>(store: &S, stream: &str, n: u64) -> Vec<RecordedEvent> {
    store
        .append(vec![write(
            stream,
            ExpectedVersion::Any,
            (1..=n as i64).map(added).collect(),
        )])
        .await
        .expect("store");
    store
        .read_stream(&StreamId::new(stream), Version::FIRST, ReadUntil::End)
        .try_collect()
        .await
        .expect("store")
}

fn failed(event: &RecordedEvent, error: &str) -> DeadLetterChange {
    DeadLetterChange::Failed {
        event: event.clone(),
        reason: DeadLetterReason::Failed,
        error: error.to_owned(),
    }
}

fn resolved(event: &RecordedEvent, kind: ResolutionKind) -> DeadLetterChange {
    DeadLetterChange::Resolved {
        event_id: event.id,
        kind,
    }
}

fn positions(letters: &[DeadLetter]) -> Vec<Position> {
    letters.iter().map(|l| l.event.position).collect()
}

/// A failure written twice (a batch handled again) is one letter with two attempts.
pub async fn a_failure_written_twice_is_one_letter_with_two_attempts<S: EventStore>(store: S) {
    let events = recorded(&store, "s", 1).await;
    store
        .write_dead_letters("p", &[failed(&events[0], "first")])
        .await
        .expect("store");
    let parked = DeadLetterChange::Failed {
        event: events[0].clone(),
        reason: DeadLetterReason::Parked,
        error: "second".to_owned(),
    };
    store
        .write_dead_letters("p", &[parked])
        .await
        .expect("store");

    let letters = store
        .dead_letters("p", &DeadLetterQuery::pending())
        .await
        .expect("store");
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.projection, "p");
    assert_eq!(letter.event, events[0]);
    assert_eq!(letter.attempts, 2);
    assert_eq!(letter.reason, DeadLetterReason::Parked);
    assert_eq!(letter.error, "second");
    assert!(letter.first_failed_at <= letter.last_failed_at);
    assert!(letter.is_pending());
}

/// A resolved letter is kept, with how and when, but listed only when resolved ones are asked for.
pub async fn a_resolved_letter_is_listed_only_with_resolved_ones<S: EventStore>(store: S) {
    let events = recorded(&store, "s", 2).await;
    store
        .write_dead_letters("p", &[failed(&events[0], "e0"), failed(&events[1], "e1")])
        .await
        .expect("store");
    store
        .write_dead_letters("p", &[resolved(&events[0], ResolutionKind::Discarded)])
        .await
        .expect("store");
    // A resolved letter is not resolved again.
    store
        .write_dead_letters("p", &[resolved(&events[0], ResolutionKind::Retried)])
        .await
        .expect("store");

    let pending = store
        .dead_letters("p", &DeadLetterQuery::pending())
        .await
        .expect("store");
    assert_eq!(positions(&pending), vec![events[1].position]);
    let all = store
        .dead_letters("p", &DeadLetterQuery::all())
        .await
        .expect("store");
    assert_eq!(
        positions(&all),
        vec![events[0].position, events[1].position]
    );
    let resolution = all[0].resolution.expect("resolved");
    assert_eq!(resolution.kind, ResolutionKind::Discarded);
    assert!(resolution.at >= all[0].last_failed_at);
    assert_eq!(all[0].attempts, 1);
    assert!(all[1].is_pending());
}

/// A failure after a resolution makes the letter pending again, one more attempt.
pub async fn a_failure_after_resolution_makes_the_letter_pending_again<S: EventStore>(store: S) {
    let events = recorded(&store, "s", 2).await;
    store
        .write_dead_letters("p", &[failed(&events[0], "once")])
        .await
        .expect("store");
    store
        .write_dead_letters("p", &[resolved(&events[0], ResolutionKind::Retried)])
        .await
        .expect("store");
    // Resolving an event with no letter writes nothing.
    store
        .write_dead_letters("p", &[resolved(&events[1], ResolutionKind::Retried)])
        .await
        .expect("store");
    store
        .write_dead_letters("p", &[failed(&events[0], "again")])
        .await
        .expect("store");

    let all = store
        .dead_letters("p", &DeadLetterQuery::all())
        .await
        .expect("store");
    assert_eq!(all.len(), 1);
    assert!(all[0].is_pending());
    assert_eq!(all[0].attempts, 2);
    assert_eq!(all[0].error, "again");
    assert_eq!(
        store
            .dead_letters("p", &DeadLetterQuery::pending())
            .await
            .expect("store")
            .len(),
        1
    );
}

/// Letters are listed in position order, a page after a position, and by stream.
pub async fn letters_are_paged_in_position_order_and_filtered_by_stream<S: EventStore>(store: S) {
    let a = recorded(&store, "a", 3).await;
    let b = recorded(&store, "b", 2).await;
    // Written out of order, across two calls.
    store
        .write_dead_letters("p", &[failed(&b[1], "b2"), failed(&a[2], "a3")])
        .await
        .expect("store");
    store
        .write_dead_letters(
            "p",
            &[
                failed(&a[0], "a1"),
                failed(&b[0], "b1"),
                failed(&a[1], "a2"),
            ],
        )
        .await
        .expect("store");
    let order: Vec<Position> = a.iter().chain(&b).map(|e| e.position).collect();

    let mut paged = Vec::new();
    let mut after = Position::ZERO;
    loop {
        let page = store
            .dead_letters("p", &DeadLetterQuery::pending().after(after).limit(2))
            .await
            .expect("store");
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.event.position;
        paged.extend(positions(&page));
    }
    assert_eq!(paged, order);

    let only_b = store
        .dead_letters("p", &DeadLetterQuery::all().stream(StreamId::new("b")))
        .await
        .expect("store");
    assert_eq!(positions(&only_b), vec![b[0].position, b[1].position]);
    assert!(only_b.iter().all(|l| l.event.stream.as_str() == "b"));
    let b_after_first = store
        .dead_letters(
            "p",
            &DeadLetterQuery::all()
                .stream(StreamId::new("b"))
                .after(b[0].position),
        )
        .await
        .expect("store");
    assert_eq!(positions(&b_after_first), vec![b[1].position]);
}

/// A NUL in an error text is refused, and nothing of the call is written.
pub async fn a_nul_in_an_error_is_refused_and_nothing_of_the_call_is_written<S: EventStore>(
    store: S,
) {
    let events = recorded(&store, "s", 2).await;
    let err = store
        .write_dead_letters(
            "p",
            &[failed(&events[0], "fine"), failed(&events[1], "bad\0text")],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InvalidRequest(_)),
        "expected an invalid request, got {err:?}"
    );
    let all = store
        .dead_letters("p", &DeadLetterQuery::all())
        .await
        .expect("store");
    assert!(all.is_empty(), "nothing written: {all:?}");
    // The read's input is checked too.
    let err = store
        .dead_letters("p", &DeadLetterQuery::all().stream(StreamId::new("a\0b")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidRequest(_)), "{err:?}");
}

/// The letters of two projections are separate.
pub async fn the_letters_of_two_projections_are_separate<S: EventStore>(store: S) {
    let events = recorded(&store, "s", 2).await;
    store
        .write_dead_letters("p", &[failed(&events[0], "p0")])
        .await
        .expect("store");
    store
        .write_dead_letters("q", &[failed(&events[0], "q0"), failed(&events[1], "q1")])
        .await
        .expect("store");
    store
        .write_dead_letters("q", &[resolved(&events[0], ResolutionKind::Discarded)])
        .await
        .expect("store");

    let p = store
        .dead_letters("p", &DeadLetterQuery::all())
        .await
        .expect("store");
    assert_eq!(positions(&p), vec![events[0].position]);
    assert_eq!((p[0].attempts, p[0].error.as_str()), (1, "p0"));
    assert!(p[0].is_pending());
    assert!(p.iter().all(|l| l.projection == "p"));
    let q = store
        .dead_letters("q", &DeadLetterQuery::pending())
        .await
        .expect("store");
    assert_eq!(positions(&q), vec![events[1].position]);
    assert!(q.iter().all(|l| l.projection == "q"));
    assert!(
        store
            .dead_letters("r", &DeadLetterQuery::all())
            .await
            .expect("store")
            .is_empty()
    );
}

/// What a letter says, beside its times: position, reason, error, attempts, resolution.
type Summary = (
    Position,
    DeadLetterReason,
    String,
    u32,
    Option<ResolutionKind>,
);

fn summary(l: &DeadLetter) -> Summary {
    (
        l.event.position,
        l.reason,
        l.error.clone(),
        l.attempts,
        l.resolution.map(|r| r.kind),
    )
}

/// One call with the same event many times applies its changes in order, as the in-memory store does.
pub async fn one_call_with_the_same_event_many_times_applies_its_changes_in_order<S: EventStore>(
    store: S,
) {
    let memory = InMemoryStore::new();
    let e = recorded(&store, "s", 4).await;
    let calls = vec![
        // Two failures of one event in one call, and a resolution between failures.
        vec![
            failed(&e[0], "a"),
            failed(&e[0], "b"),
            failed(&e[1], "c"),
            resolved(&e[1], ResolutionKind::Retried),
            failed(&e[1], "d"),
            failed(&e[2], "e"),
            resolved(&e[2], ResolutionKind::Discarded),
            resolved(&e[2], ResolutionKind::Retried),
        ],
        // Resolutions alone, of pending, resolved and absent letters, then a failure
        // after a resolution of one that existed.
        vec![
            resolved(&e[0], ResolutionKind::Discarded),
            resolved(&e[0], ResolutionKind::Retried),
            resolved(&e[2], ResolutionKind::Retried),
            resolved(&e[3], ResolutionKind::Retried),
            resolved(&e[1], ResolutionKind::Retried),
            failed(&e[1], "f"),
        ],
        vec![],
    ];
    for changes in &calls {
        store.write_dead_letters("p", changes).await.expect("store");
        memory
            .write_dead_letters("p", changes)
            .await
            .expect("store");
        let pg = store
            .dead_letters("p", &DeadLetterQuery::all())
            .await
            .expect("store");
        let mem = memory
            .dead_letters("p", &DeadLetterQuery::all())
            .await
            .expect("store");
        assert_eq!(
            pg.iter().map(summary).collect::<Vec<_>>(),
            mem.iter().map(summary).collect::<Vec<_>>(),
            "after {changes:?}"
        );
    }
}
