//! Conversion of the kernel's `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to Unix time.

fn now_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128
}

/// Offset between CLOCK_REALTIME and CLOCK_MONOTONIC, refreshed periodically so that NTP
/// steps are followed.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    offset_ns: i128,
}

impl Clock {
    /// Measures the offset now.
    pub fn new() -> Self {
        let mut c = Clock { offset_ns: 0 };
        c.refresh();
        c
    }

    /// Re-measures the offset.
    pub fn refresh(&mut self) {
        let mono = now_ns(libc::CLOCK_MONOTONIC);
        let real = now_ns(libc::CLOCK_REALTIME);
        self.offset_ns = real - mono;
    }

    /// Add to a monotonic timestamp to get Unix nanoseconds.
    pub fn offset_ns(&self) -> i128 {
        self.offset_ns
    }

    /// Current Unix time in microseconds.
    pub fn now_us(&self) -> u64 {
        (now_ns(libc::CLOCK_REALTIME) / 1000).max(0) as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn offset_maps_monotonic_to_now() {
        let c = super::Clock::new();
        let mono = super::now_ns(libc::CLOCK_MONOTONIC);
        let unix_us = ((mono + c.offset_ns()) / 1000) as u64;
        assert!(unix_us.abs_diff(c.now_us()) < 1_000_000);
    }
}
