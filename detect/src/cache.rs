//! A small bounded cache from strings (one to three parts) to values derived from them, so the
//! hot path hashes a repeated User-Agent or endpoint with a fast seeded hash and one compare
//! instead of recomputing its keyed (SipHash) keys. Lookups compare the stored strings, so a
//! collision of the fast hash can never return another string's value: what the cache returns
//! is exactly what `make` would. Cleared when full (bounded memory; the next events refill it).
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use foldhash::fast::RandomState;

/// Parts longer than this are not cached (bounded memory per entry).
pub(crate) const MAX_PART: usize = 512;

#[derive(Debug, Clone)]
struct Slot<V> {
    /// The parts, concatenated.
    text: Box<str>,
    /// Length of each part.
    lens: [u32; 3],
    /// Number of parts.
    parts: u8,
    value: V,
}

/// Bounded string-keyed cache (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) struct StrCache<V> {
    seed: RandomState,
    map: HashMap<u64, Slot<V>, RandomState>,
    cap: usize,
}

impl<V: Copy> StrCache<V> {
    /// At most `cap` entries.
    pub(crate) fn new(cap: usize) -> Self {
        StrCache {
            seed: RandomState::default(),
            map: HashMap::default(),
            cap: cap.max(1),
        }
    }

    /// The value for `parts` (at most three), computed with `make` when not cached.
    pub(crate) fn get_or_insert_with(&mut self, parts: &[&str], make: impl FnOnce() -> V) -> V {
        debug_assert!(parts.len() <= 3);
        if parts.len() > 3 || parts.iter().any(|p| p.len() > MAX_PART) {
            return make();
        }
        let mut h = self.seed.build_hasher();
        for p in parts {
            h.write_usize(p.len());
            h.write(p.as_bytes());
        }
        let digest = h.finish();
        if let Some(slot) = self.map.get(&digest) {
            if same(slot, parts) {
                return slot.value;
            }
            // Another string with the same fast hash: computed, not cached.
            return make();
        }
        let value = make();
        if self.map.len() >= self.cap {
            self.map.clear();
        }
        let mut lens = [0u32; 3];
        for (l, p) in lens.iter_mut().zip(parts) {
            *l = p.len() as u32;
        }
        self.map.insert(
            digest,
            Slot {
                text: parts.concat().into_boxed_str(),
                lens,
                parts: parts.len() as u8,
                value,
            },
        );
        value
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

fn same<V>(slot: &Slot<V>, parts: &[&str]) -> bool {
    if usize::from(slot.parts) != parts.len() {
        return false;
    }
    let mut rest = &slot.text[..];
    for (i, p) in parts.iter().enumerate() {
        let n = slot.lens[i] as usize;
        if n != p.len() || rest.len() < n || &rest[..n] != *p {
            return false;
        }
        rest = &rest[n..];
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_what_make_returns_and_is_bounded() {
        let mut c = StrCache::new(4);
        let mut calls = 0;
        let make = |parts: &[&str]| -> usize {
            parts
                .iter()
                .map(|p| p.len() * 10 + p.matches('a').count())
                .sum()
        };
        let mut get = |c: &mut StrCache<usize>, parts: &[&str]| {
            c.get_or_insert_with(parts, || {
                calls += 1;
                make(parts)
            })
        };
        assert_eq!(get(&mut c, &["ab", "c"]), 31);
        assert_eq!(get(&mut c, &["ab", "c"]), 31);
        // Same concatenation, other split: another entry.
        assert_eq!(get(&mut c, &["a", "bc"]), 31);
        assert_eq!(get(&mut c, &["abc"]), 31);
        assert_eq!(get(&mut c, &["abc", ""]), 31);
        assert_eq!(c.len(), 4);
        get(&mut c, &["x"]);
        assert!(c.len() <= 4);
        let long = "a".repeat(MAX_PART + 1);
        assert_eq!(get(&mut c, &[&long]), (MAX_PART + 1) * 11);
        // Computed once per distinct key (the repeated ["ab", "c"] came from the cache), and
        // for the long part, which is never cached.
        assert_eq!(calls, 6);
    }

    #[test]
    fn compare_checks_every_part() {
        let slot = Slot {
            text: "abc".into(),
            lens: [2, 1, 0],
            parts: 2,
            value: (),
        };
        assert!(same(&slot, &["ab", "c"]));
        assert!(!same(&slot, &["a", "bc"]));
        assert!(!same(&slot, &["abc"]));
        assert!(!same(&slot, &["ab", "d"]));
        assert!(!same(&slot, &["ab", "c", ""]));
    }
}
