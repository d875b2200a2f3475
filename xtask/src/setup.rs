//! Idempotent installation of what the build, the demo and the tests need on Debian (as root).
//! Each step checks first and does nothing when already satisfied.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Programs the demo and tests run, and the Debian package that provides each.
const DEBIAN: &[(&str, &str)] = &[
    ("nginx", "nginx-light"),
    ("curl", "curl"),
    ("ip", "iproute2"),
    // The inventory store's PostgreSQL tests start their own throwaway cluster.
    ("pg_ctlcluster", "postgresql"),
    // Scores the shipped unit files' hardening (tests/tests/deploy_units.rs).
    ("systemd-analyze", "systemd"),
    // The demo's attack tool; `cargo xtask test` ends with `demo --check`.
    ("ffuf", "ffuf"),
    // tests/tests/live_tls.rs makes its server certificate (nginx-light pulls libssl3).
    ("openssl", "openssl"),
    // tests/tests/live_tls.rs builds a server with OpenSSL linked in statically
    // (tests/fixtures/tls/https_server.c, `-l:libssl.a -l:libcrypto.a`) ...
    ("gcc", "gcc"),
    ("/usr/include/openssl/ssl.h", "libssl-dev"),
    // ... and runs GnuTLS's own server (`gnutls-serv`, over libgnutls.so.30).
    ("gnutls-serv", "gnutls-bin"),
    // ... and a Go HTTPS server and client (tests/fixtures/tls/go_https, Go's crypto/tls).
    ("go", "golang-go"),
    // tests/tests/live_h2.rs: HTTP/2 server and client (h2c and h2 over TLS, issue 17).
    ("nghttpd", "nghttp2-server"),
    ("nghttp", "nghttp2-client"),
    // tests/tests/live_etcd.rs: etcd, a real gRPC service (grpc-go, h2c), and its client; and
    // `cargo xtask bench h2` drives nghttpd with nghttp2's load tool.
    ("etcd", "etcd-server"),
    ("etcdctl", "etcd-client"),
    ("h2load", "nghttp2-client"),
    // ... and the static server's source built against BoringSSL (Debian's Android build of it).
    (
        "/usr/include/android/openssl/ssl.h",
        "android-libboringssl-dev",
    ),
    // tests/tests/console.rs drives the analyzer's web console (issue 20) in headless
    // Chromium through chromedriver's W3C WebDriver protocol.
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
];
/// What `cargo xtask image` copies into the images (the first entry) and what
/// tests/tests/deploy_image.rs checks them with: chroot, ldd, and two OCI tools independent of
/// ours (skopeo reads the layout, umoci unpacks it into a runtime bundle).
const IMAGE_TOOLS: &[(&str, &str)] = &[
    ("/etc/ssl/certs/ca-certificates.crt", "ca-certificates"),
    ("chroot", "coreutils"),
    ("ldd", "libc-bin"),
    ("skopeo", "skopeo"),
    ("umoci", "umoci"),
    // tests/tests/man_pages.rs renders deploy/man/*.1 with both and requires no warning.
    ("groff", "groff-base"),
    ("man", "man-db"),
];
/// What the demo runs beyond the build: its server, clients and the attack tool.
const DEMO: &[(&str, &str)] = &[
    ("nginx", "nginx-light"),
    ("curl", "curl"),
    ("ip", "iproute2"),
    ("timeout", "coreutils"),
    ("ffuf", "ffuf"),
];
/// Python packages the tests run (independent validators of what the product exports).
const PYTHON: &[(&str, &str)] = &[
    ("openapi_spec_validator", "openapi-spec-validator==0.9.0"),
    // tests/tests/live_tls.rs: Python `requests` as an HTTPS client (CPython's ssl module).
    ("requests", "requests>=2.28"),
    // tests/tests/live_h2.rs: a real gRPC server and client (tests/fixtures/h2/grpc_*.py), the
    // stubs generated from bank.proto in the test.
    ("grpc", "grpcio==1.85.4"),
    ("grpc_tools", "grpcio-tools==1.85.4"),
    // tests/tests/live_h2.rs: an HTTP server that implements `Upgrade: h2c` (nghttpd does not).
    ("hypercorn", "hypercorn==0.18.0"),
    // tests/tests/live_h2.rs: a real gRPC-Web server and client (tests/fixtures/h2/grpcweb_*.py).
    ("sonora", "sonora==0.2.3"),
    // tests/tests/deploy_helm.rs: Helm v4's Go SDK (lint, render; no `helm` binary is packaged
    // in the registries reached), the Kubernetes OpenAPI schemas 1.25-1.37 with a validator,
    // and the prometheus-operator CRD model for the ServiceMonitor.
    ("helm_python", "helm-python-sdk==0.2.2"),
    ("kubernetes_validate", "kubernetes-validate==1.37.0"),
    (
        "cloudcoil.models.prometheus_operator.v1",
        "cloudcoil-models-prometheus-operator==0.80.1.0",
    ),
];
/// bpf-linker 0.10.x links with rustc's own LLVM; 0.11+ needs a system LLVM that is not here.
const BPF_LINKER_VERSION: &str = "0.10.1";
/// Debian packages that building librdkafka (the `rdkafka` crate, bundled source, make-based)
/// needs: a C toolchain, OpenSSL headers (TLS/SASL to the operator's brokers), zlib.
const BUILD_PACKAGES: &[&str] = &[
    "gcc",
    "g++",
    "make",
    "pkg-config",
    "libssl-dev",
    "zlib1g-dev",
];
/// The Kafka-protocol broker the transport tests and `bench kafka` run (never the product's
/// runtime dependency). SQLite storage (`libsql`) lets tests restart it on the same data.
const TANSU_INSTALL: &[&str] = &[
    "install",
    "tansu",
    "--features",
    "dynostore,libsql",
    "--locked",
];

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// Puts `$CARGO_HOME/bin` and the sbin directories on PATH for us and our children.
pub fn export_cargo_bin_path() {
    let mut paths: Vec<PathBuf> = vec![cargo_home().join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    for extra in ["/usr/sbin", "/sbin"] {
        if !paths.iter().any(|p| p == std::path::Path::new(extra)) {
            paths.push(extra.into());
        }
    }
    if let Ok(joined) = std::env::join_paths(paths) {
        // SAFETY: single-threaded at this point (called first thing in main).
        unsafe { std::env::set_var("PATH", joined) };
    }
}

/// Under CI (`CI=true`) every build is from a clean clone and never rebuilt, so incremental
/// compilation only costs time and disk (1.2 GB of a clean test run): off unless the caller set
/// `CARGO_INCREMENTAL` itself.
pub fn ci_build_env() {
    if apitap_tests::in_ci() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // SAFETY: single-threaded at this point (called first thing in main).
        unsafe { std::env::set_var("CARGO_INCREMENTAL", "0") };
    }
}

/// True when `tool` is a program on PATH, or, given as an absolute path, an existing file.
fn present(tool: &str) -> bool {
    if tool.starts_with('/') {
        return std::path::Path::new(tool).is_file();
    }
    on_path(tool)
}

/// Installs with apt-get the Debian package of each `(tool, package)` whose tool is not
/// [`present`] (`purpose` names who needs them in the error). Returns whether it installed
/// anything.
pub fn install_tools(tools: &[(&str, &str)], purpose: &str) -> anyhow::Result<bool> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|(tool, _)| !present(tool))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(false);
    }
    apt_install(&missing, purpose)?;
    Ok(true)
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn exec(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Entry point for `cargo xtask setup`: every step, each a no-op when satisfied.
pub fn run() -> anyhow::Result<()> {
    debian_packages()?;
    python_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    build_packages()?;
    tansu()?;
    eprintln!("setup: everything present");
    Ok(())
}

/// What building the binaries needs (`cargo xtask image`, the Dockerfile's builder stage):
/// the eBPF toolchain, bpf-linker, librdkafka's build packages, the CA bundle the images ship.
pub fn build_tools() -> anyhow::Result<()> {
    nightly_rust_src()?;
    bpf_linker()?;
    build_packages()?;
    install_tools(&[IMAGE_TOOLS[0]], "for the container images")?;
    Ok(())
}

/// `cargo xtask demo [--kafka]`: only what the chosen mode uses (the tests' PostgreSQL,
/// Python validators and, without `--kafka`, the broker are not built or installed).
pub fn demo(kafka: bool) -> anyhow::Result<()> {
    let installed = install_tools(DEMO, "for the demo")?;
    if installed {
        stop_packaged_nginx();
    }
    nightly_rust_src()?;
    bpf_linker()?;
    build_packages()?;
    if kafka {
        tansu()?;
    }
    Ok(())
}

fn debian_packages() -> anyhow::Result<()> {
    install_tools(IMAGE_TOOLS, "for the container image tests")?;
    if !install_tools(DEBIAN, "for the demo and tests")? {
        return Ok(());
    }
    stop_packaged_nginx();
    // etcd-server starts its service too (on 127.0.0.1:2379); the tests run their own etcd.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "etcd"])
        .stderr(Stdio::null())
        .status();
    Ok(())
}

fn stop_packaged_nginx() {
    // Debian starts the packaged nginx service on install; the demo and tests run their own.
    let _ = Command::new("systemctl")
        .args(["disable", "--now", "nginx"])
        .stderr(Stdio::null())
        .status();
    let _ = Command::new("nginx")
        .args(["-s", "quit"])
        .stderr(Stdio::null())
        .status();
}

fn python_packages() -> anyhow::Result<()> {
    pip_install(PYTHON)
}

/// Installs each `(module, requirement)` with pip unless `python3` can already import it.
pub fn pip_install(packages: &[(&str, &str)]) -> anyhow::Result<()> {
    for (module, requirement) in packages {
        let present = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !present {
            exec(Command::new("python3").args(["-m", "pip", "install", "-q", requirement]))?;
        }
    }
    Ok(())
}

/// The eBPF toolchain the tree was tested with (`sensor-ebpf/rust-toolchain.toml`).
const TESTED_EBPF_RUSTC: &str = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)";

/// A rustup command run in `sensor-ebpf/`, where rustup takes the toolchain from
/// `rust-toolchain.toml` (the build script hands the same file's channel to aya-build).
fn in_ebpf_dir(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(apitap_tests::workspace_root().join("sensor-ebpf"))
        // The rustup proxy that started us exports the host toolchain; the file decides here.
        .env_remove("RUSTUP_TOOLCHAIN");
    cmd
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let mut version = output(&mut in_ebpf_dir("rustc", &["--version"]));
    if version.is_none() {
        // Installs the file's toolchain with its components (rust-src).
        exec(&mut in_ebpf_dir("rustup", &["toolchain", "install"]))?;
        version = output(&mut in_ebpf_dir("rustc", &["--version"]));
    }
    let version = version.unwrap_or_default();
    if !version.trim().starts_with(TESTED_EBPF_RUSTC) {
        eprintln!(
            "setup: warning: the eBPF toolchain is {}, the tree was tested with \
             {TESTED_EBPF_RUSTC} (sensor-ebpf/rust-toolchain.toml)",
            version.trim()
        );
    }
    let installed = output(&mut in_ebpf_dir(
        "rustup",
        &["component", "list", "--installed"],
    ))
    .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        exec(&mut in_ebpf_dir(
            "rustup",
            &["component", "add", "rust-src"],
        ))?;
    }
    Ok(())
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    exec(Command::new(cargo).args([
        "install",
        &format!("bpf-linker@{BPF_LINKER_VERSION}"),
        "--locked",
    ]))
}

fn dpkg_installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_some_and(|s| s.contains("install ok installed"))
}

fn build_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing, "to build librdkafka")
}

/// Installs Debian packages (as root; `apt-get update` first).
fn apt_install(packages: &[&str], purpose: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages {packages:?} ({purpose}); run as root or `apt-get install {}`",
            packages.join(" ")
        );
    }
    exec(
        Command::new("apt-get")
            .args(["update", "-qq"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// tansu, the broker of the transport tests: built once from crates.io (a cold build took 42
/// minutes on two cores shared with other builds), then reused.
fn tansu() -> anyhow::Result<()> {
    if output(Command::new("tansu").arg("--version")).is_some() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    exec(Command::new(cargo).args(TANSU_INSTALL))
}
