//! Attribution on the real kernel (R-CAP-5, issue 19): nginx runs in a cgroup of its own,
//! the sensor's cgroup egress program records the owner of every captured connection, and
//! the events name the cgroup, the processes and, in Kubernetes, the pod. Only the
//! Kubernetes API server is stood in for (real HTTP serving a recorded `PodList`); the
//! cgroups, sockets and their owners are the kernel's.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::time::Duration;

use apitap_schema::ApiEvent;
use apitap_tests::kube_api::FakeApiServer;
use apitap_tests::{
    Cgroup, Nginx, SERVER_PORT, Sensor, Topology, metric, read_events, require_privileges,
    workspace_root,
};

/// The pod of the recorded list that the test's nginx plays: its uid and its `nginx`
/// container's id, as the kubelet's systemd cgroup driver lays them out.
const POD_UID: &str = "3f9d2c8e-5b1a-4e7f-9c6d-2a8b7e1f4c3d";
const CONTAINER_ID: &str = "8c1f0a6e2d4b9f7a3e5c1d8b6a4f2e0c9b7d5a3f1e8c6b4a2d0f9e7c5b3a1d8f";

fn tempdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("apitap-attr-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Sends `n` requests from the client namespace, each curl process in `client_cg`.
fn send(topo: &Topology, client_cg: &Cgroup, n: usize) {
    for i in 0..n {
        let mut cmd = topo.client.cmd(
            "curl",
            &[
                "-sS",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                &topo.url(&format!("/api/v1/users/{i}")),
            ],
        );
        client_cg.place(&mut cmd).unwrap();
        assert!(cmd.status().unwrap().success());
    }
}

fn wait_events(sensor: &mut Sensor, n: usize) -> Vec<ApiEvent> {
    sensor
        .wait_for_metric(
            "apitap_sensor_events_total",
            n as u64,
            Duration::from_secs(20),
        )
        .unwrap();
    sensor.stop().unwrap();
    read_events(&sensor.events).unwrap()
}

#[test]
fn events_name_the_pod_container_and_controller() {
    if !require_privileges("events_name_the_pod_container_and_controller") {
        return;
    }
    let dir = tempdir("k8s");
    let top = format!("apitap-test-{}-k8s", std::process::id());
    let pod_cg = Cgroup::create(
        &top,
        &format!(
            "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-{CONTAINER_ID}.scope",
            POD_UID.replace('-', "_")
        ),
    )
    .unwrap();
    let client_cg = Cgroup::create(&format!("{top}-client"), "curl.scope").unwrap();
    let topo = Topology::new("k8s").unwrap();
    let nginx = Nginx::start_in(&topo.server, &dir.join("nginx"), &pod_cg).unwrap();
    let pods = std::fs::read_to_string(
        workspace_root().join("tests/fixtures/kubernetes/node-a-pods.json"),
    )
    .unwrap();
    let api = FakeApiServer::start(&topo.server, pods).unwrap();
    let kubeconfig = api.kubeconfig(&dir).unwrap();
    let extra = format!(
        "{}[attribution.kubernetes]\nmode = \"on\"\nnode_name = \"node-a\"\nkubeconfig = \"{}\"\n",
        Cgroup::sensor_section().unwrap(),
        kubeconfig.display()
    );
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        &extra,
        &dir.join("sensor"),
    )
    .unwrap();
    // Traffic only once the pod list is in: the first list is asynchronous by design.
    sensor
        .wait_for_metric("apitap_kubernetes_synced", 1, Duration::from_secs(20))
        .unwrap();
    send(&topo, &client_cg, 5);
    let m = sensor
        .wait_for_metric("apitap_sensor_events_total", 5, Duration::from_secs(20))
        .unwrap();
    assert_eq!(
        metric(&m, "apitap_kubernetes_pods"),
        2,
        "both pods of node-a"
    );
    assert_eq!(metric(&m, "apitap_kubernetes_watch_errors_total"), 0);
    assert_eq!(
        metric(&m, "apitap_attribution_pods_total{result=\"found\"}"),
        5
    );
    assert_eq!(
        metric(&m, "apitap_attribution_pods_total{result=\"unknown\"}"),
        0
    );
    let events = wait_events(&mut sensor, 5);
    assert_eq!(events.len(), 5, "{}", sensor.log_text());
    for e in &events {
        assert_eq!(e.sensor.node.as_deref(), Some("node-a"));
        let w = e.server_workload.as_deref().expect("server attributed");
        assert_eq!(w.cgroup, pod_cg.path);
        assert_eq!(w.container_id.as_deref(), Some(CONTAINER_ID));
        assert_eq!(w.container_runtime.as_deref(), Some("containerd"));
        assert_eq!(w.pod_uid.as_deref(), Some(POD_UID));
        assert!(
            w.processes.iter().any(|p| p == "nginx"),
            "{:?}",
            w.processes
        );
        let k = w.kubernetes.as_ref().expect("pod named");
        assert_eq!(
            (k.namespace.as_str(), k.pod.as_str()),
            ("shop", "web-6b7f9c8d5-q4xz2")
        );
        assert_eq!(k.container.as_deref(), Some("nginx"), "not the sidecar");
        assert_eq!(k.workload_kind.as_deref(), Some("Deployment"));
        assert_eq!(k.workload_name.as_deref(), Some("web"));
        // The client is on this host too (another namespace): its own cgroup, no pod.
        let c = e
            .client_workload
            .as_deref()
            .expect("local client attributed");
        assert_eq!(c.cgroup, client_cg.path);
        assert!(c.kubernetes.is_none() && c.pod_uid.is_none());
    }
    // Least privilege as the API server saw it: only list and watch of pods on this node.
    let reqs = api.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert!(
            r.starts_with("GET /api/v1/pods?")
                && r.contains("fieldSelector=spec.nodeName%3Dnode-a"),
            "unexpected API request: {r}"
        );
    }
    assert!(reqs.iter().any(|r| r.contains("watch=true")), "{reqs:?}");
    drop(nginx);
}

/// Without Kubernetes: the cgroup, its systemd unit and the processes' names; no node.
#[test]
fn events_name_the_unit_and_processes_without_kubernetes() {
    if !require_privileges("events_name_the_unit_and_processes_without_kubernetes") {
        return;
    }
    let dir = tempdir("host");
    let top = format!("apitap-test-{}-host", std::process::id());
    let cg = Cgroup::create(&top, "system.slice/shop-api.service").unwrap();
    let client_cg = Cgroup::create(&format!("{top}-client"), "curl.scope").unwrap();
    let topo = Topology::new("host").unwrap();
    let nginx = Nginx::start_in(&topo.server, &dir.join("nginx"), &cg).unwrap();
    let mut sensor = Sensor::start_with(
        &topo.server,
        &topo.server_if,
        &[SERVER_PORT],
        &Cgroup::sensor_section().unwrap(),
        &dir.join("sensor"),
    )
    .unwrap();
    send(&topo, &client_cg, 3);
    let events = wait_events(&mut sensor, 3);
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e.sensor.node, None);
        let w = e.server_workload.as_deref().expect("server attributed");
        assert_eq!(w.cgroup, cg.path);
        assert_eq!(w.unit.as_deref(), Some("shop-api.service"));
        assert!(
            w.processes.iter().any(|p| p == "nginx"),
            "{:?}",
            w.processes
        );
        assert!(w.container_id.is_none() && w.kubernetes.is_none());
        assert_eq!(w.uid, 0);
    }
    drop(nginx);
}
