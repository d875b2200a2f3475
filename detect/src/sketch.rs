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
        let mut units = 0u64;
        let mut zeros = 0u32;
        for &r in &self.regs {
            units += units_of(r);
            zeros += u32::from(r == 0);
        }
        estimate_from(units, zeros)
    }
}

/// A register's term of the HyperLogLog sum, 2^−min(r, 31), in units of 2^−31. The sum of 256
/// such terms is below 2^40: an integer sum is exact, and so is the float sum of the same
/// terms, so both give the same estimate.
fn units_of(r: u8) -> u64 {
    1u64 << (31 - u32::from(r.min(31)))
}

/// The estimate from the register sum (in units of 2^−31) and the count of zero registers.
fn estimate_from(units: u64, zeros: u32) -> u64 {
    let m = HLL_REGISTERS as f64;
    let sum = units as f64 / f64::from(1u32 << 31);
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let raw = alpha * m * m / sum;
    let est = if raw <= 2.5 * m && zeros > 0 {
        m * (m / f64::from(zeros)).ln()
    } else {
        raw
    };
    est.round() as u64
}

/// Distinct values: exact up to [`EXACT`] (32-bit fingerprints of the keyed hashes), a
/// [`Hll`] beyond.
#[derive(Clone, PartialEq, Eq)]
pub struct Distinct {
    repr: Repr,
}

#[derive(Clone, PartialEq, Eq)]
enum Repr {
    Exact {
        small: [u32; EXACT],
        n: u8,
    },
    /// The sketch with its register sum kept up to date (units of 2^−31, see [`units_of`]) and
    /// its zero registers counted: detectors read the count on every event, and summing 256
    /// registers each time dominated their cost.
    Sketch {
        hll: Box<Hll>,
        units: u64,
        zeros: u16,
    },
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct {
            repr: Repr::Exact {
                small: [0; EXACT],
                n: 0,
            },
        }
    }
}

impl std::fmt::Debug for Distinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Distinct({})", self.count())
    }
}

/// 32-bit fingerprint of a keyed hash (what the exact set keeps).
fn fingerprint(h: u64) -> u32 {
    (h >> 32) as u32 ^ h as u32
}

impl Repr {
    /// A sketch holding `hll`, its sum and zeros computed once.
    fn sketch(hll: Box<Hll>) -> Repr {
        let units = hll.regs.iter().map(|&r| units_of(r)).sum();
        let zeros = hll.regs.iter().filter(|&&r| r == 0).count() as u16;
        Repr::Sketch { hll, units, zeros }
    }

    /// Adds a fingerprint; true when it was certainly new (exact) or a register rose
    /// (sketch). Promotes the exact set to a sketch when it overflows.
    fn insert_fp(&mut self, fp: u32) -> bool {
        match self {
            Repr::Sketch { hll, units, zeros } => {
                let s = spread(fp);
                let idx = (s >> (64 - HLL_BITS)) as usize;
                let before = hll.regs[idx];
                hll.insert(s);
                let after = hll.regs[idx];
                if after == before {
                    return false;
                }
                *units = *units - units_of(before) + units_of(after);
                *zeros -= u16::from(before == 0);
                true
            }
            Repr::Exact { small, n } => {
                let len = usize::from(*n);
                if small[..len].contains(&fp) {
                    return false;
                }
                if len < EXACT {
                    small[len] = fp;
                    *n += 1;
                    return true;
                }
                // Promote: the exact values go into the sketch by their stored fingerprint,
                // re-spread.
                let mut hll = Box::<Hll>::default();
                for &v in small.iter() {
                    hll.insert(spread(v));
                }
                hll.insert(spread(fp));
                *self = Repr::sketch(hll);
                true
            }
        }
    }
}

impl Distinct {
    /// Adds a (keyed) hash; returns true when it was certainly new (exact mode) or the
    /// estimate may have grown (sketch mode: a register rose).
    pub fn insert(&mut self, h: u64) -> bool {
        self.repr.insert_fp(fingerprint(h))
    }

    /// Does the exact set contain it? (Sketch mode: unknown, false.)
    pub fn contains_exact(&self, h: u64) -> bool {
        match &self.repr {
            Repr::Exact { small, n } => small[..usize::from(*n)].contains(&fingerprint(h)),
            Repr::Sketch { .. } => false,
        }
    }

    /// Distinct values (exact below [`EXACT`], estimated above). O(1).
    pub fn count(&self) -> u64 {
        match &self.repr {
            Repr::Exact { n, .. } => u64::from(*n),
            Repr::Sketch { units, zeros, .. } => {
                estimate_from(*units, u32::from(*zeros)).max(EXACT as u64 + 1)
            }
        }
    }

    /// Is it a sketch now?
    pub fn is_sketch(&self) -> bool {
        matches!(self.repr, Repr::Sketch { .. })
    }

    /// Union with another set (exact stays exact while it fits).
    pub fn merge(&mut self, other: &Distinct) {
        match (&mut self.repr, &other.repr) {
            (Repr::Sketch { hll: a, .. }, Repr::Sketch { hll: b, .. }) => {
                a.merge(b);
                let merged = std::mem::take(a);
                self.repr = Repr::sketch(merged);
            }
            (Repr::Sketch { .. }, Repr::Exact { small, n }) => {
                for &v in &small[..usize::from(*n)] {
                    self.repr.insert_fp(v);
                }
            }
            (Repr::Exact { small, n }, Repr::Sketch { hll: b, .. }) => {
                let mut h = b.clone();
                for &v in &small[..usize::from(*n)] {
                    h.insert(spread(v));
                }
                self.repr = Repr::sketch(h);
            }
            (Repr::Exact { .. }, Repr::Exact { small, n }) => {
                for &v in &small[..usize::from(*n)] {
                    self.repr.insert_fp(v);
                }
            }
        }
    }

    /// The set as plain data for a checkpoint (issue 18): the exact fingerprints, or the
    /// sketch's registers.
    pub fn to_parts(&self) -> DistinctParts {
        match &self.repr {
            Repr::Exact { small, n } => DistinctParts::Exact(small[..usize::from(*n)].to_vec()),
            Repr::Sketch { hll, .. } => DistinctParts::Sketch(hll.regs.to_vec()),
        }
    }

    /// The set [`Distinct::to_parts`] described; `None` when the parts are not a valid set
    /// (too many exact values, wrong register count, a rank beyond 64).
    pub fn from_parts(parts: &DistinctParts) -> Option<Distinct> {
        match parts {
            DistinctParts::Exact(v) if v.len() <= EXACT => {
                let mut small = [0u32; EXACT];
                small[..v.len()].copy_from_slice(v);
                Some(Distinct {
                    repr: Repr::Exact {
                        small,
                        n: v.len() as u8,
                    },
                })
            }
            DistinctParts::Sketch(regs)
                if regs.len() == HLL_REGISTERS && regs.iter().all(|&r| r <= 65) =>
            {
                let mut hll = Box::<Hll>::default();
                hll.regs.copy_from_slice(regs);
                Some(Distinct {
                    repr: Repr::sketch(hll),
                })
            }
            _ => None,
        }
    }

    /// Clears (keeps no allocation).
    pub fn clear(&mut self) {
        *self = Distinct::default();
    }

    /// Heap bytes held (the sketch, when promoted).
    pub fn heap_bytes(&self) -> usize {
        if self.is_sketch() {
            std::mem::size_of::<Hll>()
        } else {
            0
        }
    }
}

/// A [`Distinct`] as plain, serializable data.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DistinctParts {
    /// The exact fingerprints (at most [`EXACT`]).
    Exact(Vec<u32>),
    /// The [`HLL_REGISTERS`] registers of the sketch.
    Sketch(Vec<u8>),
}

/// Spreads a 32-bit fingerprint over 64 bits (SplitMix64 finaliser) for the sketch.
fn spread(v: u32) -> u64 {
    let mut z = u64::from(v).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A Bloom filter of `64 × WORDS` bits with two probes taken from the two halves of a
/// keyed 64-bit hash (membership of actors or IDs without storing them).
#[derive(Debug, Clone)]
pub struct Bloom<const WORDS: usize> {
    bits: [u64; WORDS],
    /// Values inserted (with repeats).
    pub n: u32,
}

impl<const WORDS: usize> Default for Bloom<WORDS> {
    fn default() -> Self {
        Bloom {
            bits: [0; WORDS],
            n: 0,
        }
    }
}

impl<const WORDS: usize> Bloom<WORDS> {
    const BITS: u32 = 64 * WORDS as u32;

    fn probes(h: u64) -> [u32; 2] {
        [h as u32 % Self::BITS, (h >> 32) as u32 % Self::BITS]
    }

    /// Adds `h`.
    pub fn insert(&mut self, h: u64) {
        for p in Self::probes(h) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
        self.n = self.n.saturating_add(1);
    }

    /// Whether `h` may have been added (false positives, never false negatives).
    pub fn contains(&self, h: u64) -> bool {
        Self::probes(h)
            .iter()
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    /// Empties the filter.
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn distinct_parts_round_trip_and_invalid_parts_are_refused() {
        let mut small = Distinct::default();
        let mut big = Distinct::default();
        for i in 0..3u64 {
            small.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        for i in 0..500u64 {
            big.insert(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        }
        for d in [&small, &big] {
            let back = Distinct::from_parts(&d.to_parts()).unwrap();
            assert_eq!(&back, d);
            assert_eq!(back.count(), d.count());
        }
        assert!(Distinct::from_parts(&DistinctParts::Exact(vec![1; EXACT + 1])).is_none());
        assert!(Distinct::from_parts(&DistinctParts::Sketch(vec![1; 3])).is_none());
        assert!(Distinct::from_parts(&DistinctParts::Sketch(vec![200; HLL_REGISTERS])).is_none());
    }

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
    fn running_sum_gives_the_registers_estimate() {
        let sketch = |d: &Distinct| match &d.repr {
            Repr::Sketch { hll, .. } => Some(hll.estimate()),
            Repr::Exact { .. } => None,
        };
        let mut d = Distinct::default();
        for i in 0..5_000u64 {
            d.insert(h(i));
            if let Some(est) = sketch(&d) {
                assert_eq!(d.count(), est.max(EXACT as u64 + 1), "after {i}");
            }
        }
        let mut e = Distinct::default();
        for i in 4_000..9_000u64 {
            e.insert(h(i));
        }
        d.merge(&e);
        assert_eq!(Some(d.count()), sketch(&d));
        let mut x = Distinct::default();
        x.insert(h(1));
        x.merge(&d);
        assert_eq!(Some(x.count()), sketch(&x));
        // Every register term, including saturated ranks, sums exactly.
        let mut full = Hll::default();
        for (i, r) in full.regs.iter_mut().enumerate() {
            *r = (i % 40) as u8;
        }
        let want = full.estimate();
        // The textbook float sum of 2^-r gives the same estimate.
        let m = HLL_REGISTERS as f64;
        let float_sum: f64 = full
            .regs
            .iter()
            .map(|&r| 1.0 / f64::from(1u32 << r.min(31)))
            .sum();
        let raw = 0.7213 / (1.0 + 1.079 / m) * m * m / float_sum;
        assert_eq!(want, raw.round() as u64);
        let y = Distinct {
            repr: Repr::sketch(Box::new(full)),
        };
        assert_eq!(y.count(), want);
        assert!(std::mem::size_of::<Distinct>() <= 40);
        d.clear();
        assert_eq!(d.count(), 0);
        assert!(!d.is_sketch());
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
