//! Baselines (R-THR-5): exponentially weighted mean and variance of per-bucket metrics, per
//! endpoint (overall and per hour of the week) and per actor, so thresholds adapt to each API
//! and client. A detector asks [`Ewma::threshold`] for `max(floor, factor × mean,
//! mean + sigmas × σ)` once the baseline has enough samples; before that, only the fixed floor
//! applies. Windows that raised a detection are not folded in (no baseline poisoning by the
//! attack itself). Bounded: endpoints up to `limits.max_endpoints`, actors by the detectors'
//! tables; the 168 hour-of-week slots of an endpoint are allocated on its first bucket.
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, BASELINE_PREFIX, Restored, StateChanges, StateError};

use crate::bounded::{BoundedMap, Touched};
use crate::config::BaselineConfig;
use crate::sketch::Distinct;

/// EWMA of one metric: mean, variance and sample count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Ewma {
    /// Weighted mean.
    pub mean: f32,
    /// Weighted variance.
    pub var: f32,
    /// Samples folded in (saturating).
    pub n: u32,
}

impl Ewma {
    /// Folds a sample (Finch 2009, incremental EWMA variance). The first sample sets the mean.
    pub fn update(&mut self, x: f64, alpha: f64) {
        let x = x as f32;
        let a = alpha as f32;
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            let d = x - self.mean;
            let incr = a * d;
            self.mean += incr;
            self.var = (1.0 - a) * (self.var + d * incr);
        }
        self.n = self.n.saturating_add(1);
    }

    /// [`Ewma::update`] with `x` clipped to `mean + sigmas × max(σ, |mean| / 4, 0.01)` once
    /// the baseline has `min_samples`: a sudden spike (an attack that has not yet crossed its
    /// detector's threshold) moves the baseline by little, while a lasting change of level is
    /// still learnt, a step at a time.
    pub fn update_robust(&mut self, x: f64, alpha: f64, sigmas: f64, min_samples: u32) {
        let x = if self.n >= min_samples {
            let m = f64::from(self.mean);
            let spread = self.std().max(m.abs() / 4.0).max(0.01);
            x.min(m + sigmas * spread)
        } else {
            x
        };
        self.update(x, alpha);
    }

    /// Standard deviation.
    pub fn std(&self) -> f64 {
        f64::from(self.var.max(0.0)).sqrt()
    }

    /// Adaptive threshold: `floor` until `min_samples`, then the largest of `floor`,
    /// `factor × mean` and `mean + sigmas × σ`.
    pub fn threshold(&self, floor: f64, factor: f64, sigmas: f64, min_samples: u32) -> f64 {
        if self.n < min_samples {
            return floor;
        }
        let m = f64::from(self.mean);
        floor.max(factor * m).max(m + sigmas * self.std())
    }
}

/// Metrics of an endpoint's buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum Metric {
    /// Requests per bucket.
    Requests = 0,
    /// Failed authentication attempts / attempts (login endpoints).
    FailureRatio = 1,
    /// Response bytes per request.
    ResponseBytes = 2,
    /// Sensitive records per request.
    Records = 3,
    /// Distinct client addresses per bucket.
    DistinctActors = 4,
}

const METRICS: usize = 5;

#[derive(Debug, Clone, Default)]
struct Bucket {
    start_us: u64,
    requests: u64,
    attempts: u64,
    failures: u64,
    bytes: u64,
    records: u64,
    actors: Distinct,
    poisoned: bool,
}

/// Baseline of one endpoint.
#[derive(Debug, Clone)]
pub struct EndpointBaseline {
    overall: [Ewma; METRICS],
    hours: Option<Box<[[Ewma; METRICS]; 168]>>,
    cur: Bucket,
    last_us: u64,
}

impl Touched for EndpointBaseline {
    fn last_us(&self) -> u64 {
        self.last_us
    }
}

/// Hour of the week (0 = Monday 00:00 UTC) of an instant.
pub fn hour_of_week(unix_us: u64) -> usize {
    let secs = unix_us / 1_000_000;
    let days = secs / 86_400;
    let hour = (secs % 86_400) / 3_600;
    // 1970-01-01 was a Thursday (3 with Monday = 0).
    (((days + 3) % 7) * 24 + hour) as usize
}

impl EndpointBaseline {
    fn new(now: u64) -> Self {
        EndpointBaseline {
            overall: [Ewma::default(); METRICS],
            hours: None,
            cur: Bucket {
                start_us: now,
                ..Bucket::default()
            },
            last_us: now,
        }
    }

    fn roll(&mut self, now: u64, cfg: &BaselineConfig) {
        let len = cfg.bucket_secs * 1_000_000;
        if now < self.cur.start_us + len {
            return;
        }
        let b = &self.cur;
        if !b.poisoned && b.requests > 0 {
            let req = b.requests as f64;
            let mut vals = [f64::NAN; METRICS];
            vals[Metric::Requests as usize] = req;
            if b.attempts > 0 {
                vals[Metric::FailureRatio as usize] = b.failures as f64 / b.attempts as f64;
            }
            vals[Metric::ResponseBytes as usize] = b.bytes as f64 / req;
            vals[Metric::Records as usize] = b.records as f64 / req;
            vals[Metric::DistinctActors as usize] = b.actors.count() as f64;
            let how = hour_of_week(b.start_us);
            if cfg.hour_of_week && self.hours.is_none() {
                self.hours = Some(Box::new([[Ewma::default(); METRICS]; 168]));
            }
            for (i, v) in vals.iter().enumerate() {
                if v.is_nan() {
                    continue;
                }
                self.overall[i].update_robust(*v, cfg.alpha, cfg.sigmas, cfg.min_samples);
                if let Some(h) = &mut self.hours {
                    h[how][i].update_robust(*v, cfg.alpha, cfg.sigmas, cfg.min_samples);
                }
            }
        }
        // Skip empty buckets: a start aligned to the bucket grid at `now`.
        self.cur = Bucket {
            start_us: now - (now - self.cur.start_us) % len,
            ..Bucket::default()
        };
    }

    /// The baseline to compare with at `now`: the hour-of-week slot when it has
    /// `min_samples`, else the overall one.
    pub fn get(&self, m: Metric, now: u64, min_samples: u32) -> Ewma {
        if let Some(h) = &self.hours {
            let e = h[hour_of_week(now)][m as usize];
            if e.n >= min_samples {
                return e;
            }
        }
        self.overall[m as usize]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.cur.actors.heap_bytes()
            + self
                .hours
                .as_ref()
                .map_or(0, |_| std::mem::size_of::<[[Ewma; METRICS]; 168]>())
    }
}

/// What one event contributes to its endpoint's bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct Contribution {
    /// Response bytes.
    pub bytes: u64,
    /// Sensitive records in the response.
    pub records: u64,
    /// The event was an authentication attempt with a known outcome.
    pub attempt: bool,
    /// … that failed.
    pub failed: bool,
    /// Keyed hash of the client address.
    pub actor: u64,
}

/// All endpoint baselines.
#[derive(Debug)]
pub struct Baselines {
    cfg: BaselineConfig,
    endpoints: BoundedMap<EndpointBaseline>,
}

impl Baselines {
    /// Empty, bounded to `max_endpoints`.
    pub fn new(cfg: BaselineConfig, max_endpoints: usize) -> Self {
        Baselines {
            cfg,
            endpoints: BoundedMap::new(max_endpoints),
        }
    }

    /// Adds an event of endpoint `ep` at `now`.
    pub fn observe(&mut self, ep: u64, now: u64, c: Contribution) {
        let cfg = &self.cfg;
        let e = self.endpoints.entry(ep, || EndpointBaseline::new(now));
        e.roll(now, cfg);
        e.last_us = e.last_us.max(now);
        let b = &mut e.cur;
        b.requests += 1;
        b.bytes += c.bytes;
        b.records += c.records;
        if c.attempt {
            b.attempts += 1;
            b.failures += u64::from(c.failed);
        }
        b.actors.insert(c.actor);
    }

    /// Marks the endpoint's current bucket as part of an attack: it will not be learnt.
    pub fn poison(&mut self, ep: u64) {
        if let Some(e) = self.endpoints.get_mut(ep) {
            e.cur.poisoned = true;
        }
    }

    /// Whether the endpoint's current bucket is marked as part of an attack.
    pub fn poisoned(&self, ep: u64) -> bool {
        self.endpoints.get(ep).is_some_and(|e| e.cur.poisoned)
    }

    /// The endpoint's baseline of a metric (default: no samples).
    pub fn get(&self, ep: u64, m: Metric, now: u64) -> Ewma {
        self.endpoints
            .get(ep)
            .map(|e| e.get(m, now, self.cfg.min_samples))
            .unwrap_or_default()
    }

    /// The configuration.
    pub fn cfg(&self) -> &BaselineConfig {
        &self.cfg
    }

    /// Removes endpoints idle since `before_us`.
    pub fn expire(&mut self, before_us: u64) {
        self.endpoints.expire(before_us);
    }

    /// Endpoints evicted because the table was full.
    pub fn evicted(&self) -> u64 {
        self.endpoints.evicted
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.endpoints.table_bytes()
            + self
                .endpoints
                .values()
                .map(|e| e.bytes() - std::mem::size_of::<EndpointBaseline>())
                .sum::<usize>()
    }
}

/// An endpoint baseline as a checkpoint record (issue 18): the learnt EWMAs and when the
/// endpoint was last seen; the open bucket starts over on restore.
#[derive(Debug, Serialize, Deserialize)]
struct BaselineState {
    overall: [Ewma; METRICS],
    /// 168 hour-of-week slots, when allocated.
    hours: Option<Vec<[Ewma; METRICS]>>,
    last_us: u64,
}

impl Baselines {
    /// Records of every live endpoint baseline; adds their request-rate sample counts to
    /// `out.baseline_samples`.
    pub(crate) fn checkpoint(&self, out: &mut StateChanges) {
        for (k, e) in self.endpoints.iter() {
            let st = BaselineState {
                overall: e.overall,
                hours: e.hours.as_ref().map(|h| h.to_vec()),
                last_us: e.last_us,
            };
            if let Some(v) = checkpoint::encode(&st) {
                out.put.push((format!("{BASELINE_PREFIX}{k:016x}"), v));
                out.baseline_samples += u64::from(e.overall[Metric::Requests as usize].n);
            }
        }
    }

    /// Restores an endpoint baseline from a record (`key` without its prefix), unless the
    /// one held has learnt at least as many buckets.
    pub(crate) fn restore(&mut self, key: &str, value: &[u8]) -> Result<Restored, StateError> {
        let k = u64::from_str_radix(key, 16).map_err(|_| StateError::Corrupt)?;
        let st: BaselineState = checkpoint::decode(value)?;
        let hours = match st.hours {
            None => None,
            Some(v) => {
                let slots: [[Ewma; METRICS]; 168] =
                    v.try_into().map_err(|_| StateError::Corrupt)?;
                Some(Box::new(slots))
            }
        };
        let n = st.overall[Metric::Requests as usize].n;
        if let Some(held) = self.endpoints.get(k)
            && held.overall[Metric::Requests as usize].n >= n
        {
            return Ok(Restored::BaselineSkipped);
        }
        let e = self
            .endpoints
            .entry(k, || EndpointBaseline::new(st.last_us));
        e.overall = st.overall;
        e.hours = hours;
        e.last_us = e.last_us.max(st.last_us);
        Ok(Restored::Baseline(u64::from(n)))
    }

    /// Sum over endpoints of the request-rate EWMA's sample count (what a restore brought
    /// back is visible here).
    pub fn samples(&self) -> u64 {
        (self.endpoints.iter())
            .map(|(_, e)| u64::from(e.overall[Metric::Requests as usize].n))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_tracks_mean_and_threshold_adapts() {
        let mut e = Ewma::default();
        assert_eq!(e.threshold(10.0, 3.0, 4.0, 5), 10.0);
        for i in 0..100 {
            e.update(100.0 + f64::from(i % 3), 0.1);
        }
        assert!((f64::from(e.mean) - 101.0).abs() < 2.0, "{e:?}");
        assert!(e.std() < 2.0);
        // Floor 10, 3 × 101 = 303.
        let t = e.threshold(10.0, 3.0, 4.0, 5);
        assert!((300.0..310.0).contains(&t), "{t}");
        // Fixed floor dominates when higher.
        assert_eq!(e.threshold(1_000.0, 3.0, 4.0, 5), 1_000.0);
    }

    #[test]
    fn hour_of_week_slots() {
        // 2024-01-01 00:00 UTC was a Monday.
        let mon = 1_704_067_200u64 * 1_000_000;
        assert_eq!(hour_of_week(mon), 0);
        assert_eq!(hour_of_week(mon + 3_600 * 1_000_000 * 25), 25);
        assert_eq!(hour_of_week(mon + 86_400 * 1_000_000 * 7), 0);
    }

    #[test]
    fn endpoint_baseline_learns_per_bucket_and_skips_poisoned() {
        let cfg = BaselineConfig {
            min_samples: 3,
            ..BaselineConfig::default()
        };
        let mut b = Baselines::new(cfg, 10);
        let mon = 1_704_067_200u64 * 1_000_000;
        let min = 60_000_000;
        for bucket in 0..10u64 {
            for i in 0..20u64 {
                b.observe(
                    1,
                    mon + bucket * min + i,
                    Contribution {
                        bytes: 100,
                        records: 1,
                        attempt: true,
                        failed: i % 10 == 0,
                        actor: i,
                    },
                );
            }
        }
        let now = mon + 10 * min;
        let req = b.get(1, Metric::Requests, now);
        assert_eq!(req.n, 9, "the tenth bucket is still open");
        assert!((f64::from(req.mean) - 20.0).abs() < 0.01);
        let fr = b.get(1, Metric::FailureRatio, now);
        assert!((f64::from(fr.mean) - 0.1).abs() < 0.01);
        assert!((f64::from(b.get(1, Metric::DistinctActors, now).mean) - 20.0).abs() < 0.01);
        // A poisoned bucket is not learnt.
        for i in 0..1_000u64 {
            b.observe(1, now + i, Contribution::default());
        }
        b.poison(1);
        b.observe(1, now + 2 * min, Contribution::default());
        assert_eq!(b.get(1, Metric::Requests, now + 2 * min).n, 10);
        assert_eq!(b.get(2, Metric::Requests, now).n, 0);
        assert!(b.bytes() > 168 * 5 * 12);
    }
}
