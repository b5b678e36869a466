//! What a store is handed: malformed appends, the string limits, and odd payloads, metadata and
//! stream ids that round-trip.

use bytes::Bytes;
use chrono::Utc;
use futures::TryStreamExt;

use super::support::{added, read, snapshot, write};
use crate::envelope::NewEvent;
use crate::error::StoreError;
use crate::ids::{ExpectedVersion, Position, StreamId, Version};
use crate::metadata::Metadata;
use crate::store::{EventStore, ReadUntil};

/// `count` random characters of four UTF-8 bytes each: text that does not compress.
fn wide_text(count: usize) -> String {
    (0..count)
        .map(|_| char::from_u32(fastrand::u32(0x1F300..0x1F5FF)).unwrap_or('x'))
        .collect()
}

/// The strings a store is handed obey the limits of [`crate::store::input`] on every store:
/// a NUL character, an empty name or one over 2,048 bytes (stream ids, type names, checkpoint
/// names, metadata header names) and a header value over 64 KiB are `InvalidRequest` on every
/// call that takes them, and write nothing; the longest valid ones, which do not compress,
/// round-trip.
pub async fn strings_outside_the_limits_are_rejected_alike_and_those_inside_round_trip<
    S: EventStore,
>(
    store: S,
) {
    use crate::store::input::{MAX_HEADER_VALUE_BYTES, MAX_NAME_BYTES};
    fn rejected<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
        assert!(
            matches!(result, Err(StoreError::InvalidRequest(_))),
            "{what}: expected InvalidRequest, got {result:?}"
        );
    }
    let too_long = StreamId::new(wide_text(MAX_NAME_BYTES / 4) + "x");
    let with_nul = StreamId::new("a\0b");
    for bad in [&too_long, &with_nul] {
        rejected(
            "append",
            store
                .append(vec![write(
                    bad.as_str(),
                    ExpectedVersion::Any,
                    vec![added(1)],
                )])
                .await,
        );
        rejected(
            "read_stream",
            store
                .read_stream(bad, Version::FIRST, ReadUntil::End)
                .try_collect::<Vec<_>>()
                .await,
        );
        rejected(
            "read_stream_for_fold",
            store
                .read_stream_for_fold(bad, Version::FIRST, ReadUntil::End)
                .try_collect::<Vec<_>>()
                .await,
        );
        rejected("stream_version", store.stream_version(bad).await);
        rejected(
            "lock_streams",
            store.lock_streams(std::slice::from_ref(bad)).await,
        );
        rejected(
            "load_snapshot",
            store.load_snapshot(bad, 1, ReadUntil::End).await,
        );
        let mut snap = snapshot(1, 1, Utc::now());
        snap.stream = bad.clone();
        rejected("save_snapshot", store.save_snapshot(snap).await);
        rejected("load_checkpoint", store.load_checkpoint(bad.as_str()).await);
        rejected(
            "save_checkpoint",
            store.save_checkpoint(bad.as_str(), Position::ZERO).await,
        );
        rejected(
            "read_all types",
            store
                .read_all(Position::ZERO, 10, Some(&[bad.as_str()]))
                .await,
        );
        rejected(
            "read_all_pages types",
            store
                .read_all_pages(Position::ZERO, 10, Some(&[bad.as_str()]))
                .try_collect::<Vec<_>>()
                .await,
        );
    }
    let mut bad_events = Vec::new();
    for ty in ["", "t\0", &"t".repeat(MAX_NAME_BYTES + 1)] {
        bad_events.push(NewEvent::new(ty, 1, Bytes::from_static(b"{}")));
    }
    let header = |name: &str, value: String| {
        let mut e = added(1);
        e.metadata = Metadata::new().with_header(name, value);
        e
    };
    bad_events.push(header("user\0", "x".into()));
    bad_events.push(header("", "x".into()));
    bad_events.push(header("user", "a\0b".into()));
    bad_events.push(header("user", "v".repeat(MAX_HEADER_VALUE_BYTES + 1)));
    bad_events.push(header(&"h".repeat(MAX_NAME_BYTES + 1), "x".into()));
    for e in bad_events {
        let shown = format!("{:?}", e.event_type.chars().take(10).collect::<String>());
        rejected(
            &format!("append of type {shown}"),
            store
                .append(vec![write("s", ExpectedVersion::Any, vec![added(1), e])])
                .await,
        );
    }
    assert_eq!(
        store.head().await.expect("head"),
        Position::ZERO,
        "nothing written"
    );

    // The longest valid strings, which do not compress.
    let longest = StreamId::new(wide_text(MAX_NAME_BYTES / 4));
    assert_eq!(longest.as_str().len(), MAX_NAME_BYTES);
    let ty = wide_text(MAX_NAME_BYTES / 4);
    let mut event = NewEvent::new(ty.clone(), 1, Bytes::from_static(b"{}"));
    event.metadata = Metadata::new()
        .with_header(
            wide_text(MAX_NAME_BYTES / 4),
            "v".repeat(MAX_HEADER_VALUE_BYTES),
        )
        .with_header("empty", "");
    store
        .append(vec![write(
            longest.as_str(),
            ExpectedVersion::NoStream,
            vec![event.clone()],
        )])
        .await
        .expect("the longest valid strings are stored");
    let got = read(&store, longest.as_str()).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        (got[0].event_type.as_str(), &got[0].metadata),
        (ty.as_str(), &event.metadata)
    );
    assert_eq!(
        store.stream_version(&longest).await.expect("version"),
        Version::FIRST
    );
    let page = store
        .read_all(Position::ZERO, 10, Some(&[ty.as_str()]))
        .await
        .expect("read_all");
    assert_eq!(page.events.len(), 1);
    let mut snap = snapshot(1, 1, got[0].recorded_at);
    snap.stream = longest.clone();
    snap.position = got[0].position;
    store.save_snapshot(snap).await.expect("save_snapshot");
    assert!(
        store
            .load_snapshot(&longest, 1, ReadUntil::End)
            .await
            .expect("load_snapshot")
            .is_some()
    );
    let lock = store
        .lock_streams(std::slice::from_ref(&longest))
        .await
        .expect("lock");
    lock.release().await.expect("release");
    let checkpoint = wide_text(MAX_NAME_BYTES / 4);
    store
        .save_checkpoint(&checkpoint, got[0].position)
        .await
        .expect("save_checkpoint");
    assert_eq!(
        store
            .load_checkpoint(&checkpoint)
            .await
            .expect("load_checkpoint"),
        Some(got[0].position)
    );
}

/// Malformed requests are typed errors and write nothing.
pub async fn malformed_appends_are_rejected_and_write_nothing<S: EventStore>(store: S) {
    let empty_id = store
        .append(vec![write("", ExpectedVersion::Any, vec![added(1)])])
        .await;
    assert!(
        matches!(empty_id, Err(StoreError::InvalidRequest(_))),
        "got {empty_id:?}"
    );
    let twice = store
        .append(vec![
            write("s", ExpectedVersion::Any, vec![added(1)]),
            write("s", ExpectedVersion::Any, vec![added(2)]),
        ])
        .await;
    assert!(
        matches!(twice, Err(StoreError::InvalidRequest(_))),
        "got {twice:?}"
    );
    let e = added(1);
    let same_id = store
        .append(vec![write("s", ExpectedVersion::Any, vec![e.clone(), e])])
        .await;
    assert!(
        matches!(same_id, Err(StoreError::InvalidRequest(_))),
        "got {same_id:?}"
    );
    assert_eq!(store.head().await.expect("head"), Position::ZERO);
}

/// Payloads come back byte for byte; metadata and stream ids with quotes and unicode survive.
pub async fn payload_metadata_and_odd_stream_ids_round_trip<S: EventStore>(store: S) {
    let stream = "order-'; DROP TABLE events; --\"ü€😀";
    let payload = Bytes::from_static("{\"note\":\"it's \\\"quoted\\\" ü€😀\",\"n\":1}".as_bytes());
    let metadata = Metadata::new()
        .with_correlation_id(uuid::Uuid::new_v4())
        .with_causation_id(uuid::Uuid::new_v4())
        .with_header("tenant", "acme ü");
    let e = NewEvent::new("odd.event", 3, payload.clone()).with_metadata(metadata.clone());
    store
        .append(vec![write(
            stream,
            ExpectedVersion::NoStream,
            vec![e.clone()],
        )])
        .await
        .expect("append");
    let got = read(&store, stream).await;
    assert_eq!(got.len(), 1);
    let got = &got[0];
    assert_eq!(got.stream.as_str(), stream);
    assert_eq!(got.id, e.id);
    assert_eq!(got.event_type, "odd.event");
    assert_eq!(got.schema_version, 3);
    assert_eq!(got.payload, payload);
    assert_eq!(got.metadata, metadata);
    let age = Utc::now() - got.recorded_at;
    assert!(
        age < chrono::Duration::minutes(5) && age > chrono::Duration::minutes(-5),
        "recorded_at is now"
    );
}
