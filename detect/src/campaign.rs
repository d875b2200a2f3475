//! Campaign lifecycle (issue 7 "Campaign lifecycle"): detectors report *hits* while their
//! condition holds; hits with the same (detector, kind, actor key, endpoint) belong to one
//! campaign. [`Campaigns::tick`] turns them into at most one Create, then Updates no more often
//! than `lifecycle.update_interval_secs` and only when something changed, then one Close after
//! `lifecycle.quiet_secs` without hits — never a storm of duplicates. The campaign's
//! `finding_info.uid` is a hash of (detector, kind, actor key, endpoint, campaign start), so it
//! is stable across its reports. Bounded by `limits.max_campaigns`; hits that would open a
//! campaign beyond it are dropped and counted.
use std::collections::HashMap;
use std::net::IpAddr;

use apitap_labels::{Keep, Label, mask_policy};
use foldhash::fast::RandomState;

use crate::actor::LoginUser;
use crate::checkpoint::{self, CAMPAIGN_PREFIX, Restored, StateChanges, StateError, intern};
use crate::config::{Lifecycle, Limits};
use crate::engine::Obs;
use crate::finding::{Activity, ActorKey, Detector, EndpointRef, Finding, Sample, Severity};
use crate::keys::{Domain, Keyer};
use crate::sketch::Distinct;
use crate::template::id_like;

/// Which actor key identifies the campaign (and is reported first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The client address.
    Ip,
    /// The account (the client address when there is none).
    Account,
    /// The user name tried.
    LoginUser,
    /// The client fingerprint (distributed campaigns).
    Fingerprint,
    /// The endpoint as a whole (distributed campaigns).
    Endpoint,
}

/// A detector's report that its condition holds for this event.
#[derive(Debug)]
pub(crate) struct Hit<'a> {
    pub detector: Detector,
    pub kind: &'static str,
    pub scope: Scope,
    /// The campaign covers every endpoint of the service (crawling, sharing).
    pub any_endpoint: bool,
    pub severity: Severity,
    pub confidence: u8,
    /// Window counters; merged by maximum.
    pub counts: &'a [(&'static str, u64)],
}

#[derive(Debug)]
struct Campaign {
    uid: String,
    detector: Detector,
    kind: &'static str,
    title: String,
    severity: Severity,
    confidence: u8,
    start_us: u64,
    last_us: u64,
    created_us: u64,
    last_emit_us: u64,
    created: bool,
    dirty: bool,
    seq: u32,
    events: u64,
    counts: Vec<(&'static str, u64)>,
    actor: Vec<ActorKey>,
    endpoint: EndpointRef,
    samples: Vec<Sample>,
    sources: Vec<IpAddr>,
    source_set: Distinct,
    source_keys: u64,
    /// The /24 (/64) every source so far belongs to: `None` before the first, `Some(None)`
    /// once two differ.
    common_subnet: Option<Option<ipnet::IpNet>>,
    /// Sources per network (/16 for IPv4, /48 for IPv6), at most [`MAX_NETWORKS`].
    networks: Vec<(ipnet::IpNet, u64)>,
    /// Sources in networks beyond the list.
    networks_other: u64,
    /// (time, source, path) of the last event counted: one event that satisfies two of a
    /// detector's windows is counted and sampled once.
    last_event: (u64, u64, u64),
    /// Bus partition of the last event that hit it (its owner restores it, issue 18).
    partition: Option<i32>,
    /// Unchanged since the last checkpoint.
    saved: bool,
}

impl Campaign {
    /// A hit of `events` new events at `now`: times, severity and confidence raised.
    fn raise(&mut self, h: &Hit, now: u64, events: u64) {
        self.events += events;
        self.last_us = self.last_us.max(now);
        self.start_us = self.start_us.min(now);
        self.dirty = true;
        self.severity = self.severity.max(h.severity);
        self.confidence = self.confidence.max(h.confidence);
    }

    /// Counts a source of the campaign (listed, its networks counted, once per source).
    fn add_source(&mut self, ip: IpAddr, ip_key: u64, subnet: ipnet::IpNet) {
        self.common_subnet = match self.common_subnet {
            None => Some(Some(subnet)),
            Some(Some(net)) if net != subnet => Some(None),
            same => same,
        };
        if self.source_set.insert(ip_key) {
            self.source_keys += 1;
            if self.sources.len() < MAX_SOURCES && !self.sources.contains(&ip) {
                self.sources.push(ip);
            }
            let net = network_of(ip);
            if let Some((_, k)) = self.networks.iter_mut().find(|(n, _)| *n == net) {
                *k += 1;
            } else if self.networks.len() < MAX_NETWORKS {
                self.networks.push((net, 1));
            } else {
                self.networks_other += 1;
            }
        }
    }
}

/// A stage-2 hit ([`Campaigns::hit_merged`]).
#[derive(Debug)]
pub(crate) struct MergedHit<'a> {
    pub hit: &'a Hit<'a>,
    /// The campaign key ([`campaign_key`]).
    pub key: u64,
    /// Stream time of the hit (the latest event of the merged window).
    pub now: u64,
    pub actor: Vec<ActorKey>,
    pub endpoint: EndpointRef,
    /// Source addresses and their keyed hashes.
    pub sources: &'a [(IpAddr, u64)],
    /// Every source of the merged partial (keyed hashes).
    pub source_set: &'a Distinct,
    /// Events the hit adds to the campaign.
    pub events: u64,
}

/// Networks listed per campaign.
const MAX_NETWORKS: usize = 16;
/// Successful attempts always kept as samples (a campaign's consequence, called out).
const MAX_SUCCESS_SAMPLES: usize = 4;

/// The /16 (IPv4, IPv4-mapped) or /48 (IPv6) network of `ip`: what a distributed
/// campaign's sources have in common when they spread over many /24s.
pub(crate) fn network_of(ip: std::net::IpAddr) -> ipnet::IpNet {
    use std::net::IpAddr;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let len = if ip.is_ipv4() { 16 } else { 48 };
    ipnet::IpNet::new(ip, len).map_or_else(|_| ipnet::IpNet::from(ip), |n| n.trunc())
}

/// Open campaigns.
#[derive(Debug)]
pub struct Campaigns {
    open: HashMap<u64, Campaign, RandomState>,
    lifecycle: Lifecycle,
    max: usize,
    max_samples: usize,
    /// Campaigns not opened because `limits.max_campaigns` were open.
    pub dropped: u64,
    /// Findings emitted, by activity (Create, Update, Close).
    pub emitted: [u64; 3],
    /// Bus partition of the events being observed ([`Campaigns::set_partition`]).
    partition: Option<i32>,
    /// Keys of campaigns closed since the last checkpoint (deleted from the state store),
    /// at most [`MAX_TOMBSTONES`].
    closed: Vec<u64>,
    /// Deletes not recorded because [`MAX_TOMBSTONES`] were pending (the store keeps those
    /// campaigns until the analyzer restores and closes them).
    pub tombstones_dropped: u64,
}

/// Deletes of closed campaigns held between two checkpoints at most.
const MAX_TOMBSTONES: usize = 65_536;

/// Sources listed per campaign.
const MAX_SOURCES: usize = 16;

impl Campaigns {
    pub(crate) fn new(lifecycle: Lifecycle, limits: &Limits) -> Self {
        Campaigns {
            open: HashMap::with_hasher(RandomState::default()),
            lifecycle,
            max: limits.max_campaigns,
            max_samples: limits.max_samples_per_campaign,
            dropped: 0,
            emitted: [0; 3],
            partition: None,
            closed: Vec::new(),
            tombstones_dropped: 0,
        }
    }

    /// Open campaigns.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    /// No open campaign.
    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Records a hit; opens the campaign on the first one.
    pub(crate) fn hit(&mut self, h: &Hit, o: &Obs, keyer: &Keyer) {
        let mut k = key(h.detector, h.kind, h.scope, h.any_endpoint, o, keyer);
        if h.detector == Detector::AbnormalAccess
            && h.kind == "bulk_records"
            && !self.open.contains_key(&k)
            && let Some(walk) = self.walk_of(o)
        {
            // The records pulled by a crawl or an ID walk are that campaign's consequence,
            // not a second campaign: one alert per campaign, its counters and severity raised.
            k = walk;
        }
        let endpoint = || {
            if h.any_endpoint {
                EndpointRef {
                    service: o.service.to_owned(),
                    method: "*".into(),
                    template: "*".into(),
                }
            } else {
                EndpointRef {
                    service: o.service.to_owned(),
                    method: o.method.to_owned(),
                    template: o.template.to_owned(),
                }
            }
        };
        let max_samples = self.max_samples;
        let Some(c) = self.open_for(k, h, o.now, || actor_keys(h, o), endpoint) else {
            return;
        };
        let event = (o.now, o.actor.ip_key, o.path_key);
        let repeat = c.last_event == event && c.events > 0;
        c.last_event = event;
        if repeat {
            return;
        }
        c.raise(h, o.now, 1);
        c.add_source(o.actor.ip, o.actor.ip_key, o.actor.subnet);
        if o.outcome == crate::Outcome::Success {
            keep_success(&mut c.samples, max_samples, sample(o));
        } else if c.samples.len() < max_samples {
            c.samples.push(sample(o));
        }
    }

    /// A hit of stage 2 (issue 18, [`crate::global`]): a global detector's condition holds on
    /// the merged partial aggregates of every analyzer. `key` is the campaign key the
    /// single-instance detector would use ([`campaign_key`]); `events` the events the merged
    /// partial counted; `sources` the addresses it lists.
    pub(crate) fn hit_merged(&mut self, m: &MergedHit) {
        let Some(c) = self.open_for(
            m.key,
            m.hit,
            m.now,
            || m.actor.clone(),
            || m.endpoint.clone(),
        ) else {
            return;
        };
        if m.events == 0 {
            return;
        }
        c.raise(m.hit, m.now, m.events);
        for (ip, ip_key) in m.sources {
            c.add_source(*ip, *ip_key, crate::actor::subnet_of(*ip));
        }
        // Sources beyond the listed ones count by the partial's distinct set (their networks
        // are not known).
        c.source_set.merge(m.source_set);
        c.source_keys = c.source_keys.max(c.source_set.count());
    }

    /// The open campaign `k` after a hit at `now`: opened (uid, actor keys, endpoint, title)
    /// when it is not open, its counters raised by `h`'s ([`Campaign::raise`] does the rest). `None`: it could
    /// not be opened (`limits.max_campaigns`, counted).
    fn open_for(
        &mut self,
        k: u64,
        h: &Hit,
        now: u64,
        actor: impl FnOnce() -> Vec<ActorKey>,
        endpoint: impl FnOnce() -> EndpointRef,
    ) -> Option<&mut Campaign> {
        if !self.open.contains_key(&k) {
            if self.open.len() >= self.max {
                self.dropped += 1;
                return None;
            }
            let uid = format!(
                "{:032x}",
                xxhash_rust::xxh3::xxh3_128(&[&k.to_le_bytes()[..], &now.to_le_bytes()].concat())
            );
            let actor = actor();
            let endpoint = endpoint();
            let title = title(h.detector, h.kind, &actor, &endpoint);
            tracing::debug!(detector = h.detector.name(), kind = h.kind, uid = %uid, "campaign opened");
            self.open.insert(
                k,
                Campaign {
                    uid,
                    detector: h.detector,
                    kind: h.kind,
                    title,
                    severity: h.severity,
                    confidence: h.confidence,
                    start_us: now,
                    last_us: now,
                    created_us: 0,
                    last_emit_us: 0,
                    created: false,
                    dirty: true,
                    seq: 0,
                    events: 0,
                    counts: Vec::with_capacity(h.counts.len()),
                    actor,
                    endpoint,
                    samples: Vec::new(),
                    sources: Vec::new(),
                    source_set: Distinct::default(),
                    source_keys: 0,
                    common_subnet: None,
                    networks: Vec::new(),
                    networks_other: 0,
                    last_event: (0, 0, 0),
                    partition: self.partition,
                    saved: false,
                },
            );
        }
        let c = self.open.get_mut(&k)?;
        c.saved = false;
        c.partition = self.partition.or(c.partition);
        for (name, v) in h.counts {
            match c.counts.iter_mut().find(|(n, _)| n == name) {
                Some((_, old)) => *old = (*old).max(*v),
                None => c.counts.push((name, *v)),
            }
        }
        Some(c)
    }

    /// Adds earlier successful attempts (`samples`, made by [`sample`] before the campaign
    /// existed) to the campaign `h` raised for `o`, one per source, as [`Campaigns::hit`]
    /// keeps successes: they replace ordinary samples, at most [`MAX_SUCCESS_SAMPLES`].
    pub(crate) fn add_success_samples(
        &mut self,
        h: &Hit,
        o: &Obs,
        keyer: &Keyer,
        samples: &[Sample],
    ) {
        let k = key(h.detector, h.kind, h.scope, h.any_endpoint, o, keyer);
        let max = self.max_samples;
        let Some(c) = self.open.get_mut(&k) else {
            return;
        };
        for s in samples.iter().filter(|s| is_success(s)) {
            keep_success(&mut c.samples, max, s.clone());
        }
    }

    /// The open crawling or enumeration campaign of the event's client address, if any.
    fn walk_of(&self, o: &Obs) -> Option<u64> {
        let ip = o.actor.ip.to_string();
        self.open
            .iter()
            .filter(|(_, c)| matches!(c.detector, Detector::Crawling | Detector::Enumeration))
            .filter(|(_, c)| {
                c.actor
                    .iter()
                    .any(|a| a.kind == "client_ip" && a.value == ip)
            })
            // The oldest, so that the choice does not depend on the table's order.
            .min_by(|a, b| (a.1.start_us, &a.1.uid).cmp(&(b.1.start_us, &b.1.uid)))
            .map(|(k, _)| *k)
    }

    /// Lifecycle transitions due at `now` (µs stream time).
    pub(crate) fn tick(&mut self, now: u64) -> Vec<Finding> {
        let quiet = self.lifecycle.quiet_secs * 1_000_000;
        let every = self.lifecycle.update_interval_secs * 1_000_000;
        let mut out = Vec::new();
        let mut closed = Vec::new();
        for (k, c) in self.open.iter_mut() {
            if !c.created {
                c.saved = false;
                c.created = true;
                c.created_us = now.max(c.last_us);
                c.last_emit_us = c.created_us;
                c.dirty = false;
                out.push(render(c, Activity::Create, c.created_us));
                self.emitted[0] += 1;
            } else if now.saturating_sub(c.last_us) >= quiet {
                c.seq += 1;
                out.push(render(c, Activity::Close, now));
                self.emitted[2] += 1;
                closed.push(*k);
            } else if c.dirty && now.saturating_sub(c.last_emit_us) >= every {
                c.saved = false;
                c.seq += 1;
                c.last_emit_us = now;
                c.dirty = false;
                out.push(render(c, Activity::Update, now));
                self.emitted[1] += 1;
            }
        }
        for k in closed {
            self.open.remove(&k);
            self.tombstone(k);
        }
        out.sort_by(|a, b| (a.time_us, &a.uid).cmp(&(b.time_us, &b.uid)));
        out
    }

    /// Closes every campaign (end of input): Create for those never reported, then Close.
    pub(crate) fn close_all(&mut self, now: u64) -> Vec<Finding> {
        let mut out = self.tick(now);
        let mut closes = Vec::with_capacity(self.open.len());
        let drained: Vec<(u64, Campaign)> = self.open.drain().collect();
        for (k, mut c) in drained {
            self.tombstone(k);
            c.seq += 1;
            closes.push(render(&c, Activity::Close, now.max(c.last_us)));
            self.emitted[2] += 1;
        }
        // Same order as `tick`: the table's iteration order must not leak into the output.
        closes.sort_by(|a, b| (a.time_us, &a.uid).cmp(&(b.time_us, &b.uid)));
        out.extend(closes);
        out
    }

    /// Bytes held (approximate: table plus strings and vectors).
    pub fn bytes(&self) -> usize {
        self.open.capacity() * (std::mem::size_of::<(u64, Campaign)>() + 1)
            + self
                .open
                .values()
                .map(|c| {
                    c.uid.capacity()
                        + c.title.capacity()
                        + c.counts.capacity() * 24
                        + c.actor
                            .iter()
                            .map(|a| a.value.capacity() + 40)
                            .sum::<usize>()
                        + c.samples.len() * 256
                        + c.sources.capacity() * 17
                        + c.source_set.heap_bytes()
                })
                .sum::<usize>()
    }
}

/// A campaign as a checkpoint record (issue 18): everything that decides its next reports —
/// uid, whether its Create went out, when its last Update went out, its sequence number,
/// counters, sources — but not its samples.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct CampaignState {
    uid: String,
    detector: Detector,
    kind: String,
    title: String,
    severity: Severity,
    confidence: u8,
    start_us: u64,
    last_us: u64,
    created_us: u64,
    last_emit_us: u64,
    created: bool,
    dirty: bool,
    seq: u32,
    events: u64,
    counts: Vec<(String, u64)>,
    actor: Vec<(String, String)>,
    endpoint: (String, String, String),
    sources: Vec<IpAddr>,
    source_set: crate::sketch::DistinctParts,
    source_keys: u64,
    common_subnet: Option<Option<String>>,
    networks: Vec<(String, u64)>,
    networks_other: u64,
    partition: Option<i32>,
}

/// Counters and actor keys a campaign record may hold at most.
const MAX_STATE_LIST: usize = 64;

impl CampaignState {
    fn of(c: &Campaign) -> CampaignState {
        CampaignState {
            uid: c.uid.clone(),
            detector: c.detector,
            kind: c.kind.to_owned(),
            title: c.title.clone(),
            severity: c.severity,
            confidence: c.confidence,
            start_us: c.start_us,
            last_us: c.last_us,
            created_us: c.created_us,
            last_emit_us: c.last_emit_us,
            created: c.created,
            dirty: c.dirty,
            seq: c.seq,
            events: c.events,
            counts: c
                .counts
                .iter()
                .map(|(n, v)| ((*n).to_owned(), *v))
                .collect(),
            actor: (c.actor.iter())
                .map(|a| (a.kind.to_owned(), a.value.clone()))
                .collect(),
            endpoint: (
                c.endpoint.service.clone(),
                c.endpoint.method.clone(),
                c.endpoint.template.clone(),
            ),
            sources: c.sources.clone(),
            source_set: c.source_set.to_parts(),
            source_keys: c.source_keys,
            common_subnet: c.common_subnet.map(|n| n.map(|n| n.to_string())),
            networks: c
                .networks
                .iter()
                .map(|(n, k)| (n.to_string(), *k))
                .collect(),
            networks_other: c.networks_other,
            partition: c.partition,
        }
    }

    fn into_campaign(self) -> Result<Campaign, StateError> {
        if self.counts.len() > MAX_STATE_LIST
            || self.actor.len() > MAX_STATE_LIST
            || self.sources.len() > MAX_SOURCES
            || self.networks.len() > MAX_NETWORKS
        {
            return Err(StateError::Corrupt);
        }
        let net = |s: &str| s.parse::<ipnet::IpNet>().map_err(|_| StateError::Corrupt);
        let counts = (self.counts.iter())
            .map(|(n, v)| Ok((intern(n)?, *v)))
            .collect::<Result<Vec<_>, StateError>>()?;
        let actor = (self.actor.into_iter())
            .map(|(kind, value)| {
                Ok(ActorKey {
                    kind: intern(&kind)?,
                    value,
                })
            })
            .collect::<Result<Vec<_>, StateError>>()?;
        let networks = (self.networks.iter())
            .map(|(n, k)| Ok((net(n)?, *k)))
            .collect::<Result<Vec<_>, StateError>>()?;
        let common_subnet = match &self.common_subnet {
            None => None,
            Some(None) => Some(None),
            Some(Some(n)) => Some(Some(net(n)?)),
        };
        Ok(Campaign {
            uid: self.uid,
            detector: self.detector,
            kind: intern(&self.kind)?,
            title: self.title,
            severity: self.severity,
            confidence: self.confidence,
            start_us: self.start_us,
            last_us: self.last_us,
            created_us: self.created_us,
            last_emit_us: self.last_emit_us,
            created: self.created,
            dirty: self.dirty,
            seq: self.seq,
            events: self.events,
            counts,
            actor,
            endpoint: EndpointRef {
                service: self.endpoint.0,
                method: self.endpoint.1,
                template: self.endpoint.2,
            },
            samples: Vec::new(),
            sources: self.sources,
            source_set: Distinct::from_parts(&self.source_set).ok_or(StateError::Corrupt)?,
            source_keys: self.source_keys,
            common_subnet,
            networks,
            networks_other: self.networks_other,
            last_event: (0, 0, 0),
            partition: self.partition,
            saved: true,
        })
    }
}

/// The state-store key of campaign `k`.
fn state_key(k: u64) -> String {
    format!("{CAMPAIGN_PREFIX}{k:016x}")
}

impl Campaigns {
    /// The bus partition of the events observed from now on (campaigns they hit are
    /// restored by that partition's owner).
    pub(crate) fn set_partition(&mut self, p: Option<i32>) {
        self.partition = p;
    }

    fn tombstone(&mut self, k: u64) {
        if self.closed.len() < MAX_TOMBSTONES {
            self.closed.push(k);
        } else {
            self.tombstones_dropped += 1;
        }
    }

    /// Records of the campaigns changed since the last call, deletes of those closed.
    pub(crate) fn checkpoint(&mut self, out: &mut StateChanges) {
        for (k, c) in self.open.iter_mut().filter(|(_, c)| !c.saved) {
            if let Some(v) = checkpoint::encode(&CampaignState::of(c)) {
                out.put.push((state_key(*k), v));
                c.saved = true;
            }
        }
        out.delete.extend(self.closed.drain(..).map(state_key));
    }

    /// Opens the campaign of a checkpoint record (`key` without its prefix), unless it is
    /// open already, or `owned` refuses its partition.
    pub(crate) fn restore(
        &mut self,
        key: &str,
        value: &[u8],
        owned: &dyn Fn(Option<i32>) -> bool,
    ) -> Result<Restored, StateError> {
        let k = u64::from_str_radix(key, 16).map_err(|_| StateError::Corrupt)?;
        let st: CampaignState = checkpoint::decode(value)?;
        if self.open.contains_key(&k) || !owned(st.partition) {
            return Ok(Restored::CampaignSkipped);
        }
        if self.open.len() >= self.max {
            self.dropped += 1;
            return Ok(Restored::CampaignSkipped);
        }
        let c = st.into_campaign()?;
        tracing::debug!(uid = %c.uid, "campaign restored");
        self.open.insert(k, c);
        Ok(Restored::Campaign)
    }

    /// A checkpoint's records did not reach the store: every campaign is written again
    /// next time, and the deletes in `changes` are pending again.
    pub(crate) fn checkpoint_failed(&mut self, changes: &StateChanges) {
        for c in self.open.values_mut() {
            c.saved = false;
        }
        for k in &changes.delete {
            if let Some(k) = k
                .strip_prefix(CAMPAIGN_PREFIX)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                self.tombstone(k);
            }
        }
    }

    /// Drops, without a Close, the campaigns last hit by events of `partitions` (revoked:
    /// their new owner restores them). Returns how many.
    pub(crate) fn forget_partitions(&mut self, partitions: &[i32]) -> usize {
        let before = self.open.len();
        self.open
            .retain(|_, c| !c.partition.is_some_and(|p| partitions.contains(&p)));
        before - self.open.len()
    }
}

fn key(
    detector: Detector,
    kind: &str,
    scope: Scope,
    any_endpoint: bool,
    o: &Obs,
    keyer: &Keyer,
) -> u64 {
    let actor = match scope {
        Scope::Ip => o.actor.ip_key,
        Scope::Account => o.actor.account.map_or(o.actor.ip_key, |a| a.key),
        Scope::LoginUser => o.actor.login_user.unwrap_or(o.actor.ip_key),
        Scope::Fingerprint => o.actor.fingerprint,
        Scope::Endpoint => 0,
    };
    let ep = if any_endpoint {
        o.service_key
    } else {
        o.endpoint_key
    };
    campaign_key(keyer, detector, kind, actor, ep)
}

/// The key of the campaign of `detector`'s `kind` for the actor key `actor` (0 for a whole
/// endpoint) on the endpoint or service key `ep`.
pub(crate) fn campaign_key(
    keyer: &Keyer,
    detector: Detector,
    kind: &str,
    actor: u64,
    ep: u64,
) -> u64 {
    keyer.hash_parts(
        Domain::Campaign,
        &[
            detector.name().as_bytes(),
            kind.as_bytes(),
            &actor.to_le_bytes(),
            &ep.to_le_bytes(),
        ],
    )
}

/// Kinds of one account used or attacked from many sources (issue 18): their actor is the
/// account alone — the address, subnet and User-Agent of whichever event opened the campaign
/// say nothing about it (its sources are listed), and stage 2 ([`crate::global`]), which
/// sees merged windows and no single event, names it the same way.
fn account_only(detector: Detector, kind: &str) -> bool {
    matches!(
        (detector, kind),
        (Detector::AbnormalAccess, "account_sharing")
            | (Detector::BruteForce, "distributed_on_account")
    )
}

fn actor_keys(h: &Hit, o: &Obs) -> Vec<ActorKey> {
    let (detector, scope) = (h.detector, h.scope);
    let a = &o.actor;
    // A stuffing source tries a different user name on every attempt: the name of the first
    // attempt is not who the actor is (credentials it holds — JWT, session, API key — are).
    let tried_name = |acc: &crate::actor::Account| {
        matches!(
            acc.kind,
            crate::actor::AccountKind::LoginBody | crate::actor::AccountKind::Basic
        )
    };
    let account_of_actor = a
        .account
        .filter(|acc| !(detector == Detector::CredentialStuffing && tried_name(acc)));
    let mut v = Vec::with_capacity(5);
    let ip = ActorKey {
        kind: "client_ip",
        value: a.ip.to_string(),
    };
    let subnet = ActorKey {
        kind: "subnet",
        value: a.subnet.to_string(),
    };
    let ua = ActorKey {
        kind: "user_agent_family",
        value: a.ua.name().to_owned(),
    };
    let account = account_of_actor.map(|acc| ActorKey {
        kind: "account",
        value: acc.render(),
    });
    if account_only(detector, h.kind) {
        match (scope, &account, a.login_user) {
            (Scope::Account, Some(acc), _) => return vec![acc.clone()],
            (Scope::LoginUser, _, Some(u)) => {
                return vec![ActorKey {
                    kind: "login_user",
                    value: format!("login_user:{u:016x}"),
                }];
            }
            _ => {}
        }
    }
    match scope {
        Scope::Ip => {
            v.push(ip);
            v.push(subnet);
            v.push(ua);
            v.extend(account);
        }
        Scope::Account => {
            v.extend(account);
            v.push(ip);
            v.push(subnet);
            v.push(ua);
        }
        Scope::LoginUser => {
            if let Some(u) = a.login_user {
                v.push(ActorKey {
                    kind: "login_user",
                    value: format!("login_user:{u:016x}"),
                });
            }
            v.push(ip);
            v.push(ua);
        }
        Scope::Fingerprint => {
            v.push(ActorKey {
                kind: "fingerprint",
                value: format!("{:016x}", a.fingerprint),
            });
            v.push(ua);
        }
        Scope::Endpoint => {
            v.push(ActorKey {
                kind: "scope",
                value: "distributed".into(),
            });
        }
    }
    v
}

fn title(d: Detector, kind: &str, actor: &[ActorKey], ep: &EndpointRef) -> String {
    let who = actor
        .first()
        .map_or_else(|| "unknown actor".to_owned(), |k| k.value.clone());
    let what = match (d, kind) {
        (Detector::Crawling, "distributed") => "Distributed crawling",
        (Detector::Crawling, _) => "Crawling / scraping",
        (Detector::Enumeration, _) => "Object ID enumeration (BOLA probing)",
        (Detector::CredentialStuffing, "distributed") => "Distributed credential stuffing",
        (Detector::CredentialStuffing, _) => "Credential stuffing",
        (Detector::BruteForce, "possible_account_takeover") => {
            "Possible account takeover after failed logins"
        }
        (Detector::BruteForce, _) => "Password brute force",
        (Detector::OtpGuessing, _) => "OTP / SMS code guessing",
        (Detector::AbnormalAccess, "bulk_records") => "Abnormal volume of sensitive records",
        (Detector::AbnormalAccess, "bulk_export") => "Bulk export of sensitive records",
        (Detector::AbnormalAccess, "off_hours_access") => {
            "Sensitive data accessed outside working hours"
        }
        (Detector::AbnormalAccess, "account_sharing") => "Account used from many addresses",
        (Detector::AbnormalAccess, "foreign_access_internal_api") => {
            "Internal API accessed from a foreign address"
        }
        (Detector::AbnormalAccess, _) => "Abnormal data access",
    };
    if ep.template == "*" {
        format!("{what} by {who} on {}", ep.service)
    } else {
        format!(
            "{what} by {who} on {} {} {}",
            ep.method, ep.service, ep.template
        )
    }
}

/// Keeps a successful attempt among `samples` (at most `max`): one per source, at most
/// [`MAX_SUCCESS_SAMPLES`]; a success in a stuffing or guessing campaign is what the analyst
/// must see, so it replaces the latest ordinary sample when the list is full.
fn keep_success(samples: &mut Vec<Sample>, max: usize, s: Sample) {
    if samples
        .iter()
        .any(|x| is_success(x) && x.client_ip == s.client_ip)
    {
        return;
    }
    if samples.len() < max {
        samples.push(s);
    } else if samples.iter().filter(|x| is_success(x)).count() < MAX_SUCCESS_SAMPLES
        && let Some(i) = samples.iter().rposition(|x| !is_success(x))
    {
        samples[i] = s;
    }
}

fn is_success(s: &Sample) -> bool {
    s.outcome.is_some_and(|(o, _)| o == "success")
}

fn render(c: &Campaign, activity: Activity, now: u64) -> Finding {
    let mut networks: Vec<(String, u64)> = c
        .networks
        .iter()
        .map(|(n, k)| (n.to_string(), *k))
        .collect();
    networks.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Finding {
        activity,
        uid: c.uid.clone(),
        seq: c.seq,
        detector: c.detector,
        kind: c.kind,
        title: c.title.clone(),
        severity: c.severity,
        confidence: c.confidence,
        time_us: now,
        created_us: c.created_us,
        start_us: c.start_us,
        end_us: c.last_us,
        events: c.events,
        counts: consistent_counts(&c.counts),
        actor: actor_with_subnet(c),
        sources: c.sources.clone(),
        source_count: c.source_set.count().max(c.sources.len() as u64).max(
            c.counts
                .iter()
                .find(|(n, _)| *n == "distinct_sources")
                .map_or(0, |(_, v)| *v),
        ),
        endpoint: c.endpoint.clone(),
        samples: c.samples.clone(),
        networks,
        networks_other: c.networks_other,
    }
}

/// A distributed campaign's actor, plus the subnet when every source so far is in one /24
/// (/64): what a SIEM blocks.
/// The counts as shown: a `distinct_*` count above eight values is a HyperLogLog estimate
/// (≈ 6.5 %), which can exceed the number of events it counts over (389 distinct IDs in 373
/// requests); it is shown at most at the largest plain count of the same finding, since a
/// reader takes the two as facts about the same traffic.
fn consistent_counts(counts: &[(&'static str, u64)]) -> Vec<(&'static str, u64)> {
    let total = counts
        .iter()
        .filter(|(n, _)| !n.starts_with("distinct_"))
        .map(|(_, v)| *v)
        .max();
    counts
        .iter()
        .map(|&(n, v)| match total {
            Some(t) if n.starts_with("distinct_") => (n, v.min(t)),
            _ => (n, v),
        })
        .collect()
}

fn actor_with_subnet(c: &Campaign) -> Vec<ActorKey> {
    let mut actor = c.actor.clone();
    if actor.iter().any(|a| a.kind == "scope")
        && !actor.iter().any(|a| a.kind == "subnet")
        && c.source_keys >= 2
        && let Some(Some(net)) = c.common_subnet
    {
        actor.push(ActorKey {
            kind: "subnet",
            value: net.to_string(),
        });
    }
    actor
}

/// Masks an id-like value: at most the last two characters kept.
fn mask_id(seg: &str, out: &mut String) {
    let n = seg.chars().count();
    let keep = if n >= 6 { 2 } else { 0 };
    for _ in 0..(n - keep).clamp(1, 16) {
        out.push('*');
    }
    out.extend(seg.chars().skip(n - keep));
}

/// The path with template parameters and id-like segments masked.
pub(crate) fn mask_path(path: &str, template: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut t = template.split('/');
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let param = t.next().is_some_and(|t| t.starts_with('{'));
        if !seg.is_empty() && (param || id_like(seg)) {
            mask_id(seg, &mut out);
        } else {
            out.push_str(seg);
        }
    }
    out
}

/// The query with every value masked.
pub(crate) fn mask_query(q: &str) -> String {
    q.split('&')
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !v.is_empty() => format!("{k}=***"),
            _ => p.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A user name for evidence, masked per the labels crate's policy for its shape (e-mail,
/// mobile), otherwise replaced by its keyed hash.
pub(crate) fn mask_username(raw: &str, hash: u64) -> String {
    let raw = raw.trim();
    let (label, is) = if raw.contains('@') {
        (Label::Email, true)
    } else if raw.len() == 11 && raw.starts_with('1') && raw.bytes().all(|b| b.is_ascii_digit()) {
        (Label::Mobile, true)
    } else {
        (Label::Email, false)
    };
    if !is {
        return format!("login_user:{hash:016x}");
    }
    let chars: Vec<char> = raw.chars().collect();
    let (p, s) = match mask_policy(label) {
        Keep::Chars(p, s) => (usize::from(p), usize::from(s)),
        Keep::Email => {
            let at = chars.iter().position(|c| *c == '@').unwrap_or(0);
            (1.min(at), chars.len() - at)
        }
        _ => (0, 0),
    };
    if p + s >= chars.len() {
        return format!("login_user:{hash:016x}");
    }
    let mut out: String = chars[..p].iter().collect();
    for _ in 0..(chars.len() - p - s).clamp(1, 16) {
        out.push('*');
    }
    out.extend(&chars[chars.len() - s..]);
    out
}

pub(crate) fn sample(o: &Obs) -> Sample {
    Sample {
        time_us: o.now,
        client_ip: o.actor.ip,
        method: o.method.to_owned(),
        path: mask_path(&o.ev.request.path, o.template),
        query: o.ev.request.query.as_deref().map(mask_query),
        status: o.status,
        user_agent_family: o.actor.ua.name(),
        login_user: o.login_user.as_ref().map(LoginUser::masked),
        records: o.records,
        outcome: match o.outcome {
            crate::Outcome::Success => Some(("success", o.signal.as_str())),
            crate::Outcome::Failure => Some(("failure", o.signal.as_str())),
            crate::Outcome::Unknown => None,
        },
        server: Some((o.ev.server.ip, o.ev.server.port)),
        server_workload: o.ev.server_workload.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_estimates_never_exceed_the_counts_they_are_over() {
        let c = [("requests", 373), ("distinct_ids", 389), ("not_found", 12)];
        assert_eq!(
            consistent_counts(&c),
            [("requests", 373), ("distinct_ids", 373), ("not_found", 12)]
        );
        // Only distinct counts: nothing to compare with, shown as estimated.
        let c = [("distinct_paths", 70), ("distinct_templates", 3)];
        assert_eq!(consistent_counts(&c), c);
    }

    #[test]
    fn masking() {
        assert_eq!(
            mask_path("/api/users/1024", "/api/users/{id}"),
            "/api/users/****"
        );
        assert_eq!(
            mask_path("/api/users/10245678", "/api/users/{id}"),
            "/api/users/******78"
        );
        assert_eq!(mask_path("/files/report", "/files/{name}"), "/files/****rt");
        assert_eq!(mask_path("/a/b", "/a/b"), "/a/b");
        assert_eq!(
            mask_query("page=2&token=abc&flag"),
            "page=***&token=***&flag"
        );
        assert_eq!(mask_username("alice@example.com", 1), "a****@example.com");
        assert_eq!(mask_username("13812345678", 1), "138****5678");
        assert_eq!(mask_username("admin", 0xab), "login_user:00000000000000ab");
    }
}
