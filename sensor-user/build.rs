//! Builds the eBPF object (`sensor-ebpf`) for the BPF target with aya-build so that the agent
//! embeds exactly the programs built from this tree.
use anyhow::{Context as _, bail};

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-changed=../common/src");
    println!("cargo:rerun-if-env-changed=PATH");
    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join("bpf-linker").is_file()))
            .unwrap_or(false);
        if !found {
            bail!(
                "bpf-linker is not on PATH: run `cargo xtask setup` (installs bpf-linker@0.10.1)"
            );
        }
    }
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../sensor-ebpf");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "apitap-sensor-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
    .context("building the eBPF programs (sensor-ebpf)")
}
