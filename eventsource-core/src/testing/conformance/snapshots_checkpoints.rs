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

/// `read_stream_from_snapshot` hands out what `load_snapshot` and then `read_stream_for_fold`
/// from the snapshot's version read, for every bound: the snapshot first, exactly once, then
/// the events from its version on (from version 1 without one). A snapshot ahead of its
/// stream comes alone; one at version zero counts as none; nothing is checked or left out.
pub async fn snapshot_and_tail_reads_agree_with_their_two_reads<S: EventStore>(store: S) {
    use futures::TryStreamExt;

    use super::support::{added, read, write};
    use crate::envelope::{FoldEvent, FoldItem};
    use crate::ids::ExpectedVersion;

    for i in 0..4 {
        store
            .append(vec![write(
                "tail",
                ExpectedVersion::Any,
                vec![added(i), added(10 + i)],
            )])
            .await
            .expect("append");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let events = read(&store, "tail").await;
    assert_eq!(events.len(), 8);
    let at = |stream: &str, version: u64, schema_version: u32| {
        let event = usize::try_from(version)
            .ok()
            .and_then(|v| v.checked_sub(1))
            .and_then(|i| events.get(i));
        Snapshot {
            stream: StreamId::new(stream),
            version: Version::new(version),
            position: event.map_or(Position::new(1, version), |e| e.position),
            event_recorded_at: event.map_or_else(Utc::now, |e| e.recorded_at),
            schema_version,
            payload: Bytes::from(format!("{{\"v\":{version}}}")),
        }
    };
    for s in [
        at("tail", 3, 1),
        at("tail", 6, 1),
        at("tail", 5, 2),
        at("tail", 20, 3),
        at("tail", 0, 4),
        at("bare", 2, 1),
    ] {
        store.save_snapshot(s).await.expect("save");
    }
    // Versions 3 and 4 were appended together, 5 and 6 later.
    let middle = events[3].recorded_at;
    let cases = [
        ("tail", 1, ReadUntil::End, Some(6), &[6_u64, 7, 8][..]),
        (
            "tail",
            1,
            ReadUntil::Version(Version::new(5)),
            Some(3),
            &[3, 4, 5][..],
        ),
        (
            "tail",
            1,
            ReadUntil::Version(Version::new(2)),
            None,
            &[1, 2][..],
        ),
        ("tail", 1, ReadUntil::Time(middle), Some(3), &[3, 4][..]),
        ("tail", 2, ReadUntil::End, Some(5), &[5, 6, 7, 8][..]),
        ("tail", 3, ReadUntil::End, Some(20), &[][..]),
        (
            "tail",
            4,
            ReadUntil::End,
            None,
            &[1, 2, 3, 4, 5, 6, 7, 8][..],
        ),
        (
            "tail",
            9,
            ReadUntil::End,
            None,
            &[1, 2, 3, 4, 5, 6, 7, 8][..],
        ),
        ("bare", 1, ReadUntil::End, Some(2), &[][..]),
        ("nothing", 1, ReadUntil::End, None, &[][..]),
    ];
    for (name, schema_version, until, snapshot_version, versions) in cases {
        let stream = StreamId::new(name);
        let what = format!("{name}, schema version {schema_version}, until {until:?}");
        let snapshot = store
            .load_snapshot(&stream, schema_version, until)
            .await
            .expect("load_snapshot")
            .filter(|s| s.version > Version::ZERO);
        let from = snapshot.as_ref().map_or(Version::FIRST, |s| s.version);
        let tail: Vec<FoldEvent> = store
            .read_stream_for_fold(&stream, from, until)
            .try_collect()
            .await
            .expect("read_stream_for_fold");
        let mut expected = vec![FoldItem::Snapshot(snapshot)];
        expected.extend(tail.into_iter().map(FoldItem::Event));
        let got: Vec<FoldItem> = store
            .read_stream_from_snapshot(&stream, schema_version, until)
            .try_collect()
            .await
            .expect("read_stream_from_snapshot");
        assert_eq!(got, expected, "{what}");
        let FoldItem::Snapshot(first) = &got[0] else {
            panic!("{what}: the snapshot does not come first");
        };
        assert_eq!(
            first.as_ref().map(|s| s.version.get()),
            snapshot_version,
            "{what}"
        );
        let got_versions: Vec<u64> = got[1..]
            .iter()
            .map(|item| match item {
                FoldItem::Event(e) => e.version.get(),
                FoldItem::Snapshot(_) => panic!("{what}: a second snapshot"),
            })
            .collect();
        assert_eq!(got_versions, versions, "{what}");
    }
}
