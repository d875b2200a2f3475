//! The shipped configuration files are valid, and copies of them stay in step.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::path::Path;

use apitap_sensor::config::Config;

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn example_config_is_valid() {
    let cfg = Config::load(&root().join("deploy/config/sensor.example.toml")).unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.capture.interfaces, vec!["eth0".to_string()]);
    // Loopback by default (issue 22, R-OPS-3); the DaemonSet's --metrics-listen puts it on
    // the node's IP for its probes and Prometheus.
    let listen = cfg.metrics.listen.expect("the metrics endpoint is on");
    assert!(listen.ip().is_loopback(), "{listen}");
    assert_eq!(cfg.metrics.token_file, None);
}

#[test]
fn daemonset_configmap_embeds_the_example() {
    let example =
        std::fs::read_to_string(root().join("deploy/config/sensor.example.toml")).unwrap();
    let yaml =
        std::fs::read_to_string(root().join("deploy/kubernetes/sensor-daemonset.yaml")).unwrap();
    let indented: String = example
        .lines()
        .map(|l| {
            if l.trim().is_empty() {
                "\n".to_string()
            } else {
                format!("    {l}\n")
            }
        })
        .collect();
    assert!(
        yaml.contains(&indented),
        "deploy/kubernetes/sensor-daemonset.yaml ConfigMap differs from the example"
    );
}
