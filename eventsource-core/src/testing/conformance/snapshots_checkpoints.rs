//! What a store keeps beside the log: snapshots and projection checkpoints.

use bytes::Bytes;
use chrono::Utc;

use super::support::snapshot;
use crate::envelope::Snapshot;
use crate::ids::{Position, StreamId, Version};
use crate::store::{EventStore, ReadUntil};

/// `load_snapshot` returns the newest snapshot of the asked schema version within the bound.
pub async fn snapshots_are_selected_by_schema_version_and_bound<S: EventStore>(store: S) {
    let stream = StreamId::new("s");
    assert!(
        store
            .load_snapshot(&stream, 1, ReadUntil::End)
            .await
            .expect("load")
            .is_none()
    );
    let t0 = Utc::now() - chrono::Duration::minutes(10);
    let t = |m| t0 + chrono::Duration::minutes(m);
    for s in [
        snapshot(3, 1, t(1)),
        snapshot(5, 1, t(2)),
        snapshot(7, 2, t(3)),
    ] {
        store.save_snapshot(s).await.expect("save");
    }
    let v = |s: Option<Snapshot>| s.map(|s| s.version.get());
    assert_eq!(
        v(store
            .load_snapshot(&stream, 1, ReadUntil::End)
            .await
            .expect("load")),
        Some(5)
    );
    assert_eq!(
        v(store
            .load_snapshot(&stream, 2, ReadUntil::End)
            .await
            .expect("load")),
        Some(7)
    );
    assert_eq!(
        v(store
            .load_snapshot(&stream, 3, ReadUntil::End)
            .await
            .expect("load")),
        None
    );
    let until4 = ReadUntil::Version(Version::new(4));
    assert_eq!(
        v(store.load_snapshot(&stream, 1, until4).await.expect("load")),
        Some(3)
    );
    assert_eq!(
        v(store.load_snapshot(&stream, 2, until4).await.expect("load")),
        None
    );
    let at = ReadUntil::Time(t(1) + chrono::Duration::seconds(30));
    assert_eq!(
        v(store.load_snapshot(&stream, 1, at).await.expect("load")),
        Some(3)
    );
    let got = store
        .load_snapshot(&stream, 1, ReadUntil::End)
        .await
        .expect("load")
        .expect("some");
    assert_eq!(got, snapshot(5, 1, t(2)), "a snapshot round-trips");
    let mut replaced = snapshot(5, 1, t(2));
    replaced.payload = Bytes::from_static(b"{\"v\":\"new\"}");
    store
        .save_snapshot(replaced.clone())
        .await
        .expect("replace");
    assert_eq!(
        store
            .load_snapshot(&stream, 1, ReadUntil::End)
            .await
            .expect("load"),
        Some(replaced)
    );
}

/// Checkpoints are absent until saved, then read back, then overwritten.
pub async fn checkpoints_round_trip<S: EventStore>(store: S) {
    assert_eq!(store.load_checkpoint("p").await.expect("load"), None);
    store
        .save_checkpoint("p", Position::new(3, 9))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("p").await.expect("load"),
        Some(Position::new(3, 9))
    );
    store
        .save_checkpoint("p", Position::new(4, 1))
        .await
        .expect("save");
    assert_eq!(
        store.load_checkpoint("p").await.expect("load"),
        Some(Position::new(4, 1))
    );
    assert_eq!(
        store.load_checkpoint("q").await.expect("load"),
        None,
        "names are separate"
    );
}
