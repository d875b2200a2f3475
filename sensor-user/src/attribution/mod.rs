//! Attribution of events to what runs on this host (R-CAP-5): the sensor names the cgroup,
//! systemd unit, processes, container and Kubernetes pod that own a connection's local socket.
//!
//! The kernel side (`apitap_cgroup_egress`, a `cgroup_skb/egress` program on the cgroup v2
//! root) records each captured flow's socket cgroup and uid in an LRU map. The agent looks the
//! map up once per connection (both directions: the server's socket, and the client's when
//! the client is local), resolves cgroup ids to paths ([`cgroup`]), reads container and pod
//! ids out of the paths, and names pods from the Kubernetes API ([`kubernetes`]). Results are
//! cached per connection and per cgroup, bounded, and every miss is counted by cause.
//!
//! Without Kubernetes, or outside containers, events still carry the cgroup, the systemd unit
//! and the processes' names. Without the cgroup program (attribution off) they carry none.

pub mod cgroup;
pub mod kubernetes;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use apitap_common::{FAMILY_IPV4, FAMILY_IPV6, FlowKey, FlowOwner};
use apitap_schema::{ApiEvent, Endpoint, KubernetesPod, Workload};

use self::kubernetes::{PodIndex, PodIndexStats};

/// A resolved workload is re-read after this long (processes come and go).
const WORKLOAD_TTL: Duration = Duration::from_secs(60);
/// Workloads cached at most (distinct (cgroup, uid) pairs).
const MAX_WORKLOADS: usize = 16_384;

/// Where flow owners come from: the kernel's LRU map, or a table in tests.
pub trait OwnerSource {
    /// The owner recorded for `key`, if any.
    fn owner(&self, key: &FlowKey) -> Option<FlowOwner>;
}

impl OwnerSource for aya::maps::HashMap<aya::maps::MapData, FlowKey, FlowOwner> {
    fn owner(&self, key: &FlowKey) -> Option<FlowOwner> {
        self.get(key, 0).ok()
    }
}

impl OwnerSource for HashMap<FlowKey, FlowOwner> {
    fn owner(&self, key: &FlowKey) -> Option<FlowOwner> {
        self.get(key).copied()
    }
}

/// What attribution counted (`apitap_attribution_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttributionStats {
    /// Events whose server socket's owner was found and resolved.
    pub server_attributed: u64,
    /// Events whose server socket has no recorded owner (the server is not on this host).
    pub server_not_recorded: u64,
    /// Events whose (local) client socket's owner was found and resolved.
    pub client_attributed: u64,
    /// Events whose client socket has no recorded owner (the client is not on this host).
    pub client_not_recorded: u64,
    /// Owners recorded whose cgroup no longer exists (the workload exited first).
    pub cgroup_gone: u64,
    /// Attributions whose cgroup names a pod the Kubernetes API knows.
    pub pod_found: u64,
    /// Attributions whose cgroup names a pod the API does not (yet) know.
    pub pod_unknown: u64,
    /// Lookups in the kernel's owner map.
    pub owner_lookups: u64,
    /// Times the per-connection cache was full and started over.
    pub cache_resets: u64,
    /// Scans of the cgroup hierarchy.
    pub cgroup_scans: u64,
    /// The Kubernetes pod index, when `[attribution.kubernetes]` is on.
    pub kubernetes: Option<PodIndexStats>,
}

#[derive(Debug, Clone, Copy)]
struct FlowOwners {
    server: Option<FlowOwner>,
    client: Option<FlowOwner>,
}

struct Cached {
    workload: Option<Arc<Workload>>,
    resolved: Instant,
    /// Pod index generation when resolved, for pods the API did not know then.
    generation: u64,
}

/// Attaches workloads to events (see the module documentation).
pub struct Attributor<S> {
    owners: S,
    cgroups: cgroup::Resolver,
    pods: Option<PodIndex>,
    flows: HashMap<String, FlowOwners>,
    max_flows: usize,
    workloads: HashMap<(u64, u32), Cached>,
    stats: AttributionStats,
}

impl<S: OwnerSource> Attributor<S> {
    /// Attributes with `owners` (the kernel map), cgroups under `cgroup_root`, and pods from
    /// `pods` when given; remembers `max_flows` connections at most.
    pub fn new(
        owners: S,
        cgroups: cgroup::Resolver,
        pods: Option<PodIndex>,
        max_flows: usize,
    ) -> Self {
        Attributor {
            owners,
            cgroups,
            pods,
            flows: HashMap::new(),
            max_flows: max_flows.max(1),
            workloads: HashMap::new(),
            stats: AttributionStats::default(),
        }
    }

    /// Counters, with the pod index's.
    pub fn stats(&self) -> AttributionStats {
        AttributionStats {
            cgroup_scans: self.cgroups.scans,
            kubernetes: self.pods.as_ref().map(PodIndex::stats),
            ..self.stats
        }
    }

    /// Sets `server_workload` and `client_workload` of `e`.
    pub fn attribute(&mut self, e: &mut ApiEvent) {
        let owners = match self.flows.get(e.connection_id.as_str()) {
            Some(o) => *o,
            None => {
                self.stats.owner_lookups += 2;
                let o = FlowOwners {
                    server: self.owners.owner(&flow_key(&e.server, &e.client)),
                    client: self.owners.owner(&flow_key(&e.client, &e.server)),
                };
                if self.flows.len() >= self.max_flows {
                    self.flows.clear();
                    self.stats.cache_resets += 1;
                }
                self.flows.insert(e.connection_id.clone(), o);
                o
            }
        };
        let server = owners.server.map(|o| self.workload(o));
        let client = owners.client.map(|o| self.workload(o));
        let s = &mut self.stats;
        for (side, attributed, not_recorded) in [
            (
                &server,
                &mut s.server_attributed,
                &mut s.server_not_recorded,
            ),
            (
                &client,
                &mut s.client_attributed,
                &mut s.client_not_recorded,
            ),
        ] {
            match side {
                Some(Some(_)) => *attributed += 1,
                Some(None) => {} // owner recorded, cgroup gone: counted in `cgroup_gone`
                None => *not_recorded += 1,
            }
        }
        e.server_workload = server.flatten();
        e.client_workload = client.flatten();
    }

    /// Sets the workload of the one side of `e` whose owner is known without the owner map:
    /// the traced process of TLS capture (its cgroup and uid from the probe), on the server
    /// side when `server`, else on the client side.
    pub fn attribute_known(&mut self, e: &mut ApiEvent, owner: FlowOwner, server: bool) {
        let w = self.workload(owner);
        if w.is_some() {
            if server {
                self.stats.server_attributed += 1;
            } else {
                self.stats.client_attributed += 1;
            }
        }
        if server {
            e.server_workload = w;
        } else {
            e.client_workload = w;
        }
    }

    fn workload(&mut self, o: FlowOwner) -> Option<Arc<Workload>> {
        let generation = self.pods.as_ref().map_or(0, PodIndex::generation);
        let key = (o.cgroup_id, o.uid);
        if let Some(c) = self.workloads.get(&key) {
            let waiting_for_pod = c
                .workload
                .as_ref()
                .is_some_and(|w| w.pod_uid.is_some() && w.kubernetes.is_none());
            let fresh = c.resolved.elapsed() < WORKLOAD_TTL
                && !(waiting_for_pod && c.generation != generation);
            if fresh {
                let w = c.workload.clone();
                if let Some(w) = &w {
                    self.count_pod(w);
                }
                return w;
            }
        }
        let workload = self.resolve(o).map(Arc::new);
        if let Some(w) = &workload {
            self.count_pod(w);
        } else {
            self.stats.cgroup_gone += 1;
        }
        if self.workloads.len() >= MAX_WORKLOADS {
            self.workloads.clear();
        }
        self.workloads.insert(
            key,
            Cached {
                workload: workload.clone(),
                resolved: Instant::now(),
                generation,
            },
        );
        workload
    }

    fn count_pod(&mut self, w: &Workload) {
        if w.pod_uid.is_some() && self.pods.is_some() {
            if w.kubernetes.is_some() {
                self.stats.pod_found += 1;
            } else {
                self.stats.pod_unknown += 1;
            }
        }
    }

    fn resolve(&mut self, o: FlowOwner) -> Option<Workload> {
        let path = self.cgroups.path(o.cgroup_id)?;
        let facts = cgroup::parse_path(&path);
        let processes = self.cgroups.processes(&path);
        let kubernetes = match (&self.pods, &facts.pod_uid) {
            (Some(pods), Some(uid)) => pods.get(uid).map(|p| KubernetesPod {
                namespace: p.namespace.clone(),
                pod: p.name.clone(),
                container: facts
                    .container_id
                    .as_deref()
                    .and_then(|id| p.container(id))
                    .map(str::to_owned),
                workload_kind: p.workload.as_ref().map(|(k, _)| k.clone()),
                workload_name: p.workload.as_ref().map(|(_, n)| n.clone()),
            }),
            _ => None,
        };
        Some(Workload {
            cgroup: path,
            uid: o.uid,
            unit: facts.unit,
            processes,
            container_id: facts.container_id,
            container_runtime: facts.container_runtime.map(str::to_owned),
            pod_uid: facts.pod_uid,
            kubernetes,
        })
    }
}

/// The owner-map key of the socket at `local` talking to `remote`.
pub fn flow_key(local: &Endpoint, remote: &Endpoint) -> FlowKey {
    let mut k = FlowKey {
        sport: local.port,
        dport: remote.port,
        ..FlowKey::default()
    };
    match (local.ip, remote.ip) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            k.saddr[..4].copy_from_slice(&l.octets());
            k.daddr[..4].copy_from_slice(&r.octets());
            k.family = FAMILY_IPV4;
        }
        (l, r) => {
            k.saddr = to_v6(l);
            k.daddr = to_v6(r);
            k.family = FAMILY_IPV6;
        }
    }
    k
}

fn to_v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// Skips a test outside CI; under `CI=true` a privileged test that cannot run is a failure.
#[cfg(test)]
pub(crate) fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("cannot run in CI: {why}");
    }
    eprintln!("SKIPPED: {why} (runs in CI, where this is a failure)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribution::skip;
    use apitap_schema::test_support::EventBuilder;

    fn ev(conn: &str) -> ApiEvent {
        let mut e = EventBuilder::get("/x").status(200).build();
        e.connection_id = conn.to_owned();
        e
    }

    /// A cgroup made for the test on the real hierarchy: the server side of the event is
    /// attributed to it, the (remote) client side is counted as not recorded, the result is
    /// cached per connection, and a removed cgroup is counted as gone.
    #[test]
    fn server_owner_becomes_the_events_workload() {
        let Ok(root) = cgroup::find_root(None) else {
            return skip("no cgroup v2 hierarchy");
        };
        let name = format!("apitap-attr-{}.service", std::process::id());
        let dir = root.join(&name);
        if let Err(e) = std::fs::create_dir(&dir) {
            return skip(&format!("cannot create a cgroup: {e}"));
        }
        let id = cgroup::id_of(&dir).unwrap();
        let e0 = ev("c1");
        let mut owners = HashMap::new();
        owners.insert(
            flow_key(&e0.server, &e0.client),
            FlowOwner {
                cgroup_id: id,
                uid: 33,
                _pad: 0,
            },
        );
        owners.insert(
            flow_key(
                &Endpoint {
                    ip: "::1".parse().unwrap(),
                    port: 1,
                },
                &e0.client,
            ),
            FlowOwner {
                cgroup_id: u64::MAX,
                uid: 0,
                _pad: 0,
            },
        );
        let mut a = Attributor::new(owners, cgroup::Resolver::new(root), None, 4);
        let mut e = e0.clone();
        a.attribute(&mut e);
        let w = e.server_workload.as_deref().unwrap();
        assert_eq!(w.cgroup, format!("/{name}"));
        assert_eq!(w.unit.as_deref(), Some(name.as_str()));
        assert_eq!(w.uid, 33);
        assert!(e.client_workload.is_none());
        let mut again = e0.clone();
        a.attribute(&mut again);
        assert_eq!(again.server_workload, e.server_workload);
        let s = a.stats();
        assert_eq!((s.server_attributed, s.client_not_recorded), (2, 2));
        assert_eq!(
            s.owner_lookups, 2,
            "one lookup per direction per connection"
        );
        std::fs::remove_dir(&dir).unwrap();
        // An owner whose cgroup is gone: counted, no workload.
        let mut gone = ev("c2");
        gone.server = Endpoint {
            ip: "::1".parse().unwrap(),
            port: 1,
        };
        a.attribute(&mut gone);
        assert!(gone.server_workload.is_none());
        assert_eq!(a.stats().cgroup_gone, 1);
        // The connection cache is bounded.
        for i in 0..10 {
            a.attribute(&mut ev(&format!("n{i}")));
        }
        assert!(a.flows.len() <= 4);
        assert!(a.stats().cache_resets >= 2);
    }

    /// A pod the API shows only after its first connection: the connection's next event is
    /// named (the pod index's generation invalidates the cached workload), and both outcomes
    /// are counted.
    #[test]
    fn a_pod_learned_later_names_the_next_events() {
        let Ok(root) = cgroup::find_root(None) else {
            return skip("no cgroup v2 hierarchy");
        };
        let uid = "0b1c2d3e-4f5a-6b7c-8d9e-0f1a2b3c4d5e";
        let top = format!("apitap-attr-pod-{}", std::process::id());
        let dir = root
            .join(&top)
            .join(format!("kubepods-pod{}.slice", uid.replace('-', "_")));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return skip(&format!("cannot create a cgroup: {e}"));
        }
        let e0 = ev("p1");
        let mut owners = HashMap::new();
        owners.insert(
            flow_key(&e0.server, &e0.client),
            FlowOwner {
                cgroup_id: cgroup::id_of(&dir).unwrap(),
                uid: 0,
                _pad: 0,
            },
        );
        let pods = PodIndex::default();
        let mut a = Attributor::new(
            owners,
            cgroup::Resolver::new(root.clone()),
            Some(pods.clone()),
            16,
        );
        let mut e = e0.clone();
        a.attribute(&mut e);
        let w = e.server_workload.as_deref().unwrap();
        assert_eq!(w.pod_uid.as_deref(), Some(uid));
        assert!(w.kubernetes.is_none());
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "api-0", "namespace": "bank", "uid": uid,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "api", "uid": "s", "controller": true}]}
        }))
        .unwrap();
        pods.on_event(kube::runtime::watcher::Event::Apply(pod), &mut None);
        let mut e = e0.clone();
        a.attribute(&mut e);
        let k = e
            .server_workload
            .as_deref()
            .unwrap()
            .kubernetes
            .clone()
            .unwrap();
        assert_eq!((k.namespace.as_str(), k.pod.as_str()), ("bank", "api-0"));
        assert_eq!(k.workload_kind.as_deref(), Some("StatefulSet"));
        let s = a.stats();
        assert_eq!((s.pod_unknown, s.pod_found), (1, 1));
        std::fs::remove_dir(&dir).unwrap();
        std::fs::remove_dir(root.join(&top)).unwrap();
    }

    #[test]
    fn flow_keys_match_the_kernel_layout() {
        let l = Endpoint {
            ip: "10.1.2.3".parse().unwrap(),
            port: 8080,
        };
        let r = Endpoint {
            ip: "10.9.9.9".parse().unwrap(),
            port: 40000,
        };
        let k = flow_key(&l, &r);
        assert_eq!(&k.saddr[..4], &[10, 1, 2, 3]);
        assert_eq!(&k.saddr[4..], &[0; 12]);
        assert_eq!((k.sport, k.dport, k.family), (8080, 40000, FAMILY_IPV4));
        let k6 = flow_key(
            &Endpoint {
                ip: "2001:db8::1".parse().unwrap(),
                port: 443,
            },
            &r,
        );
        assert_eq!(k6.family, FAMILY_IPV6);
        assert_eq!(k6.daddr[10..12], [0xff, 0xff]);
    }
}
