//! Bounded sketches of an endpoint: size histograms and distinct-client counts.

use super::*;

/// Log-linear histogram of non-negative integers (latency in µs, sizes in bytes): values
/// below 16 get a bucket each, above each power of two is split into 16 buckets, so a
/// percentile is within 1/16 of the true value. Mergeable and bounded (≤ 976 buckets).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    /// Values recorded.
    pub count: u64,
    /// Largest value recorded.
    pub max: u64,
    /// Bucket index → count.
    pub buckets: BTreeMap<u16, u64>,
}

impl Histogram {
    pub(crate) fn bucket_of(v: u64) -> u16 {
        if v < 16 {
            return v as u16;
        }
        let exp = 63 - v.leading_zeros();
        let shift = exp - 4;
        let sub = (v >> shift) & 15;
        ((u64::from(shift) + 1) * 16 + sub) as u16
    }

    pub(crate) fn bucket_mid(b: u16) -> u64 {
        let b = u64::from(b);
        if b < 16 {
            return b;
        }
        let shift = b / 16 - 1;
        let lower = (16 + b % 16) << shift;
        lower + ((1u64 << shift) >> 1)
    }

    /// Adds a value.
    pub fn record(&mut self, v: u64) {
        *self.buckets.entry(Self::bucket_of(v)).or_insert(0) += 1;
        self.count += 1;
        self.max = self.max.max(v);
    }

    /// Adds another histogram.
    pub fn absorb(&mut self, other: &Histogram) {
        for (b, n) in &other.buckets {
            *self.buckets.entry(*b).or_insert(0) += n;
        }
        self.count += other.count;
        self.max = self.max.max(other.max);
    }

    /// Nearest-rank percentile (`q` in 0..=1), as its bucket's midpoint, never above the
    /// maximum; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(Self::bucket_mid(*b).min(self.max));
            }
        }
        Some(self.max)
    }
}

/// HyperLogLog registers (2⁸): distinct-count estimate within about 6.5 %, exact-ish below a
/// few hundred (linear counting), 256 bytes whatever the count, mergeable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistinctSketch {
    registers: [u8; 256],
}

impl Default for DistinctSketch {
    fn default() -> Self {
        DistinctSketch {
            registers: [0; 256],
        }
    }
}

impl DistinctSketch {
    /// Counts a hashed item.
    pub fn insert_hash(&mut self, h: u64) {
        let idx = (h >> 56) as usize;
        let rest = h << 8 | 0x80;
        let rank = rest.leading_zeros() as u8 + 1;
        if self.registers[idx] < rank {
            self.registers[idx] = rank;
        }
    }

    /// Counts an address.
    pub fn insert_ip(&mut self, ip: IpAddr) {
        let h = match ip {
            IpAddr::V4(v4) => xxhash_rust::xxh3::xxh3_64(&v4.octets()),
            IpAddr::V6(v6) => xxhash_rust::xxh3::xxh3_64(&v6.octets()),
        };
        self.insert_hash(h);
    }

    /// Adds another sketch.
    pub fn absorb(&mut self, other: &DistinctSketch) {
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
    }

    /// Estimated distinct count.
    pub fn estimate(&self) -> u64 {
        let m = 256.0f64;
        let zeros = self.registers.iter().filter(|&&r| r == 0).count();
        if zeros == 256 {
            return 0;
        }
        let sum: f64 = self
            .registers
            .iter()
            .map(|&r| 2f64.powi(-i32::from(r)))
            .sum();
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let est = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        est.round() as u64
    }
}

impl Serialize for DistinctSketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut hex = String::with_capacity(512);
        for r in self.registers {
            hex.push_str(&format!("{r:02x}"));
        }
        s.serialize_str(&hex)
    }
}

impl<'de> Deserialize<'de> for DistinctSketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hex = String::deserialize(d)?;
        let mut sketch = DistinctSketch::default();
        if hex.len() != 512 {
            return Err(serde::de::Error::custom("sketch must be 512 hex digits"));
        }
        for (i, r) in sketch.registers.iter_mut().enumerate() {
            *r = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| serde::de::Error::custom("sketch must be hex"))?;
        }
        Ok(sketch)
    }
}
