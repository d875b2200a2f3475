//! The container images (issue 19): `cargo xtask image` assembles the image roots from the
//! debug binaries the test build already made, and each program must run inside its root
//! alone (chroot): `--version`, `--help`, `check-config` on the example configurations, the
//! analyzer as its non-root user. A root missing one library must fail. The OCI image layouts
//! are read back with third-party tools (skopeo inspects them, umoci unpacks them into a
//! runtime bundle whose rootfs runs too), and `deploy/image/Dockerfile` must ship exactly these
//! roots under the names and users the Kubernetes manifests use.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use apitap_tests::{require, workspace_bin, workspace_root};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// (image, binary, uid) as `xtask/src/image.rs` and the manifests define them.
const IMAGES: &[(&str, &str, u32)] = &[
    ("apitap-sensor", "apitap-sensor", 0),
    ("apitap-analyzer", "apitap-analyzer", 65532),
    ("apitap", "apitap", 0),
];

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn problem() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("chroot and mknod need root".into());
    }
    for tool in ["chroot", "ldd", "skopeo", "umoci"] {
        if which(tool).is_none() {
            return Some(format!(
                "`{tool}` is not installed (run `cargo xtask setup`)"
            ));
        }
    }
    None
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("apitap-image-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `cargo xtask image` as the Dockerfile runs it, on the debug binaries.
fn xtask_image(root: &Path, oci: Option<&Path>) {
    let bin_dir = workspace_bin("apitap-sensor").unwrap();
    let mut cmd = Command::new(workspace_bin("xtask").unwrap());
    cmd.args(["image", "--root"])
        .arg(root)
        .arg("--bin-dir")
        .arg(bin_dir.parent().unwrap());
    if let Some(oci) = oci {
        cmd.arg("--oci").arg(oci);
    }
    run(&mut cmd);
}

/// What a container runtime puts into every container that the image does not carry: the
/// OCI runtime spec's default devices (the analyzer reads /dev/urandom for its per-process
/// hash key).
fn add_runtime_devices(rootfs: &Path) {
    let dev = rootfs.join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for (name, minor) in [("null", 3), ("zero", 5), ("random", 8), ("urandom", 9)] {
        let path = dev.join(name);
        if !path.exists() {
            run(Command::new("mknod").args(["-m", "666"]).arg(&path).args([
                "c",
                "1",
                &minor.to_string(),
            ]));
        }
    }
}

/// Runs `argv` inside `rootfs` as `uid` with an empty environment (nothing of the host).
fn chroot(rootfs: &Path, uid: u32, argv: &[&str]) -> Output {
    Command::new(which("chroot").unwrap())
        .env_clear()
        .arg(format!("--userspec={uid}:{uid}"))
        .arg(rootfs)
        .args(argv)
        .output()
        .unwrap()
}

fn chroot_ok(rootfs: &Path, uid: u32, argv: &[&str]) -> String {
    let out = chroot(rootfs, uid, argv);
    assert!(
        out.status.success(),
        "{argv:?} in {} failed ({}):\n{}{}",
        rootfs.display(),
        out.status,
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// Every program of every image runs in its root alone.
fn check_runs(rootfs: &Path, bin: &str, uid: u32) {
    let exe = format!("/usr/local/bin/{bin}");
    let version = chroot_ok(rootfs, uid, &[&exe, "--version"]);
    assert!(
        version.starts_with(&format!("{bin} {VERSION}")),
        "{bin} --version: {version}"
    );
    let help = chroot_ok(rootfs, uid, &[&exe, "--help"]);
    assert!(
        help.contains("Usage:") && help.contains("EXAMPLES:"),
        "{bin} --help: {help}"
    );
    let config = workspace_root().join("deploy/config");
    std::fs::copy(
        config.join("sensor.example.toml"),
        rootfs.join("etc/apitap/sensor.toml"),
    )
    .unwrap();
    std::fs::copy(
        config.join("analyzer.example.toml"),
        rootfs.join("etc/apitap/analyzer.toml"),
    )
    .unwrap();
    add_runtime_devices(rootfs);
    let checks: &[&[&str]] = match bin {
        "apitap-sensor" => &[&["check-config", "--config", "/etc/apitap/sensor.toml"]],
        "apitap-analyzer" => &[&["check-config", "--config", "/etc/apitap/analyzer.toml"]],
        _ => &[],
    };
    for args in checks {
        let argv: Vec<&str> = std::iter::once(exe.as_str())
            .chain(args.iter().copied())
            .collect();
        let out = chroot_ok(rootfs, uid, &argv);
        assert!(!out.trim().is_empty(), "{argv:?} printed nothing");
    }
}

fn ldd_libraries(bin: &Path) -> Vec<String> {
    let out = run(Command::new("ldd").arg(bin));
    stdout(&out)
        .lines()
        .filter_map(|l| {
            let p = l.split_once("=>").map_or(l, |(_, p)| p).trim();
            let p = p.split(" (").next()?.trim();
            p.starts_with('/').then(|| p.to_owned())
        })
        .collect()
}

/// Every path under `root` (relative) with its kind, mode and owner.
fn listing(root: &Path) -> BTreeMap<String, (char, u32, u32, u32)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = if meta.is_dir() {
                stack.push(path.clone());
                'd'
            } else if meta.file_type().is_symlink() {
                'l'
            } else {
                'f'
            };
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mode = if kind == 'l' { 0 } else { meta.mode() & 0o7777 };
            out.insert(rel, (kind, mode, meta.uid(), meta.gid()));
        }
    }
    out
}

#[test]
fn image_roots_run_each_program_alone() {
    if !require(
        "image_roots_run_each_program_alone",
        "image test",
        problem(),
    ) {
        return;
    }
    let dir = scratch("roots");
    let root = dir.join("root");
    xtask_image(&root, None);
    for &(image, bin, uid) in IMAGES {
        let rootfs = root.join(image);
        // Exactly the libraries ldd resolves on the host binary, each with its Debian package.
        let host_bin = workspace_bin(bin).unwrap();
        let provenance =
            std::fs::read_to_string(rootfs.join("usr/share/doc/apitap/provenance.txt")).unwrap();
        let mut libs_in_root = Vec::new();
        for lib in ldd_libraries(&host_bin) {
            assert!(
                rootfs.join(lib.trim_start_matches('/')).is_file(),
                "{image}: {lib} missing"
            );
            let line = provenance
                .lines()
                .find(|l| l.starts_with(&format!("{lib}\t")))
                .unwrap_or_else(|| panic!("{image}: {lib} not in the provenance list"));
            assert!(line.contains("Debian package "), "{line}");
            libs_in_root.push(lib);
        }
        assert!(
            libs_in_root.iter().any(|l| l.contains("libssl.so")),
            "{libs_in_root:?}"
        );
        let files = listing(&rootfs);
        let so_files: Vec<&String> = files.keys().filter(|p| p.contains(".so")).collect();
        assert_eq!(
            so_files.len(),
            libs_in_root.len(),
            "{image}: libraries beyond ldd's: {so_files:?}"
        );
        assert_eq!(files["tmp"], ('d', 0o1777, 0, 0));
        let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
        assert!(
            passwd
                .lines()
                .any(|l| l.split(':').nth(2) == Some(&uid.to_string())),
            "{image}: uid {uid} not in /etc/passwd: {passwd}"
        );
        check_runs(&rootfs, bin, uid);
    }
    // The analyzer's state directory is its user's, and the user can write nothing else.
    let analyzer = root.join("apitap-analyzer");
    let files = listing(&analyzer);
    assert_eq!(files["var/lib/apitap"], ('d', 0o700, 65532, 65532));
    assert_eq!(files["usr/local/bin/apitap-analyzer"], ('f', 0o755, 0, 0));

    // A root missing one library fails: the chroot is the only source of libraries.
    let sensor = root.join("apitap-sensor");
    let libssl = ldd_libraries(&workspace_bin("apitap-sensor").unwrap())
        .into_iter()
        .find(|l| l.contains("libssl.so"))
        .unwrap();
    let in_root = sensor.join(libssl.trim_start_matches('/'));
    let aside = sensor.join("libssl.aside");
    std::fs::rename(&in_root, &aside).unwrap();
    let out = chroot(&sensor, 0, &["/usr/local/bin/apitap-sensor", "--version"]);
    std::fs::rename(&aside, &in_root).unwrap();
    assert!(!out.status.success(), "ran without {libssl}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("libssl.so"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Running again: assembling replaces a root it wrote before, and refuses anything else.
    xtask_image(&root, None);
    let other = dir.join("other");
    std::fs::create_dir_all(other.join("apitap-sensor")).unwrap();
    let out = Command::new(workspace_bin("xtask").unwrap())
        .args(["image", "--image", "apitap-sensor", "--root"])
        .arg(&other)
        .arg("--bin-dir")
        .arg(workspace_bin("apitap").unwrap().parent().unwrap())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "overwrote a directory it did not write"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn oci_layouts_unpack_with_third_party_tools() {
    if !require(
        "oci_layouts_unpack_with_third_party_tools",
        "image test",
        problem(),
    ) {
        return;
    }
    let dir = scratch("oci");
    let (root, oci) = (dir.join("root"), dir.join("oci"));
    xtask_image(&root, Some(&oci));
    for &(image, bin, uid) in IMAGES {
        let reference = format!("oci:{}:{VERSION}", oci.join(image).display());
        let inspect: serde_json::Value = serde_json::from_slice(
            &run(Command::new("skopeo").args(["inspect", &reference])).stdout,
        )
        .unwrap();
        assert_eq!(inspect["Os"], "linux", "{inspect}");
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1, "{inspect}");
        let config: serde_json::Value = serde_json::from_slice(
            &run(Command::new("skopeo").args(["inspect", "--config", &reference])).stdout,
        )
        .unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([format!("/usr/local/bin/{bin}")]),
            "{config}"
        );
        assert_eq!(config["config"]["User"], format!("{uid}:{uid}"), "{config}");
        // umoci checks every digest while unpacking into a runtime bundle.
        let bundle = dir.join(format!("bundle-{image}"));
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{VERSION}", oci.join(image).display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        // The layer holds exactly the root, with its modes and owners.
        assert_eq!(listing(&rootfs), listing(&root.join(image)), "{image}");
        let runtime: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert_eq!(runtime["process"]["user"]["uid"], uid, "{runtime}");
        assert_eq!(
            runtime["process"]["args"][0],
            format!("/usr/local/bin/{bin}"),
            "{runtime}"
        );
        check_runs(&rootfs, bin, uid);
    }
    // Same inputs, same layer: the layout is reproducible.
    let first = std::fs::read(oci.join("apitap-sensor/index.json")).unwrap();
    xtask_image(&root, Some(&oci));
    assert_eq!(
        std::fs::read(oci.join("apitap-sensor/index.json")).unwrap(),
        first,
        "a second build changed the manifest digest"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The Dockerfile ships the roots `cargo xtask image` writes, under the images, entrypoints
/// and users the Kubernetes manifests use.
#[test]
fn dockerfile_ships_the_tested_roots_under_the_manifests_names() {
    let root = workspace_root();
    let dockerfile = std::fs::read_to_string(root.join("deploy/image/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("cargo xtask image --root /out --release"),
        "the builder stage must run `cargo xtask image --root /out --release`"
    );
    for &(image, bin, uid) in IMAGES {
        let stage = dockerfile
            .split("\nFROM ")
            .find(|s| s.starts_with(&format!("scratch AS {image}\n")))
            .unwrap_or_else(|| panic!("no `FROM scratch AS {image}` stage"));
        assert!(
            stage.contains(&format!("COPY --from=build /out/{image}/ /\n")),
            "{image}: {stage}"
        );
        assert!(
            stage.contains(&format!("\nUSER {uid}:{uid}\n")),
            "{image}: {stage}"
        );
        assert!(
            stage.contains(&format!("ENTRYPOINT [\"/usr/local/bin/{bin}\"]")),
            "{image}: {stage}"
        );
        assert_eq!(
            stage.matches("\nRUN ").count() + stage.matches("\nADD ").count(),
            0,
            "{image}: the final stage adds nothing the test did not run"
        );
    }
    for (manifest, image, uid) in [
        ("sensor-daemonset.yaml", "apitap-sensor", 0),
        ("analyzer-deployment.yaml", "apitap-analyzer", 65532),
    ] {
        let text = std::fs::read_to_string(root.join("deploy/kubernetes").join(manifest)).unwrap();
        assert!(
            text.contains(&format!("image: {image}:{VERSION}")),
            "{manifest} does not run {image}:{VERSION}"
        );
        assert!(
            text.contains(&format!("\"/usr/local/bin/{image}\""))
                || text.contains(&format!("- /usr/local/bin/{image}\n")),
            "{manifest} does not run /usr/local/bin/{image}"
        );
        assert!(
            text.contains(&format!("runAsUser: {uid}\n")),
            "{manifest}: runAsUser is not {uid}"
        );
    }
}
