//! Idempotent appends: the same batch again, event ids reused with other content, partial
//! repeats.

use super::support::{added, assert_conflict, read, versions, write};
use crate::error::StoreError;
use crate::ids::{ExpectedVersion, Version};
use crate::store::EventStore;

/// Appending the same events again (same ids) writes nothing and returns the first commit.
pub async fn the_same_batch_again_returns_the_first_commit<S: EventStore>(store: S) {
    let batch = vec![added(1), added(2)];
    let first = store
        .append(vec![write("s", ExpectedVersion::NoStream, batch.clone())])
        .await
        .expect("append");
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![added(3)])])
        .await
        .expect("append");
    let again = store
        .append(vec![write("s", ExpectedVersion::NoStream, batch)])
        .await
        .expect("a repeat is not an error, even with a stale expected version");
    assert_eq!(again.streams, first.streams);
    assert_eq!(again.position, first.position);
    assert_eq!(again.first_position, first.first_position);
    assert_eq!(versions(&read(&store, "s").await), vec![1, 2, 3]);
}

/// An id already stored with another payload, or on another stream, is an error.
pub async fn a_reused_event_id_with_other_content_is_rejected<S: EventStore>(store: S) {
    let original = added(1);
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![original.clone()],
        )])
        .await
        .expect("append");
    let other_payload = added(2).with_id(original.id);
    match store
        .append(vec![write("s", ExpectedVersion::Any, vec![other_payload])])
        .await
    {
        Err(StoreError::EventIdReused {
            id, stored_stream, ..
        }) => {
            assert_eq!(id, original.id);
            assert_eq!(stored_stream.as_str(), "s");
        }
        other => panic!("expected EventIdReused, got {other:?}"),
    }
    let other_stream = original.clone();
    assert!(matches!(
        store
            .append(vec![write("t", ExpectedVersion::Any, vec![other_stream])])
            .await,
        Err(StoreError::EventIdReused { .. })
    ));
    assert_eq!(read(&store, "s").await.len(), 1);
    assert!(read(&store, "t").await.is_empty());
}

/// An append that repeats only some events of an earlier one is rejected and writes nothing.
pub async fn a_partial_repeat_is_rejected<S: EventStore>(store: S) {
    let first = added(1);
    store
        .append(vec![write("s", ExpectedVersion::Any, vec![first.clone()])])
        .await
        .expect("append");
    let result = store
        .append(vec![write(
            "s",
            ExpectedVersion::Any,
            vec![first, added(2)],
        )])
        .await;
    assert!(
        matches!(result, Err(StoreError::EventIdReused { .. })),
        "got {result:?}"
    );
    assert_eq!(read(&store, "s").await.len(), 1);
}

/// Appends at an exact version (what a repository sends) keep every promise the other
/// expectations keep: an expected version ahead of the stream is a conflict (never a gap), a
/// repeat at a stale version returns the first commit, and an id reused with other content
/// is rejected even when the version matches, for one event and for a batch.
pub async fn exact_appends_check_the_version_and_the_ids<S: EventStore>(store: S) {
    let first = added(1);
    let commit = store
        .append(vec![write(
            "s",
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )])
        .await
        .expect("append");
    store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(1)),
            vec![added(2)],
        )])
        .await
        .expect("append");
    let ahead = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(5)),
            vec![added(3)],
        )])
        .await;
    assert_conflict(ahead, "s", 2);
    let again = store
        .append(vec![write(
            "s",
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )])
        .await
        .expect("a repeat at a stale version returns the first commit");
    assert_eq!(again.position, commit.position);
    assert_eq!(again.streams, commit.streams);
    let reused = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(2)),
            vec![added(9).with_id(first.id)],
        )])
        .await;
    assert!(
        matches!(reused, Err(StoreError::EventIdReused { id, .. }) if id == first.id),
        "got {reused:?}"
    );
    let reused_in_batch = store
        .append(vec![write(
            "s",
            ExpectedVersion::Exact(Version::new(2)),
            vec![added(3), added(9).with_id(first.id)],
        )])
        .await;
    assert!(
        matches!(reused_in_batch, Err(StoreError::EventIdReused { .. })),
        "got {reused_in_batch:?}"
    );
    let on_other_stream = store
        .append(vec![write(
            "t",
            ExpectedVersion::NoStream,
            vec![first.clone()],
        )])
        .await;
    assert!(
        matches!(on_other_stream, Err(StoreError::EventIdReused { .. })),
        "got {on_other_stream:?}"
    );
    assert_eq!(versions(&read(&store, "s").await), vec![1, 2]);
    assert!(read(&store, "t").await.is_empty());
}
