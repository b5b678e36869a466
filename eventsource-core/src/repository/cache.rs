//! The repository's state cache (see [`Repository::with_cache`](super::Repository::with_cache)):
//! the folded state of recently used aggregates, least recently used out first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;

use super::Loaded;
use crate::ids::{Position, StreamId, Version};

/// A cached state; shared, so that copying it out happens outside the lock.
struct Slot<A> {
    state: Arc<A>,
    version: Version,
    position: Position,
    /// Its key in `Lru::order`.
    used: u64,
}

struct Lru<A> {
    slots: HashMap<StreamId, Slot<A>>,
    /// Streams by last use, oldest first.
    order: BTreeMap<u64, StreamId>,
    clock: u64,
}

/// At most `capacity` states, shared by a repository and its clones. Its lock is never held
/// across an await.
pub(super) struct StateCache<A> {
    capacity: usize,
    /// `A: Clone`, captured where the cache was made: the repository itself does not need it.
    clone: fn(&A) -> A,
    lru: Mutex<Lru<A>>,
}

impl<A> StateCache<A> {
    pub(super) fn new(capacity: usize, clone: fn(&A) -> A) -> Self {
        Self {
            capacity,
            clone,
            lru: Mutex::new(Lru {
                slots: HashMap::new(),
                order: BTreeMap::new(),
                clock: 0,
            }),
        }
    }

    /// A copy of the state cached for `stream`, marked as just used.
    pub(super) fn get(&self, stream: &StreamId) -> Option<Loaded<A>> {
        let (state, version, position) = {
            let mut lru = self.lru.lock();
            let lru = &mut *lru;
            let slot = lru.slots.get_mut(stream)?;
            lru.clock += 1;
            lru.order.remove(&slot.used);
            slot.used = lru.clock;
            lru.order.insert(slot.used, stream.clone());
            (Arc::clone(&slot.state), slot.version, slot.position)
        };
        Some(Loaded {
            state: (self.clone)(&state),
            version,
            position,
        })
    }

    /// Keeps a copy of `loaded` for `stream`, unless a newer version is cached already (a
    /// concurrent command of a clone may have put it); evicts the least recently used state
    /// when full.
    pub(super) fn put(&self, stream: &StreamId, loaded: &Loaded<A>) {
        if self.capacity == 0 {
            return;
        }
        let state = Arc::new((self.clone)(&loaded.state));
        let (version, position) = (loaded.version, loaded.position);
        let mut lru = self.lru.lock();
        let lru = &mut *lru;
        lru.clock += 1;
        let used = lru.clock;
        if let Some(slot) = lru.slots.get_mut(stream) {
            if slot.version <= version {
                (slot.state, slot.version, slot.position) = (state, version, position);
            }
            lru.order.remove(&slot.used);
            slot.used = used;
            lru.order.insert(used, stream.clone());
            return;
        }
        while lru.slots.len() >= self.capacity {
            let Some((_, oldest)) = lru.order.pop_first() else {
                break;
            };
            lru.slots.remove(&oldest);
        }
        lru.order.insert(used, stream.clone());
        let slot = Slot {
            state,
            version,
            position,
            used,
        };
        lru.slots.insert(stream.clone(), slot);
    }

    /// Forgets the state of `stream`.
    pub(super) fn remove(&self, stream: &StreamId) {
        let mut lru = self.lru.lock();
        if let Some(slot) = lru.slots.remove(stream) {
            lru.order.remove(&slot.used);
        }
    }

    /// Forgets every state.
    pub(super) fn clear(&self) {
        let mut lru = self.lru.lock();
        lru.slots.clear();
        lru.order.clear();
    }

    /// How many states are cached.
    pub(super) fn len(&self) -> usize {
        self.lru.lock().slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(state: u32, version: u64) -> Loaded<u32> {
        Loaded {
            state,
            version: Version::new(version),
            position: Position::ZERO,
        }
    }

    fn version_of(cache: &StateCache<u32>, stream: &str) -> Option<u64> {
        cache.get(&StreamId::new(stream)).map(|c| c.version.get())
    }

    #[test]
    fn the_least_recently_used_state_goes_first() {
        let cache = StateCache::new(2, u32::clone);
        cache.put(&StreamId::new("a"), &loaded(1, 1));
        cache.put(&StreamId::new("b"), &loaded(2, 1));
        assert_eq!(version_of(&cache, "a"), Some(1)); // a is now the most recent
        cache.put(&StreamId::new("c"), &loaded(3, 1));
        assert_eq!(cache.len(), 2);
        assert_eq!(
            version_of(&cache, "b"),
            None,
            "b was the least recently used"
        );
        assert_eq!(version_of(&cache, "a"), Some(1));
        assert_eq!(version_of(&cache, "c"), Some(1));
    }

    #[test]
    fn putting_a_state_again_makes_it_the_most_recent() {
        let cache = StateCache::new(2, u32::clone);
        cache.put(&StreamId::new("a"), &loaded(1, 1));
        cache.put(&StreamId::new("b"), &loaded(2, 1));
        cache.put(&StreamId::new("a"), &loaded(1, 2));
        cache.put(&StreamId::new("c"), &loaded(3, 1));
        assert_eq!(
            version_of(&cache, "b"),
            None,
            "b was the least recently used"
        );
        assert_eq!(version_of(&cache, "a"), Some(2));
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = StateCache::new(4, u32::clone);
        let a = StreamId::new("a");
        cache.put(&a, &loaded(5, 5));
        cache.put(&a, &loaded(3, 3));
        let got = cache.get(&a).map(|c| (c.state, c.version.get()));
        assert_eq!(got, Some((5, 5)));
        cache.put(&a, &loaded(6, 6));
        let got = cache.get(&a).map(|c| (c.state, c.version.get()));
        assert_eq!(got, Some((6, 6)));
    }

    #[test]
    fn removed_and_cleared_states_are_gone_and_zero_capacity_keeps_nothing() {
        let cache = StateCache::new(4, u32::clone);
        cache.put(&StreamId::new("a"), &loaded(1, 1));
        cache.put(&StreamId::new("b"), &loaded(1, 1));
        cache.remove(&StreamId::new("a"));
        assert_eq!(version_of(&cache, "a"), None);
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert_eq!(cache.len(), 0);
        let none = StateCache::new(0, u32::clone);
        none.put(&StreamId::new("a"), &loaded(1, 1));
        assert_eq!(none.len(), 0);
    }
}
