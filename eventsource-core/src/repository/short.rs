//! The streams a repository last saw shorter than `A::SNAPSHOT_EVERY`: no snapshot is due on
//! them, so their loads fold from the start without asking the store for one (see
//! `load.rs: load_short`). A hint only, never the authority: a stream that grew elsewhere
//! meanwhile costs one fold of at most the interval's events before the load asks for its
//! snapshot, and is then known again.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{StreamId, Version};

/// How many streams the table can tell apart: a fixed 32 KiB, whatever the number of streams.
const SLOTS: u64 = 4096;

/// A direct-mapped table of stream hashes: a slot holds the 64-bit hash of the one stream it
/// says is short, with its low bit set (so no hash is the empty slot's 0); the hash's low bits
/// pick the slot. Two streams on one slot evict each other, which only costs a snapshot
/// lookup; a stream is taken for short only when its whole hash matches. Shared by a
/// repository and its clones, without a lock; made on the first stream seen short, so a
/// repository that never sees one costs nothing.
pub(super) struct ShortStreams {
    every: u64,
    slots: OnceLock<Box<[AtomicU64]>>,
    hasher: RandomState,
}

impl ShortStreams {
    /// The table for snapshots every `every` events.
    pub(super) fn new(every: u64) -> Self {
        Self {
            every,
            slots: OnceLock::new(),
            hasher: RandomState::new(),
        }
    }

    /// The snapshot interval.
    pub(super) fn every(&self) -> u64 {
        self.every
    }

    /// `stream`'s slot in `slots`, and the value that marks it there.
    fn slot<'s>(&self, slots: &'s [AtomicU64], stream: &StreamId) -> Option<(&'s AtomicU64, u64)> {
        let hash = self.hasher.hash_one(stream.as_str());
        let at = usize::try_from(hash % SLOTS).ok()?;
        Some((slots.get(at)?, hash | 1))
    }

    /// Whether `stream` was shorter than the interval when last seen.
    pub(super) fn is_short(&self, stream: &StreamId) -> bool {
        self.slots
            .get()
            .and_then(|slots| self.slot(slots, stream))
            .is_some_and(|(slot, tag)| slot.load(Ordering::Relaxed) == tag)
    }

    /// `stream` is at `version` (loaded to its end, or just committed), or at least there.
    pub(super) fn saw(&self, stream: &StreamId, version: Version) {
        if version.get() < self.every {
            let slots = self
                .slots
                .get_or_init(|| (0..SLOTS).map(|_| AtomicU64::new(0)).collect());
            if let Some((slot, tag)) = self.slot(slots, stream) {
                slot.store(tag, Ordering::Relaxed);
            }
        } else if let Some((slot, tag)) = self.slots.get().and_then(|s| self.slot(s, stream)) {
            // Only its own mark: another stream's on the same slot stays.
            let _ = slot.compare_exchange(tag, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_short_from_a_version_below_the_interval_until_one_at_it() {
        let short = ShortStreams::new(100);
        let (a, b) = (StreamId::new("a"), StreamId::new("b"));
        assert!(!short.is_short(&a));
        short.saw(&a, Version::new(99));
        assert!(short.is_short(&a));
        assert!(!short.is_short(&b));
        short.saw(&b, Version::new(100));
        assert!(short.is_short(&a) && !short.is_short(&b));
        short.saw(&a, Version::new(100));
        assert!(!short.is_short(&a));
    }

    #[test]
    fn streams_on_one_slot_never_pass_for_each_other() {
        let short = ShortStreams::new(100);
        let streams: Vec<StreamId> = (0..3 * SLOTS as usize)
            .map(|i| StreamId::new(format!("s-{i}")))
            .collect();
        for s in &streams {
            short.saw(s, Version::new(1));
        }
        // More streams than slots: every slot holds at most one of them, the last it saw.
        let held = streams.iter().filter(|s| short.is_short(s)).count();
        assert!(
            held <= SLOTS as usize && held > SLOTS as usize / 2,
            "{held}"
        );
        for s in &streams {
            short.saw(s, Version::new(100));
        }
        assert!(streams.iter().all(|s| !short.is_short(s)));
    }
}
