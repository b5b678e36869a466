//! The streams a repository last saw shorter than `A::SNAPSHOT_EVERY`: no snapshot is due on
//! them, so their loads fold from the start without asking the store for one (see
//! `load.rs`). A hint only, never the authority: a stream that grew elsewhere meanwhile is
//! folded from its start once, which gives the same state, and is then known again.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::ids::{StreamId, Version};

/// How many streams the table can tell apart: a fixed 32 KiB, whatever the number of streams.
const SLOTS: usize = 4096;

/// A direct-mapped table of stream hashes: a slot holds the full 64-bit hash of the one stream
/// it says is short (its low bit set, so no hash is the empty slot's 0). Two streams on one
/// slot evict each other, which only costs a snapshot lookup; a stream is taken for short
/// only when its full hash matches. Shared by a repository and its clones, without a lock.
pub(super) struct ShortStreams {
    every: u64,
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl ShortStreams {
    /// The table for snapshots every `every` events.
    pub(super) fn new(every: u64) -> Self {
        Self {
            every,
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    fn slot(&self, stream: &StreamId) -> Option<(&AtomicU64, u64)> {
        let hash = self.hasher.hash_one(stream.as_str());
        let at = usize::try_from(hash % SLOTS as u64).ok()?;
        Some((self.slots.get(at)?, hash | 1))
    }

    /// Whether `stream` was shorter than a snapshot's interval when last seen.
    pub(super) fn is_short(&self, stream: &StreamId) -> bool {
        self.slot(stream)
            .is_some_and(|(slot, tag)| slot.load(Ordering::Relaxed) == tag)
    }

    /// `stream` is at `version` (loaded to its end, or just committed).
    pub(super) fn saw(&self, stream: &StreamId, version: Version) {
        let Some((slot, tag)) = self.slot(stream) else {
            return;
        };
        if version.get() < self.every {
            slot.store(tag, Ordering::Relaxed);
        } else {
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
        let streams: Vec<StreamId> = (0..3 * SLOTS)
            .map(|i| StreamId::new(format!("s-{i}")))
            .collect();
        for s in &streams {
            short.saw(s, Version::new(1));
        }
        // More streams than slots: every slot holds at most one of them, the last it saw.
        let held = streams.iter().filter(|s| short.is_short(s)).count();
        assert!(held <= SLOTS && held > SLOTS / 2, "{held}");
        for s in &streams {
            short.saw(s, Version::new(100));
        }
        assert!(streams.iter().all(|s| !short.is_short(s)));
    }
}
