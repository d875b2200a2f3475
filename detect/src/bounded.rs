//! A hash map with a hard bound on entries. When full, inserting evicts the least recently
//! touched of a small sample of entries (sampled LRU, as Redis does): O(1) memory overhead, no
//! linked list, and each eviction is counted by the caller (R-THR: eviction counted).
//!
//! Expiry is logical first, physical later: [`BoundedMap::expire`] only raises the map's
//! *horizon*, and an entry untouched since the horizon is gone for every accessor (a lookup
//! misses it, [`BoundedMap::entry`] replaces it with a fresh value) — what the detectors see is
//! the same as if it had been removed at once. The memory is reclaimed by a sweep of the whole
//! table, which runs only when it pays: once enough keys were inserted since the last sweep
//! to matter (an eighth of the table), before the table would grow or evict, or after
//! [`SWEEP_EVERY_US`] of stream time. Sweeping on every tick cost more than the events of a
//! second at moderate rates.
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use foldhash::fast::RandomState;

/// Entries sampled per eviction.
const SAMPLE: usize = 8;

/// Longest stream time between two sweeps of a table that has expired entries to reclaim.
pub(crate) const SWEEP_EVERY_US: u64 = 60 * 1_000_000;

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
    /// Entries expired (logically by [`BoundedMap::expire`]; counted when replaced or swept).
    pub expired: u64,
    cursor: u64,
    /// Entries whose `last_us()` is below this are expired (the latest `expire` bound).
    horizon: u64,
    /// Keys inserted since the last sweep.
    inserted: usize,
    /// Stream time (the `expire` bound) of the last sweep.
    swept_at: u64,
}

impl<V: Touched> BoundedMap<V> {
    pub(crate) fn new(cap: usize) -> Self {
        BoundedMap {
            map: HashMap::with_hasher(RandomState::default()),
            cap: cap.max(1),
            evicted: 0,
            expired: 0,
            cursor: 0,
            horizon: 0,
            inserted: 0,
            swept_at: 0,
        }
    }

    fn live(&self, v: &V) -> bool {
        v.last_us() >= self.horizon
    }

    pub(crate) fn get_mut(&mut self, k: u64) -> Option<&mut V> {
        let horizon = self.horizon;
        self.map.get_mut(&k).filter(|v| v.last_us() >= horizon)
    }

    pub(crate) fn get(&self, k: u64) -> Option<&V> {
        self.map.get(&k).filter(|v| self.live(v))
    }

    /// The entry for `k`, created with `make` (evicting first when full). One hash lookup in
    /// the common case.
    pub(crate) fn entry(&mut self, k: u64, make: impl FnOnce() -> V) -> &mut V {
        let len = self.map.len();
        // Inserting a new key into a full (or about to grow) table: reclaim expired entries
        // first, then evict if still full.
        if (len >= self.cap || len >= self.map.capacity()) && !self.map.contains_key(&k) {
            if self.horizon > self.swept_at {
                self.sweep();
            }
            if self.map.len() >= self.cap {
                self.evict_one();
            }
        }
        let horizon = self.horizon;
        match self.map.entry(k) {
            Entry::Occupied(o) => {
                let v = o.into_mut();
                if v.last_us() < horizon {
                    // Expired: the key starts over, as if it had been removed.
                    *v = make();
                    self.expired += 1;
                }
                v
            }
            Entry::Vacant(e) => {
                self.inserted += 1;
                e.insert(make())
            }
        }
    }

    fn evict_one(&mut self) {
        // Sample a window of entries starting at a rotating offset; evict the oldest.
        let len = self.map.len();
        if len == 0 {
            return;
        }
        self.cursor = self.cursor.wrapping_add(0x9E37_79B9);
        // Bounded scan cost: the offset stays within the first 256 buckets' entries (hash order
        // is independent of age; expired entries were swept just before).
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

    /// Expires entries untouched since `before_us` (non-decreasing across calls): at once for
    /// every accessor, in memory at the next sweep that pays (see the module documentation).
    pub(crate) fn expire(&mut self, before_us: u64) {
        self.horizon = self.horizon.max(before_us);
        let many_new = self.inserted.saturating_mul(8) >= self.map.len();
        let due = self.horizon.saturating_sub(self.swept_at) >= SWEEP_EVERY_US;
        if self.horizon > self.swept_at && (many_new || due) {
            self.sweep();
        }
    }

    /// Removes expired entries from memory. Entries only expire when the horizon rises, so a
    /// sweep at an unchanged horizon would find nothing.
    fn sweep(&mut self) {
        let n = self.map.len();
        let horizon = self.horizon;
        self.map.retain(|_, v| v.last_us() >= horizon);
        self.expired += (n - self.map.len()) as u64;
        self.inserted = 0;
        self.swept_at = horizon;
    }

    /// Live (unexpired) entries; O(n).
    pub(crate) fn len(&self) -> usize {
        self.map.values().filter(|v| self.live(v)).count()
    }

    /// Every entry held in memory, expired or not (for byte accounting).
    /// Live entries with their keys.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &V)> {
        let horizon = self.horizon;
        (self.map.iter())
            .filter(move |(_, v)| v.last_us() >= horizon)
            .map(|(k, v)| (*k, v))
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
