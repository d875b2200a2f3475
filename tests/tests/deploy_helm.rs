//! The Helm chart (`deploy/helm/apitap`) and the plain manifests (`deploy/kubernetes`) are valid
//! Kubernetes objects that keep least privilege (issue 19, R-OPS-3), and they do not drift
//! apart.
//!
//! - Helm v4's own Go code lints (strict) and renders the chart: `tests/helm/chart.py` drives
//!   it through PyPI's `helm-python-sdk` (Helm's SDK behind a C ABI; no `helm` binary is
//!   packaged in the registries this project reaches).
//! - Every rendered or shipped object is validated against the Kubernetes OpenAPI schemas of
//!   two versions by PyPI's `kubernetes-validate --strict` (unknown fields are errors);
//!   ServiceMonitors, a CRD kind it has no schema for, against the prometheus-operator CRD
//!   model (PyPI `cloudcoil-models-prometheus-operator`).
//! - Least privilege is asserted on what renders, and the rendered configurations pass the
//!   real `apitap-sensor check-config` / `apitap-analyzer check-config`.
//!
//! `cargo xtask setup` installs the Python packages; under `CI=true` their absence fails.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use apitap_tests::{require, workspace_bin, workspace_root};
use serde_json::{Value, json};

/// Kubernetes versions validated against: the oldest the chart supports well and the newest
/// schema `kubernetes-validate` bundles.
const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
/// What the tests import in Python (installed by `cargo xtask setup`).
const PYTHON_TOOLS: &str =
    "import helm_python, kubernetes_validate, yaml, cloudcoil.models.prometheus_operator.v1";
/// The sensor's capabilities, exactly (deploy/README.md, "What each capability is for").
const SENSOR_CAPS: [&str; 3] = ["BPF", "NET_ADMIN", "PERFMON"];
/// What TLS capture adds, for the start only (uprobe perf events; other users' /proc maps).
const TLS_CAPS: [&str; 2] = ["SYS_ADMIN", "SYS_PTRACE"];

fn tools_ready(test: &str) -> bool {
    let problem = match Command::new("python3").args(["-c", PYTHON_TOOLS]).output() {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!(
            "python3 cannot import the chart tools (run `cargo xtask setup`): {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Some(format!("python3 not runnable: {e}")),
    };
    require(test, "Helm chart validation", problem)
}

fn chart_dir() -> PathBuf {
    workspace_root().join("deploy/helm/apitap")
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("apitap-helm-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Objects and the YAML files they came from (as rendered or shipped, for the validator).
#[derive(Debug)]
struct Manifests {
    docs: Vec<Value>,
    files: Vec<PathBuf>,
}

fn chart_py() -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(workspace_root().join("tests/helm/chart.py"));
    cmd
}

/// `helm template` of the chart, the manifests written under `scratch`: Err carries Helm's
/// message when a template fails.
fn try_render(
    release: &str,
    namespace: &str,
    values: Option<&Path>,
    scratch: &Scratch,
) -> Result<Manifests, String> {
    let mut cmd = chart_py();
    cmd.arg("render")
        .arg(chart_dir())
        .args([release, namespace]);
    if let Some(v) = values {
        cmd.arg(v);
    }
    let out = cmd.output().expect("running tests/helm/chart.py");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let result: Value = serde_json::from_slice(&out.stdout).expect("chart.py prints JSON");
    assert!(
        result["helm"]
            .as_str()
            .is_some_and(|v| v.starts_with("v4.")),
        "not Helm v4: {}",
        result["helm"]
    );
    // `helm lint --strict`: no errors and no warnings (severity 2 and above); info is allowed
    // ("icon is recommended").
    let lint = &result["lint"];
    assert_eq!(lint["total_charts_linted"], 1, "{lint}");
    assert_eq!(lint["errors"], json!([]), "helm lint errors: {lint}");
    let findings: Vec<&Value> = lint["messages"]
        .as_array()
        .expect("lint messages")
        .iter()
        .filter(|m| m["severity"].as_u64().is_none_or(|s| s >= 2))
        .collect();
    assert!(findings.is_empty(), "helm lint findings: {findings:?}");
    let manifests = result["manifests"].as_object().expect("manifests");
    assert!(manifests.contains_key("apitap/templates/NOTES.txt"));
    let dir = scratch.0.join(format!("rendered-{release}"));
    std::fs::create_dir_all(&dir).unwrap();
    let files = manifests
        .iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .map(|(path, text)| {
            let name = Path::new(path).file_name().expect("template file name");
            let file = dir.join(name);
            std::fs::write(&file, text.as_str().expect("manifest text")).unwrap();
            file
        })
        .collect();
    let docs = result["documents"].as_array().expect("documents").clone();
    Ok(Manifests { docs, files })
}

fn render(release: &str, namespace: &str, values: Option<&Path>, scratch: &Scratch) -> Manifests {
    try_render(release, namespace, values, scratch)
        .unwrap_or_else(|e| panic!("helm render failed: {e}"))
}

fn plain_manifests() -> Manifests {
    let files: Vec<PathBuf> = ["sensor-daemonset.yaml", "analyzer-deployment.yaml"]
        .iter()
        .map(|f| workspace_root().join("deploy/kubernetes").join(f))
        .collect();
    let out = chart_py()
        .arg("parse")
        .args(&files)
        .output()
        .expect("chart.py parse");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = serde_json::from_slice(&out.stdout).expect("JSON");
    Manifests { docs, files }
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn kinds(docs: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = docs.iter().map(|d| kind(d).to_string()).collect();
    k.sort();
    k
}

/// The one object of `kind` (panics if there is not exactly one).
fn one<'a>(docs: &'a [Value], kind_: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == kind_).collect();
    assert_eq!(found.len(), 1, "expected one {kind_}: {}", found.len());
    found[0]
}

fn named<'a>(docs: &'a [Value], kind_: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == kind_ && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind_} {name}"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().expect("string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Validates every object: the files with `kubernetes-validate --strict` for each of
/// [`KUBE_VERSIONS`] (ServiceMonitors, which it has no schema for, being the only objects it
/// may skip), and the ServiceMonitors against the prometheus-operator CRD model. Returns how
/// many ServiceMonitors were validated.
fn validate(m: &Manifests, scratch: &Scratch) -> usize {
    let (monitors, core): (Vec<&Value>, Vec<&Value>) =
        m.docs.iter().partition(|d| kind(d) == "ServiceMonitor");
    assert!(!core.is_empty());
    for version in KUBE_VERSIONS {
        let out = Command::new("python3")
            .args(["-m", "kubernetes_validate", "-k", version, "--strict"])
            .args(&m.files)
            .output()
            .expect("running kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "kubernetes-validate {version}:\n{text}"
        );
        // A kind without a schema is only a warning there: every other object must have passed.
        let skipped = text
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .filter(|l| {
                assert!(
                    l.contains(
                        "schema for kind ServiceMonitor with api version monitoring.coreos.com/v1"
                    ),
                    "kubernetes-validate {version}:\n{text}"
                );
                true
            })
            .count();
        assert_eq!(
            skipped,
            monitors.len(),
            "kubernetes-validate {version}:\n{text}"
        );
        let passed = text
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        assert_eq!(passed, core.len(), "kubernetes-validate {version}:\n{text}");
    }
    if !monitors.is_empty() {
        let file = scratch.write("monitors.json", &serde_json::to_string(&monitors).unwrap());
        let out = chart_py()
            .arg("servicemonitor")
            .arg(&file)
            .output()
            .expect("running chart.py servicemonitor");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "ServiceMonitor validation:\n{text}");
        assert_eq!(text.matches(" passed").count(), monitors.len(), "{text}");
    }
    monitors.len()
}

fn pod_spec(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]
}

fn all_containers(workload: &Value) -> Vec<&Value> {
    let spec = pod_spec(workload);
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .filter_map(|k| spec[*k].as_array())
        .flatten()
        .collect()
}

fn container<'a>(workload: &'a Value, name: &str) -> &'a Value {
    all_containers(workload)
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn volume<'a>(workload: &'a Value, name: &str) -> Option<&'a Value> {
    pod_spec(workload)["volumes"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["name"] == name))
}

fn mount<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == name))
}

fn service_account<'a>(docs: &'a [Value], workload: &Value) -> &'a Value {
    let name = pod_spec(workload)["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    named(docs, "ServiceAccount", name)
}

/// What "least privilege" means for these manifests (R-OPS-3, issue 19), on a set of objects
/// holding one sensor DaemonSet and one analyzer Deployment. `attribution` says whether Kubernetes
/// attribution (token + pod-read RBAC + cgroup mount) is expected on, `tls` whether TLS capture
/// (two more capabilities and hostPID) is.
fn assert_least_privilege(docs: &[Value], attribution: bool, tls: bool) {
    let ds = one(docs, "DaemonSet");
    let spec = pod_spec(ds);
    assert_eq!(
        all_containers(ds).len(),
        1,
        "the sensor pod runs the sensor only"
    );
    let sensor = container(ds, "sensor");
    let sc = &sensor["securityContext"];
    assert_eq!(sc["privileged"], false, "sensor privileged: {sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    let added = strings(&sc["capabilities"]["add"]);
    let expected: BTreeSet<String> = SENSOR_CAPS
        .iter()
        .chain(if tls { &TLS_CAPS[..] } else { &[] })
        .map(|c| c.to_string())
        .collect();
    assert_eq!(added, expected, "sensor capabilities");
    assert!(
        ["RuntimeDefault", "Localhost"]
            .contains(&sc["seccompProfile"]["type"].as_str().unwrap_or("")),
        "sensor seccomp: {sc}"
    );
    assert!(
        spec["hostIPC"].is_null() || spec["hostIPC"] == false,
        "hostIPC: {spec}"
    );
    assert_eq!(spec["hostPID"] == true, tls, "hostPID only for TLS capture");
    // Host paths: BPF fs, BTF and the cgroup hierarchy read-only; the spool the only writable one.
    let host_volumes: BTreeSet<String> = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| !v["hostPath"].is_null())
        .map(|v| v["name"].as_str().expect("name").to_string())
        .collect();
    let mut expected_host: BTreeSet<String> = ["bpffs", "btf", "spool"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if attribution {
        expected_host.insert("cgroup".into());
    }
    assert_eq!(host_volumes, expected_host, "sensor host paths");
    for ro in ["bpffs", "btf", "cgroup"] {
        if let Some(m) = mount(sensor, ro) {
            assert_eq!(m["readOnly"], true, "{ro} must be mounted read-only: {m}");
        }
    }
    for (name, path) in [("bpffs", "/sys/fs/bpf"), ("btf", "/sys/kernel/btf")] {
        assert_eq!(volume(ds, name).expect(name)["hostPath"]["path"], path);
        assert_eq!(mount(sensor, name).expect(name)["mountPath"], path);
    }
    let env_node = sensor["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("NODE_NAME");
    assert_eq!(
        env_node["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );

    let sensor_sa = service_account(docs, ds);
    let roles: Vec<&Value> = docs
        .iter()
        .filter(|d| ["Role", "ClusterRole"].contains(&kind(d)))
        .collect();
    let bindings: Vec<&Value> = docs
        .iter()
        .filter(|d| ["RoleBinding", "ClusterRoleBinding"].contains(&kind(d)))
        .collect();
    if attribution {
        assert_eq!(spec["automountServiceAccountToken"], true, "sensor token");
        assert_eq!(sensor_sa["automountServiceAccountToken"], true);
        let cg = volume(ds, "cgroup").expect("cgroup volume");
        assert_eq!(cg["hostPath"]["path"], "/sys/fs/cgroup");
        let m = mount(sensor, "cgroup").expect("cgroup mount");
        assert_eq!(m["mountPath"], "/sys/fs/cgroup");
        assert_eq!(m["readOnly"], true);
        // Exactly one role: get, list, watch on core pods, nothing else.
        assert_eq!(roles.len(), 1, "roles: {roles:?}");
        let role = roles[0];
        assert_eq!(kind(role), "ClusterRole");
        assert_eq!(
            role["rules"],
            json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]),
            "sensor ClusterRole"
        );
        assert!(role["aggregationRule"].is_null());
        assert_eq!(bindings.len(), 1, "bindings: {bindings:?}");
        let binding = bindings[0];
        assert_eq!(kind(binding), "ClusterRoleBinding");
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                   "name": role["metadata"]["name"]})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": sensor_sa["metadata"]["name"],
                    "namespace": sensor_sa["metadata"]["namespace"]}]),
            "bound to the sensor only"
        );
    } else {
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(sensor_sa["automountServiceAccountToken"], false);
        assert!(
            roles.is_empty() && bindings.is_empty(),
            "{roles:?} {bindings:?}"
        );
    }

    let deploy = one(docs, "Deployment");
    let spec = pod_spec(deploy);
    assert_eq!(
        all_containers(deploy).len(),
        1,
        "the analyzer pod runs the analyzer only"
    );
    let pod_sc = &spec["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true, "{pod_sc}");
    assert!(
        pod_sc["runAsUser"].as_u64().is_some_and(|u| u > 0),
        "{pod_sc}"
    );
    assert!(
        pod_sc["runAsGroup"].as_u64().is_some_and(|g| g > 0),
        "{pod_sc}"
    );
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(spec["hostNetwork"].is_null() || spec["hostNetwork"] == false);
    let analyzer = container(deploy, "analyzer");
    let sc = &analyzer["securityContext"];
    assert_eq!(sc["privileged"], false, "{sc}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{sc}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{sc}");
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]), "{sc}");
    assert!(
        strings(&sc["capabilities"]["add"]).is_empty(),
        "analyzer adds capabilities: {sc}"
    );
    assert!(sc["runAsUser"].is_null() || sc["runAsUser"].as_u64().is_some_and(|u| u > 0));
    assert!(
        analyzer["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .all(|m| volume(deploy, m["name"].as_str().expect("name"))
                .is_some_and(|v| v["hostPath"].is_null()))
    );
    assert_eq!(
        spec["automountServiceAccountToken"], false,
        "analyzer token"
    );
    assert_eq!(
        service_account(docs, deploy)["automountServiceAccountToken"],
        false
    );
}

/// The TOML in the ConfigMap a workload mounts at /etc/apitap, under `key`.
fn config_of<'a>(docs: &'a [Value], workload: &Value, key: &str) -> &'a str {
    let cm = volume(workload, "config").expect("config volume")["configMap"]["name"]
        .as_str()
        .expect("configMap name");
    named(docs, "ConfigMap", cm)["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{cm} has no {key}"))
}

fn check_config(bin: &str, config: &Path) {
    let out = Command::new(workspace_bin(bin).expect("build the workspace first"))
        .args(["check-config", "--config"])
        .arg(config)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("running check-config");
    assert!(
        out.status.success(),
        "{bin} check-config rejects the rendered config:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port")
}

/// The rendered configurations pass the programs' own `check-config`, and the ports the
/// manifests expose are the ones the programs listen on.
fn assert_configs_valid(docs: &[Value], scratch: &Scratch) {
    let ds = one(docs, "DaemonSet");
    let sensor = container(ds, "sensor");
    let sensor_toml = config_of(docs, ds, "sensor.toml");
    check_config("apitap-sensor", &scratch.write("sensor.toml", sensor_toml));
    let port = sensor["ports"][0]["containerPort"].as_u64().expect("port");
    let cmd = strings(&sensor["command"]);
    assert!(cmd.contains(&format!("$(HOST_IP):{port}")), "{cmd:?}");

    let deploy = one(docs, "Deployment");
    let analyzer = container(deploy, "analyzer");
    let analyzer_toml = config_of(docs, deploy, "analyzer.toml");
    // The analyzer checks that it can write its state files: give the pod's writable state
    // mount a real directory, as the kubelet does with the emptyDir.
    let state = mount(analyzer, "state").expect("state mount")["mountPath"]
        .as_str()
        .expect("mountPath")
        .trim_end_matches('/');
    let state_dir = scratch.0.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let local = analyzer_toml.replace(&format!("{state}/"), &format!("{}/", state_dir.display()));
    check_config("apitap-analyzer", &scratch.write("analyzer.toml", &local));
    let parsed: toml::Table = analyzer_toml.parse().expect("analyzer TOML");
    let listen = parsed["metrics"]["listen"]
        .as_str()
        .expect("metrics.listen");
    let port = analyzer["ports"][0]["containerPort"]
        .as_u64()
        .expect("port");
    assert_eq!(
        port_of(listen),
        port,
        "analyzer metrics.listen vs containerPort"
    );
    assert_eq!(analyzer["livenessProbe"]["httpGet"]["port"], "metrics");
}

#[test]
fn chart_defaults_render_valid_least_privilege_manifests() {
    let test = "chart_defaults_render_valid_least_privilege_manifests";
    if !tools_ready(test) {
        return;
    }
    let scratch = Scratch::new("defaults");
    let m = render("apitap", "apitap", None, &scratch);
    let docs = &m.docs;
    assert_eq!(
        kinds(docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "ConfigMap",
            "DaemonSet",
            "Deployment",
            "NetworkPolicy",
            "NetworkPolicy",
            "ServiceAccount",
            "ServiceAccount",
        ],
        "the optional ServiceMonitor is off by default"
    );
    assert_eq!(validate(&m, &scratch), 0);
    assert_least_privilege(docs, true, false);
    assert_configs_valid(docs, &scratch);
    for d in docs {
        if kind(d) != "ClusterRole" && kind(d) != "ClusterRoleBinding" {
            assert_eq!(d["metadata"]["namespace"], "apitap", "{d}");
        }
    }
}

#[test]
fn chart_with_every_option_renders_valid_manifests() {
    let test = "chart_with_every_option_renders_valid_manifests";
    if !tools_ready(test) {
        return;
    }
    let scratch = Scratch::new("all");
    let values = chart_dir().join("ci/all-options-values.yaml");
    let m = render("edge", "monitoring", Some(&values), &scratch);
    let docs = &m.docs;
    assert_eq!(validate(&m, &scratch), 2, "a ServiceMonitor per program");
    assert_eq!(docs.iter().filter(|d| kind(d) == "Service").count(), 2);
    assert_least_privilege(docs, true, false);
    assert_configs_valid(docs, &scratch);

    // The values arrive where they belong.
    let ds = named(docs, "DaemonSet", "edge-tap-sensor");
    let sensor = container(ds, "sensor");
    assert_eq!(
        sensor["image"],
        "registry.example/apitap/apitap-sensor@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        sensor["securityContext"]["seccompProfile"]["type"],
        "Localhost"
    );
    assert_eq!(
        volume(ds, "spool").unwrap()["hostPath"]["path"],
        "/var/lib/apitap-sensor-edge"
    );
    assert_eq!(
        volume(ds, "secrets").unwrap()["secret"]["secretName"],
        "site-sensor-secrets"
    );
    assert!(config_of(docs, ds, "sensor.toml").contains("ens5"));
    let deploy = named(docs, "Deployment", "edge-tap-analyzer");
    assert_eq!(deploy["spec"]["replicas"], 4);
    assert_eq!(pod_spec(deploy)["securityContext"]["runAsUser"], 10001);
    assert_eq!(
        container(deploy, "analyzer")["ports"][0]["containerPort"],
        9565
    );
    let policy = named(docs, "NetworkPolicy", "edge-tap-analyzer-metrics");
    assert_eq!(policy["spec"]["ingress"][0]["ports"][0]["port"], 9565);
    let monitor = named(docs, "ServiceMonitor", "edge-tap-sensor");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let service = named(docs, "Service", "edge-tap-sensor-metrics");
    assert_eq!(service["spec"]["ports"][0]["port"], 9474);
    // The Service selects the DaemonSet's pods, the ServiceMonitor the Service.
    let pod_labels = ds["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "Service selector {k}");
    }
    let svc_labels = service["metadata"]["labels"].as_object().unwrap();
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(svc_labels.get(k), Some(v), "ServiceMonitor selector {k}");
    }
    for d in docs {
        assert_eq!(d["metadata"]["labels"]["team"], "platform-security", "{d}");
    }
}

#[test]
fn chart_switches_attribution_off_and_refuses_a_root_analyzer() {
    let test = "chart_switches_attribution_off_and_refuses_a_root_analyzer";
    if !tools_ready(test) {
        return;
    }
    let scratch = Scratch::new("switches");
    let off = scratch.write(
        "off.yaml",
        "sensor:\n  attribution:\n    kubernetes: false\n    cgroupRoot: \"\"\nnetworkPolicy:\n  enabled: false\n",
    );
    let m = render("apitap", "apitap", Some(&off), &scratch);
    validate(&m, &scratch);
    let docs = m.docs;
    assert_least_privilege(&docs, false, false);
    assert!(volume(one(&docs, "DaemonSet"), "cgroup").is_none());
    assert!(!kinds(&docs).contains(&"NetworkPolicy".to_string()));

    // rbac.create=false keeps the token but leaves the RBAC to the operator.
    let no_rbac = scratch.write("norbac.yaml", "rbac:\n  create: false\n");
    let docs = render("apitap", "apitap", Some(&no_rbac), &scratch).docs;
    assert!(
        !kinds(&docs).iter().any(|k| k.contains("Role")),
        "{:?}",
        kinds(&docs)
    );
    assert_eq!(
        pod_spec(one(&docs, "DaemonSet"))["automountServiceAccountToken"],
        true
    );

    let only_sensor = scratch.write("sensor.yaml", "analyzer:\n  enabled: false\n");
    let docs = render("apitap", "apitap", Some(&only_sensor), &scratch).docs;
    assert!(
        docs.iter()
            .all(|d| !d["metadata"]["name"].as_str().unwrap().contains("analyzer"))
    );

    // values.schema.json: a root analyzer and a misspelt value do not render (the template
    // also refuses uid/gid 0 where the schema is skipped).
    for (name, values, expected) in [
        (
            "root-uid.yaml",
            "analyzer:\n  runAsUser: 0\n",
            "/analyzer/runAsUser",
        ),
        (
            "root-gid.yaml",
            "analyzer:\n  runAsGroup: 0\n",
            "/analyzer/runAsGroup",
        ),
        (
            "typo.yaml",
            "sensor:\n  metricPort: 9999\n",
            "'metricPort' not allowed",
        ),
        (
            "caps.yaml",
            "sensor:\n  securityContext:\n    privileged: true\n",
            "'securityContext' not allowed",
        ),
    ] {
        let err = try_render(
            "apitap",
            "apitap",
            Some(&scratch.write(name, values)),
            &scratch,
        )
        .expect_err("must not render");
        assert!(err.contains(expected), "{name}: {err}");
    }
}

/// `sensor.tls.enabled` (issue 16): exactly SYS_ADMIN and SYS_PTRACE more, hostPID, and the
/// chart's own sensor.toml with `[tls] enabled = true` (which the real `check-config` accepts);
/// a configuration of one's own that disagrees with the switch does not render.
#[test]
fn chart_with_tls_grants_the_uprobe_privileges_and_turns_capture_on() {
    let test = "chart_with_tls_grants_the_uprobe_privileges_and_turns_capture_on";
    if !tools_ready(test) {
        return;
    }
    let scratch = Scratch::new("tls");
    let on = scratch.write("tls.yaml", "sensor:\n  tls:\n    enabled: true\n");
    let m = render("apitap", "apitap", Some(&on), &scratch);
    validate(&m, &scratch);
    let docs = &m.docs;
    assert_least_privilege(docs, true, true);
    assert_configs_valid(docs, &scratch);
    let ds = one(docs, "DaemonSet");
    let sensor_toml: toml::Table = config_of(docs, ds, "sensor.toml")
        .parse()
        .expect("sensor TOML");
    assert_eq!(sensor_toml["tls"]["enabled"].as_bool(), Some(true));
    // Everything else is the example's.
    let mut example: toml::Table =
        std::fs::read_to_string(workspace_root().join("deploy/config/sensor.example.toml"))
            .unwrap()
            .parse()
            .unwrap();
    assert_eq!(example["tls"]["enabled"].as_bool(), Some(false));
    example["tls"]["enabled"] = toml::Value::Boolean(true);
    assert_eq!(sensor_toml, example);

    let own_off = "[capture]\ninterfaces = [\"eth0\"]\n[sink]\nkind = \"stdout\"\n";
    let own_on = format!("{own_off}[tls]\n# HTTPS too\nenabled = true\n");
    for (name, values, expected) in [
        (
            "switch-without-config.yaml",
            format!(
                "sensor:\n  tls:\n    enabled: true\n  config: {}\n",
                serde_json::to_string(own_off).unwrap()
            ),
            "sensor.tls.enabled is true but sensor.config does not set [tls] enabled = true",
        ),
        (
            "config-without-switch.yaml",
            format!(
                "sensor:\n  config: {}\n",
                serde_json::to_string(&own_on).unwrap()
            ),
            "set sensor.tls.enabled too",
        ),
    ] {
        let err = try_render(
            "apitap",
            "apitap",
            Some(&scratch.write(name, &values)),
            &scratch,
        )
        .expect_err("must not render");
        assert!(err.contains(expected), "{name}: {err}");
    }
    // Both set: renders, with the privileges.
    let both = scratch.write(
        "both.yaml",
        &format!(
            "sensor:\n  tls:\n    enabled: true\n  config: {}\n",
            serde_json::to_string(&own_on).unwrap()
        ),
    );
    let docs = render("apitap", "apitap", Some(&both), &scratch).docs;
    assert_eq!(pod_spec(one(&docs, "DaemonSet"))["hostPID"], true);
}

#[test]
fn plain_manifests_are_valid_and_agree_with_the_chart() {
    let test = "plain_manifests_are_valid_and_agree_with_the_chart";
    if !tools_ready(test) {
        return;
    }
    let scratch = Scratch::new("plain");
    let plain_m = plain_manifests();
    assert_eq!(validate(&plain_m, &scratch), 0);
    let plain = &plain_m.docs;
    assert_least_privilege(plain, true, false);
    assert_configs_valid(plain, &scratch);
    let ns = one(plain, "Namespace");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    // The chart's defaults are the plain manifests: same containers (security context, command,
    // env, probes, resources, mounts), pod security, volumes, RBAC and policies.
    let chart = &render("apitap", "apitap", None, &scratch).docs;
    for kind_ in ["DaemonSet", "Deployment"] {
        let (p, c) = (one(plain, kind_), one(chart, kind_));
        assert_eq!(
            pod_spec(p)["containers"],
            pod_spec(c)["containers"],
            "{kind_} containers differ between deploy/kubernetes and the chart"
        );
        for key in [
            "securityContext",
            "volumes",
            "automountServiceAccountToken",
            "serviceAccountName",
            "hostNetwork",
            "dnsPolicy",
            "tolerations",
            "terminationGracePeriodSeconds",
        ] {
            assert_eq!(pod_spec(p)[key], pod_spec(c)[key], "{kind_} {key}");
        }
        assert_eq!(
            service_account(plain, p)["automountServiceAccountToken"],
            service_account(chart, c)["automountServiceAccountToken"]
        );
    }
    assert_eq!(
        one(plain, "ClusterRole")["rules"],
        one(chart, "ClusterRole")["rules"]
    );
    for name in ["apitap-sensor-metrics", "apitap-analyzer-metrics"] {
        let (p, c) = (
            named(plain, "NetworkPolicy", name),
            named(chart, "NetworkPolicy", name),
        );
        assert_eq!(p["spec"]["ingress"], c["spec"]["ingress"], "{name}");
        assert_eq!(p["spec"]["policyTypes"], c["spec"]["policyTypes"], "{name}");
    }

    // Same configurations: the chart's sensor.toml is the example (which the plain ConfigMap
    // embeds, sensor-user/tests/config_files.rs), its analyzer.toml the plain ConfigMap's.
    let example =
        std::fs::read_to_string(workspace_root().join("deploy/config/sensor.example.toml"))
            .unwrap();
    let chart_sensor = config_of(chart, one(chart, "DaemonSet"), "sensor.toml");
    assert_eq!(
        chart_sensor.trim_end(),
        example.trim_end(),
        "chart sensor.toml vs the example"
    );
    let plain_sensor = config_of(plain, one(plain, "DaemonSet"), "sensor.toml");
    assert!(
        plain_sensor.ends_with(&example),
        "plain sensor ConfigMap vs the example"
    );
    assert_eq!(
        config_of(chart, one(chart, "Deployment"), "analyzer.toml").trim_end(),
        config_of(plain, one(plain, "Deployment"), "analyzer.toml").trim_end(),
        "analyzer.toml: deploy/helm/apitap/files vs deploy/kubernetes"
    );
}
