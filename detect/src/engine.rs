//! The engine: one [`Engine`] per analyzer partition. [`Engine::observe`] takes each event
//! with what the analyzer knows about it ([`EventContext`]); [`Engine::tick`] returns the
//! campaign transitions due (call it periodically with stream time and at the end, or use
//! [`Engine::finish`] at end of input). Stream time is event time (µs since the epoch).
use std::borrow::Cow;

use apitap_labels::facts::EventFacts;
use apitap_labels::{Classification, EventLabels, FunctionClass, HashKey, Label};
use apitap_schema::ApiEvent;

use crate::DetectError;
use crate::actor::{Actor, ActorKeys, ActorResolver, LoginUser};
use crate::baseline::{Baselines, Contribution};
use crate::cache::StrCache;
use crate::campaign::Campaigns;
use crate::checkpoint::{BASELINE_PREFIX, CAMPAIGN_PREFIX, Restored, StateChanges, StateError};
use crate::config::DetectConfig;
use crate::detections::{self, Detection};
use crate::finding::Finding;
use crate::keys::{Domain, Keyer};
use crate::metrics::EngineMetrics;
use crate::outcome::{Outcome, OutcomeLearner, OutcomeRules, Signal, basic_credentials};
use crate::partial::{Partial, PartialSink};
use crate::template::{fallback_template, page_of, request_id};

/// What the analyzer knows about an event besides the event itself. Every field is optional:
/// the engine degrades gracefully (own templating, path-word classification, no record-based
/// checks) when the inventory or labels are not there yet.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventContext<'a> {
    /// Service name as the inventory keys it (default: the Host header, else the server
    /// address).
    pub service: Option<&'a str>,
    /// Endpoint template from the inventory (`/api/users/{user_id}`).
    pub template: Option<&'a str>,
    /// The inventory's GraphQL / JSON-RPC / SOAP operation (`auth.login`): part of the
    /// endpoint for the detections (one RPC path carries many functions), and classified by
    /// its words when the labeller found no function.
    pub operation: Option<&'a str>,
    /// Function class from `apitap_labels::classify_event`.
    pub function: Option<FunctionClass>,
    /// Sensitive records about *other* people in the response: the largest count of one
    /// unmasked C2/C3 body label, not counting values the caller itself sent in the request
    /// (its own phone, ID or e-mail echoed back). [`EventContext::from_labels`] computes it.
    pub sensitive_records: Option<u32>,
    /// Order-independent digest of the keyed hashes of those records' values (0: none known):
    /// the same records served again (a client polling one URL) are not new records.
    pub records_digest: u64,
    /// Kinds of sensitive data in the response.
    pub sensitive_labels: &'a [Label],
}

impl<'a> EventContext<'a> {
    /// From the labeller's output for the event (the analyzer's usual path).
    pub fn from_labels(
        labels: &EventLabels,
        class: &Classification,
        template: Option<&'a str>,
        service: Option<&'a str>,
    ) -> EventContext<'a> {
        let (sensitive_records, records_digest) = match &labels.response {
            Some(_) => {
                let (n, d) = records_about_others(labels);
                (Some(n), d)
            }
            None => (None, 0),
        };
        EventContext {
            service,
            template,
            operation: None,
            function: Some(class.function),
            sensitive_records,
            records_digest,
            sensitive_labels: &[],
        }
    }
}

impl<'a> EventContext<'a> {
    /// The context with the inventory's operation of the event (empty: none).
    pub fn with_operation(mut self, operation: Option<&'a str>) -> EventContext<'a> {
        self.operation = operation.filter(|o| !o.is_empty());
        self
    }
}

/// Sensitive records of the response that are about someone other than the caller, and the
/// digest of their values (issue 14 "benign silence"). A response label whose every value the
/// request also carried under the same label is the caller's own data.
fn records_about_others(labels: &EventLabels) -> (u32, u64) {
    use apitap_labels::{DataClass, Direction};
    let sent: Vec<(Label, apitap_labels::ValueHash)> = labels
        .in_direction(Direction::Request)
        .flat_map(|f| f.hashes.iter().map(move |h| (f.label, *h)))
        .collect();
    let mut records = 0u32;
    let mut digest = 0u64;
    for f in labels.in_direction(Direction::Response).filter(|f| {
        apitap_labels::is_body_part(f.location.part)
            && f.mask.is_none()
            && f.label.class() >= DataClass::C2
    }) {
        let own = !f.hashes.is_empty() && f.hashes.iter().all(|h| sent.contains(&(f.label, *h)));
        if own {
            continue;
        }
        records = records.max(f.count);
        for h in &f.hashes {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h.0[..8]);
            // Sum of value hashes: independent of the order values came in.
            digest = digest.wrapping_add(u64::from_le_bytes(w) ^ (f.label as u64));
        }
    }
    (records, digest)
}

/// Authentication role of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthRole {
    None,
    Login,
    Otp,
}

/// One event as the detectors see it (computed once per event).
#[derive(Debug)]
pub(crate) struct Obs<'a, 'f> {
    pub ev: &'a ApiEvent,
    /// The event's shared facts (lazily decoded bodies: the crawling detector reads links
    /// from responses).
    pub facts: &'a EventFacts<'f>,
    pub now: u64,
    pub actor: Actor,
    /// The user name tried, masked only when a sample shows it
    /// (`actor.login_user_masked` is not filled on this path).
    pub login_user: Option<LoginUser>,
    pub service: &'a str,
    pub service_key: u64,
    pub method: &'a str,
    pub template: &'a str,
    /// Keyed hash of (service, template).
    pub template_key: u64,
    /// Keyed hash of (service, method, template).
    pub endpoint_key: u64,
    pub function: Option<FunctionClass>,
    pub outcome: Outcome,
    /// What decided `outcome` (for login and OTP attempts).
    pub signal: Signal,
    pub status: Option<u16>,
    pub response_bytes: u64,
    pub records: Option<u32>,
    /// [`EventContext::records_digest`].
    pub records_digest: u64,
    /// Keyed hash and numeric value of the object id requested.
    pub id: Option<(u64, Option<u64>)>,
    pub page: Option<u64>,
    /// Keyed hash of the concrete path.
    pub path_key: u64,
}

/// Cheap path-word classification for when the analyzer gives none.
fn guess_function(path: &str) -> Option<FunctionClass> {
    let mut buf = [0u8; 256];
    let n = path.len().min(buf.len());
    buf[..n].copy_from_slice(&path.as_bytes()[..n]);
    buf[..n].make_ascii_lowercase();
    let p = &buf[..n];
    let has = |w: &str| memchr::memmem::find(p, w.as_bytes()).is_some();
    if has("logout") || has("signout") {
        return Some(FunctionClass::Logout);
    }
    let code =
        has("otp") || has("sms") || has("code") || has("captcha") || has("2fa") || has("mfa");
    if code && (has("verify") || has("check") || has("validate") || has("confirm")) {
        return Some(FunctionClass::SmsVerify);
    }
    if has("login") || has("signin") || has("logon") || has("authenticate") || has("/token") {
        return Some(FunctionClass::Login);
    }
    if has("export") || has("dump") {
        return Some(FunctionClass::Export);
    }
    None
}

/// Every authentication role, `ROLES[role as usize] == role` (the index of `Engine::feeds`).
const ROLES: [AuthRole; 3] = [AuthRole::None, AuthRole::Login, AuthRole::Otp];
const _: () = {
    let mut i = 0;
    while i < ROLES.len() {
        assert!(ROLES[i] as usize == i);
        i += 1;
    }
    // One bit per detector in a feed.
    assert!(detections::COUNT <= u8::BITS as usize);
};

/// Endpoints whose keys are cached (then the cache starts over).
const ENDPOINT_CACHE: usize = 4_096;

/// The detection engine.
#[derive(Debug)]
pub struct Engine {
    cfg: DetectConfig,
    keyer: Keyer,
    resolver: ActorResolver,
    outcomes: OutcomeRules,
    /// What each login endpoint's answers taught ([`OutcomeLearner`]).
    learner: OutcomeLearner,
    baselines: Baselines,
    campaigns: Campaigns,
    /// Every detector, in observation order ([`detections::all`]); disabled ones too (they
    /// observe nothing, but metrics and table sizes list every detector).
    detectors: [Box<dyn Detection>; detections::COUNT],
    /// Per role (`role as usize`), the detectors its events go to: bit `i` for
    /// `detectors[i]` when it is enabled and [`Detection::wants`] the role (computed once, so
    /// that an event costs one bit test per detector).
    feeds: [u8; ROLES.len()],
    metrics: EngineMetrics,
    /// Keys of (service, method, template): service, template and endpoint key.
    endpoints: StrCache<[u64; 3]>,
    now_us: u64,
    last_expire_us: u64,
    /// The actor keys of the event last observed, for its trace-back record.
    last_actor: Option<ActorKeys>,
    /// Stage 1 of two-stage processing ([`Engine::enable_partials`]).
    partials: Option<PartialSink>,
}

impl Engine {
    /// An engine with a random per-process hash key: actor hashes and campaign ids do not
    /// correlate across restarts or analyzer instances (use [`Engine::with_hash_key`] with the
    /// site key for that).
    pub fn new(cfg: DetectConfig) -> Result<Engine, DetectError> {
        use std::hash::{BuildHasher, Hasher};
        let mut seed = [0u8; 32];
        for chunk in seed.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(std::process::id().into());
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        tracing::warn!(
            "detection engine uses a random per-process hash key; campaign ids will not \
             correlate across restarts or analyzer instances"
        );
        Engine::with_hash_key(cfg, &HashKey::from_bytes(seed))
    }

    /// An engine keyed with the site's hash key (`labels.hash_key_file`).
    pub fn with_hash_key(cfg: DetectConfig, key: &HashKey) -> Result<Engine, DetectError> {
        cfg.validate()?;
        let keyer = Keyer::new(key);
        let detectors = detections::all(&cfg)?;
        let feeds = ROLES.map(|role| {
            (detectors.iter().enumerate())
                .filter(|(_, d)| d.enabled() && d.wants().admits(role))
                .fold(0, |bits, (i, _)| bits | 1 << i)
        });
        Ok(Engine {
            resolver: ActorResolver::new(cfg.trusted_nets()),
            outcomes: OutcomeRules::new(&cfg.login),
            learner: OutcomeLearner::new(cfg.limits.max_endpoints),
            baselines: Baselines::new(cfg.baseline.clone(), cfg.limits.max_endpoints),
            campaigns: Campaigns::new(cfg.lifecycle.clone(), &cfg.limits),
            detectors,
            feeds,
            metrics: EngineMetrics::default(),
            endpoints: StrCache::new(ENDPOINT_CACHE),
            now_us: 0,
            last_expire_us: 0,
            last_actor: None,
            partials: None,
            keyer,
            cfg,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Consumes one event.
    pub fn observe(&mut self, ev: &ApiEvent, ctx: &EventContext) {
        let facts = EventFacts::new(ev, apitap_labels::facts::DEFAULT_MAX_DECODED_BYTES);
        self.observe_facts(&facts, ctx);
    }

    /// [`Engine::observe`] reading the event's shared facts (the analyzer's path: the
    /// request-header scan and the decoded bodies are computed once per event for every
    /// analysis).
    pub fn observe_facts(&mut self, facts: &EventFacts<'_>, ctx: &EventContext) {
        let ev = facts.event;
        self.metrics.events += 1;
        self.last_actor = None;
        let now = ev.request_start_unix_us;
        self.now_us = self.now_us.max(now);
        // The operation: the inventory's, else a JSON-RPC method read from the event.
        let operation = ctx.operation.or_else(|| facts.rpc_method());
        let template: Cow<str> = match (ctx.template, operation) {
            (Some(t), Some(op)) if !op.is_empty() => Cow::Owned(format!("{t} {op}")),
            (Some(t), _) => Cow::Borrowed(t),
            (None, Some(op)) => Cow::Owned(format!("{} {op}", fallback_template(&ev.request.path))),
            (None, None) => fallback_template(&ev.request.path),
        };
        let host_buf;
        let service = match ctx.service {
            Some(s) => s,
            None => match &ev.request.host {
                Some(h) => h.as_str(),
                None => {
                    host_buf = ev.server.to_string_pair();
                    host_buf.as_str()
                }
            },
        };
        // An RPC path (`/json`, `/graphql`) and its method (`POST`) say nothing about the
        // function; the operation's words do (`auth.login`).
        let function = match operation.and_then(guess_function) {
            Some(f) => Some(f),
            None => ctx.function.or_else(|| guess_function(&ev.request.path)),
        };
        // HTTP Basic (RFC 7617) authenticates every request itself: each one carrying
        // credentials is a login attempt on whatever endpoint it targets (hydra http-get).
        let basic = basic_credentials(facts);
        let role = match self.outcomes.forced_kind(&template) {
            Some("login") => AuthRole::Login,
            Some("otp") => AuthRole::Otp,
            _ => match function {
                Some(FunctionClass::Login) => AuthRole::Login,
                Some(FunctionClass::SmsVerify) => AuthRole::Otp,
                _ if basic => AuthRole::Login,
                _ => AuthRole::None,
            },
        };
        let (actor, login_user) =
            self.resolver
                .resolve_unmasked(facts, &self.keyer, role != AuthRole::None);
        self.last_actor = Some(ActorKeys::of(&actor));
        let k = &self.keyer;
        let method = ev.request.method.as_str();
        // The endpoint's keyed hashes, from the cache after its first event.
        let [service_key, template_key, endpoint_key] =
            self.endpoints
                .get_or_insert_with(&[service, method, &template], || {
                    let service_key = k.hash(Domain::Endpoint, service.as_bytes());
                    let template_key =
                        k.hash_parts(Domain::Template, &[service.as_bytes(), template.as_bytes()]);
                    let endpoint_key = k.pair(
                        Domain::Endpoint,
                        template_key,
                        k.hash(Domain::Endpoint, method.as_bytes()),
                    );
                    [service_key, template_key, endpoint_key]
                });
        let verdict = if role == AuthRole::None {
            crate::outcome::Verdict {
                outcome: Outcome::Unknown,
                signal: Signal::NotAnAttempt,
            }
        } else {
            self.learner
                .infer(&self.outcomes, facts, &template, endpoint_key, basic, now)
        };
        let outcome = verdict.outcome;
        if role != AuthRole::None {
            self.metrics.auth_signals[verdict.signal as usize] += 1;
        }
        let id = request_id(&ev.request.path, &template, ev.request.query.as_deref())
            .map(|r| (k.hash(Domain::Id, r.raw.as_bytes()), r.numeric));
        let resp = ev.response.as_ref();
        let o = Obs {
            ev,
            facts,
            now,
            actor,
            login_user,
            service,
            service_key,
            method,
            template: &template,
            template_key,
            endpoint_key,
            function,
            outcome,
            signal: verdict.signal,
            status: resp.map(|r| r.status),
            response_bytes: resp.map_or(0, |r| r.body.length_bytes),
            records: ctx.sensitive_records,
            records_digest: ctx.records_digest,
            id,
            page: page_of(ev.request.query.as_deref()),
            path_key: k.hash(Domain::Path, ev.request.path.as_bytes()),
        };
        if role != AuthRole::None && outcome != Outcome::Unknown {
            self.metrics.auth_attempts += 1;
            if outcome == Outcome::Failure {
                self.metrics.auth_failures += 1;
            }
        }
        self.baselines.observe(
            endpoint_key,
            now,
            Contribution {
                bytes: o.response_bytes,
                records: o.records.map_or(0, u64::from),
                attempt: role != AuthRole::None && outcome != Outcome::Unknown,
                failed: outcome == Outcome::Failure,
                actor: o.actor.ip_key,
            },
        );
        let cx = &mut detections::Cx {
            campaigns: &mut self.campaigns,
            keyer: &self.keyer,
            baselines: &mut self.baselines,
            partials: self.partials.as_mut(),
        };
        let mut feed = self.feeds[role as usize];
        for d in &mut self.detectors {
            if feed & 1 != 0 {
                d.observe(&o, cx);
            }
            feed >>= 1;
        }
    }

    /// Campaign transitions due at `now_us` (stream time); also expires idle state.
    pub fn tick(&mut self, now_us: u64) -> Vec<Finding> {
        self.now_us = self.now_us.max(now_us);
        if now_us.saturating_sub(self.last_expire_us) >= 1_000_000 {
            self.last_expire_us = now_us;
            for d in &mut self.detectors {
                d.expire(now_us);
            }
            // Endpoints idle for a week lose their baseline.
            self.baselines
                .expire(now_us.saturating_sub(7 * 86_400 * 1_000_000));
            // …and what their login answers taught.
            self.learner
                .expire(now_us.saturating_sub(7 * 86_400 * 1_000_000));
        }
        let out = self.campaigns.tick(now_us);
        self.count(&out);
        out
    }

    /// A recorded stream through the engine as the analyzer drives it: `evs` in time order,
    /// a tick at every second of stream time, then [`Engine::finish`]. Every finding, in
    /// order (recorded-traffic tests and tools).
    pub fn run(&mut self, evs: &[ApiEvent]) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut next = evs.first().map_or(0, |e| e.request_start_unix_us);
        for e in evs {
            while e.request_start_unix_us >= next {
                out.extend(self.tick(next));
                next += 1_000_000;
            }
            self.observe(e, &EventContext::default());
        }
        out.extend(self.finish());
        out
    }

    /// End of input: every open campaign is reported (Create if it never was) and closed.
    pub fn finish(&mut self) -> Vec<Finding> {
        let out = self.campaigns.close_all(self.now_us);
        self.count(&out);
        out
    }

    fn count(&mut self, out: &[Finding]) {
        for f in out {
            match f.activity {
                crate::Activity::Create => self.metrics.findings_created += 1,
                crate::Activity::Update => self.metrics.findings_updated += 1,
                crate::Activity::Close => self.metrics.findings_closed += 1,
            }
        }
    }

    /// Latest stream time seen.
    pub fn now_us(&self) -> u64 {
        self.now_us
    }

    /// Counters (evictions and state gauges refreshed).
    pub fn metrics(&self) -> EngineMetrics {
        let mut m = self.metrics.clone();
        // Every detector in order, then the baselines.
        m.evicted = std::array::from_fn(|i| match self.detectors.get(i) {
            Some(d) => (d.name(), d.evicted()),
            None if i == detections::COUNT => ("baseline", self.baselines.evicted()),
            None => ("login_outcomes", self.learner.evicted()),
        });
        m.campaigns_dropped = self.campaigns.dropped;
        m.open_campaigns = self.campaigns.len() as u64;
        m.state_bytes = self.state_bytes() as u64;
        for d in &self.detectors {
            d.add_metrics(&mut m);
        }
        m
    }

    /// Bytes of detection state held (tables by capacity, sketches, baselines, campaigns).
    pub fn state_bytes(&self) -> usize {
        self.detectors
            .iter()
            .map(|d| d.state_bytes())
            .sum::<usize>()
            + self.baselines.bytes()
            + self.campaigns.bytes()
            + self.learner.state_bytes()
            + self.partials.as_ref().map_or(0, PartialSink::bytes)
    }

    /// Tracked keys per table (for tests and capacity planning).
    pub fn table_sizes(&self) -> [(&'static str, usize); detections::COUNT] {
        self.detectors
            .each_ref()
            .map(|d| (d.name(), d.tracked_keys()))
    }
}

/// `address:port` of an endpoint.
trait PairString {
    fn to_string_pair(&self) -> String;
}

impl PairString for apitap_schema::Endpoint {
    fn to_string_pair(&self) -> String {
        std::net::SocketAddr::new(self.ip, self.port).to_string()
    }
}

/// Durable state (issue 18, [`crate::checkpoint`]).
impl Engine {
    /// The bus partition of the events observed from now on: campaigns remember the
    /// partition of their last hit, so that its owner restores them.
    pub fn set_partition(&mut self, partition: Option<i32>) {
        self.campaigns.set_partition(partition);
    }

    /// The state records changed since the last call: campaigns changed and deletes of those
    /// closed; with `baselines`, every endpoint baseline too (they change on every bucket, so
    /// the caller writes them less often).
    pub fn checkpoint(&mut self, baselines: bool) -> StateChanges {
        let mut out = StateChanges::default();
        self.campaigns.checkpoint(&mut out);
        if baselines {
            self.baselines.checkpoint(&mut out);
        }
        out
    }

    /// Restores one record written by [`Engine::checkpoint`]. Campaigns are restored only when
    /// `owned` accepts the partition they were last hit from and they are not open here;
    /// baselines when they know more than the one held. A bad record is an error, to count
    /// and skip.
    pub fn restore(
        &mut self,
        key: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        if let Some(k) = key.strip_prefix(CAMPAIGN_PREFIX) {
            self.campaigns.restore(k, value, owned)
        } else if let Some(k) = key.strip_prefix(BASELINE_PREFIX) {
            self.baselines.restore(k, value)
        } else {
            Ok(Restored::UnknownKey)
        }
    }

    /// The records of `changes` (from [`Engine::checkpoint`]) were not stored: they are
    /// part of the next checkpoint again.
    pub fn checkpoint_failed(&mut self, changes: &StateChanges) {
        self.campaigns.checkpoint_failed(changes);
    }

    /// Forgets, without a Close, the campaigns last hit from `partitions` (revoked: the new
    /// owner restores them). Returns how many.
    pub fn forget_partitions(&mut self, partitions: &[i32]) -> usize {
        self.campaigns.forget_partitions(partitions)
    }

    /// Sum over endpoints of the request-rate baseline's sample count.
    pub fn baseline_samples(&self) -> u64 {
        self.baselines.samples()
    }
}

/// Two-stage processing, stage 1 (issue 18, [`crate::partial`]).
impl Engine {
    /// From now on the global detectors (credential stuffing and crawling `distributed`)
    /// raise nothing here: their events become partial aggregates per global key and slice
    /// of `slice_secs` of event time, for [`Engine::take_partials`] and the stage-2
    /// [`crate::global::GlobalEngine`] that owns the key.
    pub fn enable_partials(&mut self, slice_secs: u64) {
        let slice_us = slice_secs.max(1).saturating_mul(1_000_000);
        self.partials = Some(PartialSink::new(
            slice_us,
            self.cfg.limits.max_keys_per_table,
        ));
    }

    /// Is two-stage processing on?
    pub fn partials_enabled(&self) -> bool {
        self.partials.is_some()
    }

    /// The partials folded since the last call, in (slice, key) order: produce them before
    /// committing the offsets of the events they hold.
    pub fn take_partials(&mut self) -> Vec<Partial> {
        self.partials
            .as_mut()
            .map_or_else(Vec::new, PartialSink::take)
    }

    /// Partials handed out so far, and contributions dropped because
    /// `limits.max_keys_per_table` partials were held.
    pub fn partial_counts(&self) -> (u64, u64) {
        self.partials
            .as_ref()
            .map_or((0, 0), |p| (p.produced, p.dropped))
    }
}

impl Engine {
    /// The actor keys (client address, account, User-Agent) of the event last passed to
    /// [`Engine::observe_facts`], for the trace-back store (R-THR-6).
    pub fn last_actor(&self) -> Option<ActorKeys> {
        self.last_actor
    }

    /// The keyed hasher, to key values an analyst types the way events are keyed.
    pub fn keyer(&self) -> &Keyer {
        &self.keyer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_word_fallback_classification() {
        assert_eq!(guess_function("/api/v1/Login"), Some(FunctionClass::Login));
        assert_eq!(
            guess_function("/sms/verify"),
            Some(FunctionClass::SmsVerify)
        );
        assert_eq!(
            guess_function("/api/otp/check"),
            Some(FunctionClass::SmsVerify)
        );
        assert_eq!(guess_function("/oauth/token"), Some(FunctionClass::Login));
        assert_eq!(guess_function("/users/export"), Some(FunctionClass::Export));
        assert_eq!(guess_function("/users/1"), None);
    }
}
