//! A hash map with a hard bound on entries. When full, inserting evicts the least recently
//! touched of a small sample of entries (sampled LRU, as Redis does): O(1) memory overhead, no
//! linked list, and each eviction is counted by the caller (R-THR: eviction counted).
use std::collections::HashMap;

use foldhash::fast::RandomState;

/// Entries sampled per eviction.
const SAMPLE: usize = 8;

/// Values that know when they were last touched (µs stream time).
pub(crate) trait Touched {
    fn last_us(&self) -> u64;
}

/// Bounded map keyed by 64-bit keyed hashes.
#[derive(Debug)]
pub(crate) struct BoundedMap<V> {
    map: HashMap<u64, V, RandomState>,
    cap: usize,
    /// Entries evicted because the map was full.
    pub evicted: u64,
    /// Entries expired by [`BoundedMap::expire`].
    pub expired: u64,
    cursor: u64,
}

impl<V: Touched> BoundedMap<V> {
    pub(crate) fn new(cap: usize) -> Self {
        BoundedMap {
            map: HashMap::with_hasher(RandomState::default()),
            cap: cap.max(1),
            evicted: 0,
            expired: 0,
            cursor: 0,
        }
    }

    pub(crate) fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        self.map.get_mut(&k)
    }

    pub(crate) fn get(&self, k: u64) -> Option<&V> {
        self.map.get(&k)
    }

    /// The entry for `k`, created with `make` (evicting first when full).
    pub(crate) fn entry(&mut self, k: u64, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            self.evict_one();
        }
        self.map.entry(k).or_insert_with(make)
    }

    fn evict_one(&mut self) {
        // Sample a window of entries starting at a rotating offset; evict the oldest.
        let len = self.map.len();
        if len == 0 {
            return;
        }
        self.cursor = self.cursor.wrapping_add(0x9E37_79B9);
        // Bounded scan cost: the offset stays within the first 256 buckets' entries (hash order
        // is independent of age; stale entries are also removed by `expire` at each tick).
        let skip = (self.cursor as usize) % len.min(256);
        let skip = skip.min(len.saturating_sub(SAMPLE));
        let victim = self
            .map
            .iter()
            .skip(skip)
            .take(SAMPLE)
            .min_by_key(|(_, v)| v.last_us())
            .map(|(k, _)| *k);
        if let Some(k) = victim {
            self.map.remove(&k);
            self.evicted += 1;
        }
    }

    /// Removes entries untouched since `before_us`.
    pub(crate) fn expire(&mut self, before_us: u64) {
        let n = self.map.len();
        self.map.retain(|_, v| v.last_us() >= before_us);
        self.expired += (n - self.map.len()) as u64;
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }

    /// Bytes of the table itself (buckets × (key + value) + control bytes), by capacity.
    pub(crate) fn table_bytes(&self) -> usize {
        self.map.capacity() * (std::mem::size_of::<(u64, V)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(u64);
    impl Touched for T {
        fn last_us(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn bound_holds_and_evictions_are_counted() {
        let mut m = BoundedMap::new(100);
        for i in 0..1_000u64 {
            m.entry(i, || T(i));
        }
        assert_eq!(m.len(), 100);
        assert_eq!(m.evicted, 900);
        // Sampled LRU keeps mostly recent entries.
        let recent = m.values().filter(|t| t.0 >= 500).count();
        assert!(recent > 50, "{recent}");
        m.expire(990);
        assert!(m.len() <= 10);
        assert!(m.expired >= 90);
        assert!(m.table_bytes() > 0);
    }
}
