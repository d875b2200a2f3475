//! The pods of this node from the Kubernetes API (R-CAP-5): one watch (`kube-runtime`'s
//! watcher: list, then watch from the list's resource version, relist on expiry, with
//! backoff) of `pods` with `fieldSelector=spec.nodeName=<node>`, reduced to what attribution
//! needs and kept in memory. The only permission used is get/list/watch on pods.
//!
//! The capture loop reads the index without waiting on the API: until the first list
//! completes, or for a pod the API has not shown yet, events carry the cgroup facts (pod uid,
//! container id) without names, counted as `pod_unknown`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use anyhow::Context as _;
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event};
use tracing::{info, warn};

/// Pods kept at most (the kubelet's default is 110 per node; 10 000 is beyond any node).
const MAX_PODS: usize = 10_000;

/// What attribution needs of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// Container ids (64 hex digits, runtime prefix removed) to container names, from the
    /// status of containers, init containers and ephemeral containers.
    pub containers: Vec<(String, String)>,
    /// Controller kind and name, a ReplicaSet of a Deployment reported as the Deployment.
    pub workload: Option<(String, String)>,
}

impl PodMeta {
    /// Reduces a pod object; `None` without a uid.
    pub fn from_pod(pod: &Pod) -> Option<(String, PodMeta)> {
        let m = &pod.metadata;
        let uid = m.uid.clone()?;
        let mut containers = Vec::new();
        if let Some(status) = &pod.status {
            for list in [
                &status.container_statuses,
                &status.init_container_statuses,
                &status.ephemeral_container_statuses,
            ]
            .into_iter()
            .flatten()
            {
                for c in list {
                    if let Some(id) = &c.container_id {
                        // "containerd://<id>", "cri-o://<id>", "docker://<id>"
                        let id = id.rsplit("://").next().unwrap_or(id);
                        containers.push((id.to_ascii_lowercase(), c.name.clone()));
                    }
                }
            }
        }
        let workload = m.owner_references.as_ref().and_then(|refs| {
            let r = refs
                .iter()
                .find(|r| r.controller == Some(true))
                .or(refs.first())?;
            let hash = m.labels.as_ref().and_then(|l| l.get("pod-template-hash"));
            // A Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`.
            if r.kind == "ReplicaSet"
                && let Some(hash) = hash
                && let Some(dep) = r.name.strip_suffix(hash.as_str())
                && let Some(dep) = dep.strip_suffix('-')
                && !dep.is_empty()
            {
                return Some(("Deployment".to_owned(), dep.to_owned()));
            }
            Some((r.kind.clone(), r.name.clone()))
        });
        Some((
            uid.to_ascii_lowercase(),
            PodMeta {
                namespace: m.namespace.clone().unwrap_or_default(),
                name: m.name.clone().unwrap_or_default(),
                containers,
                workload,
            },
        ))
    }

    /// The name of the container with id `id`.
    pub fn container(&self, id: &str) -> Option<&str> {
        self.containers
            .iter()
            .find(|(cid, _)| cid == id)
            .map(|(_, n)| n.as_str())
    }
}

/// The node's pods by uid, shared between the watch task and the capture loop.
#[derive(Debug, Clone, Default)]
pub struct PodIndex {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pods: RwLock<HashMap<String, Arc<PodMeta>>>,
    /// Bumped on every change, so cached attributions know to look again.
    generation: AtomicU64,
    /// Watch errors (API unreachable, refused, bad responses); the watcher retries.
    errors: AtomicU64,
    /// Pods not kept because [`MAX_PODS`] were.
    overflow: AtomicU64,
    /// 1 once the first complete list arrived.
    synced: AtomicU64,
}

/// Counters of the pod index, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodIndexStats {
    /// Pods known now.
    pub pods: u64,
    /// Watch errors so far.
    pub watch_errors: u64,
    /// Pods left out because the index was full.
    pub overflow: u64,
    /// Whether the first complete list arrived.
    pub synced: bool,
}

impl PodIndex {
    /// The pod with `uid`, if the API has shown it.
    pub fn get(&self, uid: &str) -> Option<Arc<PodMeta>> {
        self.inner
            .pods
            .read()
            .ok()
            .and_then(|p| p.get(uid).cloned())
    }

    /// Changes so far (see [`Inner::generation`]).
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Relaxed)
    }

    /// Counters for metrics.
    pub fn stats(&self) -> PodIndexStats {
        PodIndexStats {
            pods: self.inner.pods.read().map(|p| p.len() as u64).unwrap_or(0),
            watch_errors: self.inner.errors.load(Ordering::Relaxed),
            overflow: self.inner.overflow.load(Ordering::Relaxed),
            synced: self.inner.synced.load(Ordering::Relaxed) == 1,
        }
    }

    fn changed(&self) {
        self.inner.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn apply(&self, pod: &Pod) {
        let Some((uid, meta)) = PodMeta::from_pod(pod) else {
            return;
        };
        if let Ok(mut pods) = self.inner.pods.write() {
            if pods.len() >= MAX_PODS && !pods.contains_key(&uid) {
                self.inner.overflow.fetch_add(1, Ordering::Relaxed);
                return;
            }
            pods.insert(uid, Arc::new(meta));
        }
        self.changed();
    }

    fn delete(&self, pod: &Pod) {
        if let Some(uid) = &pod.metadata.uid
            && let Ok(mut pods) = self.inner.pods.write()
        {
            pods.remove(&uid.to_ascii_lowercase());
        }
        self.changed();
    }

    /// Applies one watcher event; `relist` buffers a relist until it is complete so that the
    /// index never looks empty while the API is being read again.
    pub(crate) fn on_event(
        &self,
        ev: Event<Pod>,
        relist: &mut Option<HashMap<String, Arc<PodMeta>>>,
    ) {
        match ev {
            Event::Apply(p) => self.apply(&p),
            Event::Delete(p) => self.delete(&p),
            Event::Init => *relist = Some(HashMap::new()),
            Event::InitApply(p) => {
                if let (Some(buf), Some((uid, meta))) = (relist.as_mut(), PodMeta::from_pod(&p)) {
                    if buf.len() < MAX_PODS {
                        buf.insert(uid, Arc::new(meta));
                    } else {
                        self.inner.overflow.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Event::InitDone => {
                if let Some(buf) = relist.take()
                    && let Ok(mut pods) = self.inner.pods.write()
                {
                    *pods = buf;
                }
                self.inner.synced.store(1, Ordering::Relaxed);
                self.changed();
            }
        }
    }
}

/// Connects to the API server (`kubeconfig`, or in-cluster, or the usual inference) and
/// starts watching the pods of `node` on the current tokio runtime. Returns once the client
/// is configured; the first list arrives in the background.
pub async fn watch(node: &str, kubeconfig: Option<&Path>) -> anyhow::Result<PodIndex> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).with_context(|| {
                format!(
                    "`attribution.kubernetes.kubeconfig`: reading {}",
                    path.display()
                )
            })?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| {
                    format!(
                        "`attribution.kubernetes.kubeconfig`: using {}",
                        path.display()
                    )
                })?
        }
        None => kube::Config::infer().await.context(
            "`attribution.kubernetes`: no in-cluster service account and no kubeconfig (set attribution.kubernetes.kubeconfig)",
        )?,
    };
    let cluster = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
    let pods: kube::Api<Pod> = kube::Api::all(client);
    let selector = format!("spec.nodeName={node}");
    let index = PodIndex::default();
    let task_index = index.clone();
    info!(cluster = %cluster, node = %node, "watching this node's pods");
    tokio::spawn(async move {
        let mut stream = watcher::watcher(pods, watcher::Config::default().fields(&selector))
            .default_backoff()
            .boxed();
        let mut relist = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(ev) => task_index.on_event(ev, &mut relist),
                Err(e) => {
                    task_index.inner.errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, "Kubernetes pod watch failed; retrying with backoff");
                }
            }
        }
    });
    Ok(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn deployment_pod_is_reduced_to_names_and_controller() {
        let p = pod(serde_json::json!({
            "metadata": {
                "name": "web-7d4b9c6f5-x2x9z", "namespace": "shop",
                "uid": "6A1E2F3C-1B2D-4E5F-8A9B-0C1D2E3F4A5B",
                "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d4b9c6f5", "uid": "u", "controller": true}]
            },
            "status": {
                "containerStatuses": [{"name": "nginx", "containerID": "containerd://ABCD",
                    "image": "nginx", "imageID": "", "ready": true, "restartCount": 0}],
                "initContainerStatuses": [{"name": "init", "containerID": "cri-o://ef01",
                    "image": "busybox", "imageID": "", "ready": false, "restartCount": 0}]
            }
        }));
        let (uid, m) = PodMeta::from_pod(&p).unwrap();
        assert_eq!(uid, "6a1e2f3c-1b2d-4e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(
            (m.namespace.as_str(), m.name.as_str()),
            ("shop", "web-7d4b9c6f5-x2x9z")
        );
        assert_eq!(m.container("abcd"), Some("nginx"));
        assert_eq!(m.container("ef01"), Some("init"));
        assert_eq!(m.container("ffff"), None);
        assert_eq!(
            m.workload,
            Some(("Deployment".to_owned(), "web".to_owned()))
        );
    }

    #[test]
    fn other_controllers_and_bare_pods() {
        let owned = |kind: &str, name: &str| {
            pod(
                serde_json::json!({"metadata": {"name": "p", "namespace": "n", "uid": "u",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": name,
                    "uid": "o", "controller": true}]}}),
            )
        };
        let w = |p: &Pod| PodMeta::from_pod(p).unwrap().1.workload;
        assert_eq!(
            w(&owned("StatefulSet", "db")),
            Some(("StatefulSet".into(), "db".into()))
        );
        // A ReplicaSet without the Deployment's hash label stays a ReplicaSet.
        assert_eq!(
            w(&owned("ReplicaSet", "rs-1")),
            Some(("ReplicaSet".into(), "rs-1".into()))
        );
        let bare =
            pod(serde_json::json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}}));
        assert_eq!(w(&bare), None);
        assert!(PodMeta::from_pod(&pod(serde_json::json!({"metadata": {"name": "x"}}))).is_none());
    }

    #[test]
    fn relist_replaces_the_index_only_when_complete() {
        let idx = PodIndex::default();
        let p = |uid: &str| {
            pod(serde_json::json!({"metadata": {"name": uid, "namespace": "n", "uid": uid}}))
        };
        let mut relist = None;
        idx.on_event(Event::Apply(p("a")), &mut relist);
        let g = idx.generation();
        idx.on_event(Event::Init, &mut relist);
        idx.on_event(Event::InitApply(p("b")), &mut relist);
        assert!(
            idx.get("a").is_some(),
            "old pods stay visible during a relist"
        );
        assert!(idx.get("b").is_none());
        idx.on_event(Event::InitDone, &mut relist);
        assert!(idx.get("a").is_none() && idx.get("b").is_some());
        assert!(idx.generation() > g);
        assert!(idx.stats().synced);
        idx.on_event(Event::Delete(p("b")), &mut relist);
        assert_eq!(idx.stats().pods, 0);
    }
}
