//! The shipped systemd units stay hardened (R-OPS-3, issue 22): `systemd-analyze security`
//! scores them offline, and a change that weakens either beyond its recorded exposure fails
//! here. The scores are recorded in deploy/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code

use std::process::Command;

use apitap_tests::{require, workspace_root};

/// Exposure levels as `systemd-analyze` prints them (0.0 best … 10.0 worst), measured with
/// systemd 252: sensor 3.5 (it needs the host network, netlink and three capabilities until
/// attached), analyzer 1.8.
const UNITS: [(&str, f64); 2] = [("apitap-sensor", 3.5), ("apitap-analyzer", 1.8)];

#[test]
fn unit_files_keep_their_hardening_scores() {
    let probe = Command::new("systemd-analyze").arg("--version").output();
    let problem = match &probe {
        Ok(o) if o.status.success() => None,
        Ok(o) => Some(format!("systemd-analyze --version: {}", o.status)),
        Err(e) => Some(format!("systemd-analyze not runnable: {e}")),
    };
    if !require(
        "unit_files_keep_their_hardening_scores",
        "unit hardening",
        problem,
    ) {
        return;
    }
    for (unit, max) in UNITS {
        let path = workspace_root().join(format!("deploy/systemd/{unit}.service"));
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&path)
            .output()
            .expect("running systemd-analyze");
        let text = String::from_utf8_lossy(&out.stdout);
        let level: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(':').nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {unit}: {text}"));
        assert!(level <= max, "{unit}: exposure {level} > {max}:\n{text}");
    }
}
