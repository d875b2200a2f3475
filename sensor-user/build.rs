//! Builds the eBPF object (`sensor-ebpf`) for the BPF target with aya-build so that the agent
//! embeds exactly the programs built from this tree.
use std::path::PathBuf;

use anyhow::{Context as _, bail};

/// The eBPF binary's name: aya-build's output file, embedded by `capture.rs` from OUT_DIR.
const EBPF_OBJECT: &str = "apitap-sensor-ebpf";

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../common/src");
    println!("cargo:rerun-if-changed=../sensor-ebpf/rust-toolchain.toml");
    println!("cargo:rerun-if-env-changed=PATH");
    let skip = std::env::var_os("AYA_BUILD_SKIP").is_some();
    if !skip {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()))
            .unwrap_or(false);
        if !found {
            bail!(
                "bpf-linker is not on PATH: run `cargo xtask setup` (installs bpf-linker@0.10.1)"
            );
        }
    }
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    // `cargo build` and `cargo clippy` run this script in different OUT_DIRs (clippy's wrapper
    // changes the fingerprint), and aya-build keeps its nested BPF target dir inside OUT_DIR, so
    // each built the same object from scratch: 50 s and 173 MB twice per test run. Point
    // aya-build at one directory per profile beside the build scripts' own
    // (`target/<profile>/build/apitap-sensor-ebpf-shared`), where the second build finds
    // everything fresh (cargo's lock serialises concurrent ones), and copy the object back.
    let shared = out_dir
        .ancestors()
        .nth(2)
        .map(|build| build.join("apitap-sensor-ebpf-shared"))
        .with_context(|| format!("OUT_DIR {} has no build/ ancestor", out_dir.display()))?;
    std::fs::create_dir_all(&shared).with_context(|| format!("creating {}", shared.display()))?;
    // SAFETY: build scripts are single-threaded here; aya-build reads OUT_DIR from our env.
    unsafe { std::env::set_var("OUT_DIR", &shared) };
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_OBJECT,
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&ebpf_toolchain()?),
    )
    .context("building the eBPF programs (sensor-ebpf)")?;
    let (from, to) = (shared.join(EBPF_OBJECT), out_dir.join(EBPF_OBJECT));
    if !skip {
        std::fs::copy(&from, &to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    Ok(())
}

/// The `channel` of `sensor-ebpf/rust-toolchain.toml`: the toolchain the programs build with.
fn ebpf_toolchain() -> anyhow::Result<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sensor-ebpf/rust-toolchain.toml"
    );
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    toolchain_channel(&text).with_context(|| format!("{path} has no `channel = \"…\"`"))
}

/// `channel = "…"` of a rust-toolchain.toml (the file is ours: one key per line).
fn toolchain_channel(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "channel").then(|| v.trim().trim_matches('"').to_owned())
    })
}
