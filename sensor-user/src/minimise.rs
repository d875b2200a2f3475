//! Data minimisation before the sink (R-CAP-8): the `[payload]` section's mode applied to
//! every event by the same labeller the analyzer runs (`apitap-labels`), with one scanner per
//! pipeline, reused. `full` without `attach_labels` passes events through untouched and
//! builds no scanner.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use apitap_labels::{
    HashKey, KeyFileError, LabelConfig, Labeller, MinimiseOptions, PayloadMode, Scanner, minimise,
};
use apitap_schema::ApiEvent;

use crate::config::{ConfigError, PayloadSection};
use crate::sampling::{BodySampler, SamplingStats};

/// What minimisation did, for metrics and the replay summary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PayloadStats {
    /// Events whose payload was minimised (`sample` or `labels` mode).
    pub minimised_events: u64,
    /// Events shipped with a `labels` summary.
    pub labelled_events: u64,
    /// Findings shipped, by label name.
    pub findings: BTreeMap<&'static str, u64>,
    /// Captured body bytes that did not leave the host (removed or cut).
    pub removed_body_bytes: u64,
    /// Body sampling per endpoint, when `payload.max_bodies_per_endpoint_per_sec` is set.
    pub sampling: Option<SamplingStats>,
}

impl PayloadStats {
    /// Findings shipped over all labels.
    pub fn findings_total(&self) -> u64 {
        self.findings.values().sum()
    }
}

/// Applies the configured payload mode to events.
pub struct Minimiser {
    mode: PayloadMode,
    opts: MinimiseOptions,
    scanner: Option<Scanner>,
    sampler: Option<BodySampler>,
    /// Counters so far.
    pub stats: PayloadStats,
}

impl std::fmt::Debug for Minimiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minimiser")
            .field("mode", &self.mode)
            .field("opts", &self.opts)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Errors setting minimisation up. Messages name the configuration field, never the secret.
#[derive(Debug, thiserror::Error)]
pub enum MinimiseError {
    /// A configuration value that cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The labeller could not be built.
    #[error("building the labeller: {0}")]
    Labeller(#[from] apitap_labels::LabelError),
}

fn field(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The hash key: the trimmed contents of `payload.hash_key_file` (the analyzer derives its key
/// from `labels.hash_key_file` the same way), or a random per-process key.
pub fn hash_key(file: Option<&Path>) -> Result<HashKey, ConfigError> {
    match file {
        Some(path) => HashKey::from_secret_file(path).map_err(|e| match e {
            KeyFileError::Read(e) => field(
                "payload.hash_key_file",
                format!("cannot read {}: {e}", path.display()),
            ),
            KeyFileError::Empty => field("payload.hash_key_file", "the file is empty"),
            e @ (KeyFileError::TooShort { .. } | KeyFileError::Exposed { .. }) => {
                field("payload.hash_key_file", format!("{}: {e}", path.display()))
            }
        }),
        None => HashKey::random().map_err(|e| {
            field(
                "payload.hash_key_file",
                format!("not set, and no random key could be made: {e}"),
            )
        }),
    }
}

impl Minimiser {
    /// Passes events through unchanged (`payload.mode = "full"`, no labels).
    pub fn full() -> Minimiser {
        Minimiser {
            mode: PayloadMode::Full,
            opts: MinimiseOptions {
                attach_labels: false,
                ..MinimiseOptions::default()
            },
            scanner: None,
            sampler: None,
            stats: PayloadStats::default(),
        }
    }

    /// Also leaves bodies out beyond `per_sec` per endpoint (0: never), tracking at most
    /// `max_endpoints` endpoints.
    pub fn with_sampling(mut self, per_sec: u32, max_endpoints: usize) -> Minimiser {
        self.sampler = (per_sec > 0).then(|| BodySampler::new(per_sec, max_endpoints));
        self.stats.sampling = self.sampler.as_ref().map(|s| s.stats);
        self
    }

    /// A minimiser for `mode` with value hashes keyed by `key`.
    pub fn new(
        mode: PayloadMode,
        opts: MinimiseOptions,
        key: HashKey,
    ) -> Result<Minimiser, MinimiseError> {
        let scans = mode != PayloadMode::Full || opts.attach_labels;
        let scanner = if scans {
            Some(Scanner::new(Arc::new(Labeller::new(
                key,
                LabelConfig::default(),
            )?)))
        } else {
            None
        };
        Ok(Minimiser {
            mode,
            opts,
            scanner,
            sampler: None,
            stats: PayloadStats::default(),
        })
    }

    /// From the `[payload]` section (reads `payload.hash_key_file` when events are scanned).
    pub fn from_config(cfg: &PayloadSection) -> Result<Minimiser, MinimiseError> {
        Ok(Self::from_mode_config(cfg)?.with_sampling(
            cfg.max_bodies_per_endpoint_per_sec,
            cfg.max_sampled_endpoints,
        ))
    }

    fn from_mode_config(cfg: &PayloadSection) -> Result<Minimiser, MinimiseError> {
        if !cfg.scans() {
            return Ok(Minimiser::full());
        }
        if cfg.hash_key_file.is_none() {
            tracing::warn!(
                "payload.hash_key_file is not set: value hashes in shipped labels use a random \
                 per-process key and will not correlate across restarts, sensors or the analyzer"
            );
        }
        let key = hash_key(cfg.hash_key_file.as_deref())?;
        tracing::info!(hash_key_id = %key.id(), "payload hash key loaded");
        Minimiser::new(
            cfg.mode.mode(),
            MinimiseOptions {
                sample_bytes: cfg.sample_bytes,
                attach_labels: cfg.attach_labels,
            },
            key,
        )
    }

    /// The payload mode applied.
    pub fn mode(&self) -> PayloadMode {
        self.mode
    }

    /// Minimises one event for the sink.
    pub fn apply(&mut self, mut event: ApiEvent) -> ApiEvent {
        if let Some(sampler) = self.sampler.as_mut() {
            // Before the scan: an event without bodies costs the labeller little, too.
            sampler.apply(&mut event);
            self.stats.sampling = Some(sampler.stats);
        }
        let Some(scanner) = self.scanner.as_mut() else {
            return event;
        };
        let m = minimise(scanner, &event, self.mode, &self.opts);
        let s = &mut self.stats;
        if m.payload != PayloadMode::Full {
            s.minimised_events += 1;
        }
        let captured = |e: &ApiEvent| {
            e.request.body.captured_bytes + e.response.as_ref().map_or(0, |r| r.body.captured_bytes)
        };
        s.removed_body_bytes += captured(&event).saturating_sub(captured(&m.event));
        if let Some(l) = &m.labels {
            s.labelled_events += 1;
            for f in &l.findings {
                *s.findings.entry(f.label.name()).or_insert(0) += 1;
            }
        }
        m.event
    }
}
