//! Distinct counting with bounded memory: an exact small set promoted to a HyperLogLog sketch
//! beyond it ([`Distinct`]). Both merge across partitions (R-THR: sketches that merge), so the
//! analyzer's consumer-group members can combine their counts.

/// Registers of the HyperLogLog (2^8 = 256: standard error 1.04/√256 ≈ 6.5 %).
pub const HLL_REGISTERS: usize = 256;
const HLL_BITS: u32 = 8;
/// Values kept exactly before promotion to the sketch.
pub const EXACT: usize = 8;

/// HyperLogLog (Flajolet et al. 2007) over 64-bit keyed hashes, with linear counting for
/// small cardinalities (Heule et al. 2013).
#[derive(Clone, PartialEq, Eq)]
pub struct Hll {
    regs: [u8; HLL_REGISTERS],
}

impl std::fmt::Debug for Hll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hll(≈{})", self.estimate())
    }
}

impl Default for Hll {
    fn default() -> Self {
        Hll {
            regs: [0; HLL_REGISTERS],
        }
    }
}

impl Hll {
    /// Adds a hash.
    pub fn insert(&mut self, h: u64) {
        let idx = (h >> (64 - HLL_BITS)) as usize;
        let rest = (h << HLL_BITS) | (1 << (HLL_BITS - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        if rank > self.regs[idx] {
            self.regs[idx] = rank;
        }
    }

    /// Union with another sketch.
    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// Estimated distinct count.
    pub fn estimate(&self) -> u64 {
        let m = HLL_REGISTERS as f64;
        let mut sum = 0.0;
        let mut zeros = 0u32;
        for &r in &self.regs {
            sum += 1.0 / f64::from(1u32 << r.min(31));
            if r == 0 {
                zeros += 1;
            }
        }
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / f64::from(zeros)).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

/// Distinct values: exact up to [`EXACT`] (32-bit fingerprints of the keyed hashes), a
/// [`Hll`] beyond.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Distinct {
    small: [u32; EXACT],
    n: u8,
    /// The sketch's estimate, saturated at `u32::MAX` (then recomputed on demand), refreshed
    /// whenever a register rises: detectors read the count on every event, and summing 256
    /// registers each time dominated their cost. Fits in padding (the struct stays 48 bytes).
    est: u32,
    hll: Option<Box<Hll>>,
}

impl std::fmt::Debug for Distinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Distinct({})", self.count())
    }
}

impl Distinct {
    /// Adds a (keyed) hash; returns true when it was certainly new (exact mode) or the
    /// estimate may have grown (sketch mode: a register rose).
    pub fn insert(&mut self, h: u64) -> bool {
        let fp = (h >> 32) as u32 ^ h as u32;
        if let Some(hll) = &mut self.hll {
            let s = spread(fp);
            let idx = (s >> (64 - HLL_BITS)) as usize;
            let before = hll.regs[idx];
            hll.insert(s);
            let rose = hll.regs[idx] != before;
            if rose {
                self.refresh();
            }
            return rose;
        }
        if self.small[..usize::from(self.n)].contains(&fp) {
            return false;
        }
        if usize::from(self.n) < EXACT {
            self.small[usize::from(self.n)] = fp;
            self.n += 1;
            return true;
        }
        // Promote: the exact values go into the sketch by their stored fingerprint, re-spread.
        let mut hll = Box::<Hll>::default();
        for &v in &self.small {
            hll.insert(spread(v));
        }
        hll.insert(spread(fp));
        self.hll = Some(hll);
        self.refresh();
        true
    }

    /// Recomputes the cached estimate from the registers.
    fn refresh(&mut self) {
        if let Some(h) = &self.hll {
            self.est = u32::try_from(h.estimate()).unwrap_or(u32::MAX);
        }
    }

    /// Does the exact set contain it? (Sketch mode: unknown, false.)
    pub fn contains_exact(&self, h: u64) -> bool {
        let fp = (h >> 32) as u32 ^ h as u32;
        self.hll.is_none() && self.small[..usize::from(self.n)].contains(&fp)
    }

    /// Distinct values (exact below [`EXACT`], estimated above).
    pub fn count(&self) -> u64 {
        match &self.hll {
            Some(h) if self.est == u32::MAX => h.estimate().max(EXACT as u64 + 1),
            Some(_) => u64::from(self.est).max(EXACT as u64 + 1),
            None => u64::from(self.n),
        }
    }

    /// Is it a sketch now?
    pub fn is_sketch(&self) -> bool {
        self.hll.is_some()
    }

    /// Union with another set (exact stays exact while it fits).
    pub fn merge(&mut self, other: &Distinct) {
        match (&mut self.hll, &other.hll) {
            (Some(a), Some(b)) => a.merge(b),
            (Some(a), None) => {
                for &v in &other.small[..usize::from(other.n)] {
                    a.insert(spread(v));
                }
            }
            (None, Some(b)) => {
                let mut h = b.clone();
                for &v in &self.small[..usize::from(self.n)] {
                    h.insert(spread(v));
                }
                self.hll = Some(h);
            }
            (None, None) => {
                for &v in &other.small[..usize::from(other.n)] {
                    // Re-insert by fingerprint: `insert` recomputes fp from the spread value,
                    // so insert the fingerprint directly.
                    self.insert_fp(v);
                }
            }
        }
        self.refresh();
    }

    fn insert_fp(&mut self, fp: u32) {
        if self.hll.is_some() {
            if let Some(h) = &mut self.hll {
                h.insert(spread(fp));
            }
            return;
        }
        if self.small[..usize::from(self.n)].contains(&fp) {
            return;
        }
        if usize::from(self.n) < EXACT {
            self.small[usize::from(self.n)] = fp;
            self.n += 1;
            return;
        }
        let mut hll = Box::<Hll>::default();
        for &v in &self.small {
            hll.insert(spread(v));
        }
        hll.insert(spread(fp));
        self.hll = Some(hll);
    }

    /// Clears (keeps no allocation).
    pub fn clear(&mut self) {
        self.n = 0;
        self.est = 0;
        self.hll = None;
    }

    /// Heap bytes held (the sketch, when promoted).
    pub fn heap_bytes(&self) -> usize {
        if self.hll.is_some() {
            std::mem::size_of::<Hll>()
        } else {
            0
        }
    }
}

/// Spreads a 32-bit fingerprint over 64 bits (SplitMix64 finaliser) for the sketch.
fn spread(v: u32) -> u64 {
    let mut z = u64::from(v).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(i: u64) -> u64 {
        spread(i as u32) ^ (i << 40)
    }

    #[test]
    fn exact_then_sketch_with_bounded_error() {
        let mut d = Distinct::default();
        for i in 0..EXACT as u64 {
            assert!(d.insert(h(i)));
            assert!(!d.insert(h(i)));
        }
        assert_eq!(d.count(), EXACT as u64);
        assert!(!d.is_sketch());
        assert!(d.contains_exact(h(3)));
        for n in [100u64, 1_000, 10_000] {
            let mut d = Distinct::default();
            for i in 0..n {
                d.insert(h(i));
                d.insert(h(i));
            }
            let est = d.count() as f64;
            let err = (est - n as f64).abs() / n as f64;
            assert!(err < 0.2, "n={n} est={est}");
            assert!(d.is_sketch());
            assert_eq!(d.heap_bytes(), HLL_REGISTERS);
        }
    }

    #[test]
    fn cached_estimate_follows_the_registers() {
        let mut d = Distinct::default();
        for i in 0..5_000u64 {
            d.insert(h(i));
            if let Some(hll) = &d.hll {
                assert_eq!(d.count(), hll.estimate().max(EXACT as u64 + 1), "after {i}");
            }
        }
        let mut e = Distinct::default();
        for i in 4_000..9_000u64 {
            e.insert(h(i));
        }
        d.merge(&e);
        let hll = d.hll.as_ref().expect("sketch");
        assert_eq!(d.count(), hll.estimate());
        assert_eq!(std::mem::size_of::<Distinct>(), 48);
        d.clear();
        assert_eq!(d.count(), 0);
    }

    #[test]
    fn merge_is_a_union() {
        let mut a = Distinct::default();
        let mut b = Distinct::default();
        for i in 0..3 {
            a.insert(h(i));
        }
        for i in 2..6 {
            b.insert(h(i));
        }
        a.merge(&b);
        assert_eq!(a.count(), 6);
        let mut big_a = Distinct::default();
        let mut big_b = Distinct::default();
        for i in 0..2_000 {
            big_a.insert(h(i));
        }
        for i in 1_000..3_000 {
            big_b.insert(h(i));
        }
        big_a.merge(&big_b);
        let est = big_a.count() as f64;
        assert!((est - 3_000.0).abs() / 3_000.0 < 0.2, "{est}");
        // Exact merged into a sketch and a sketch into an exact set.
        let mut s = big_b.clone();
        s.merge(&a);
        assert!(s.count() >= 2_000 * 8 / 10);
        let mut e = a.clone();
        e.merge(&big_b);
        assert!(e.is_sketch());
        // Exact sets overflowing while merging promote.
        let mut x = Distinct::default();
        let mut y = Distinct::default();
        for i in 0..6 {
            x.insert(h(i));
            y.insert(h(i + 100));
        }
        x.merge(&y);
        assert!(x.is_sketch());
        assert!((10..=14).contains(&x.count()), "{}", x.count());
    }
}
