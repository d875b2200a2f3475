//! Sets `bpf_target_arch` (as aya-ebpf does for itself): the architecture whose `pt_regs`
//! layout the probes read. The Go `crypto/tls` probes exist only where Go's register ABI is
//! known to them (x86-64).

fn main() {
    println!(
        "cargo::rustc-check-cfg=cfg(bpf_target_arch, values(\"x86_64\", \"arm\", \"aarch64\", \"riscv64\", \"powerpc64\", \"s390x\", \"mips\", \"loongarch64\"))"
    );
    println!("cargo::rerun-if-env-changed=CARGO_CFG_BPF_TARGET_ARCH");
    let arch = std::env::var("CARGO_CFG_BPF_TARGET_ARCH").unwrap_or_else(|_| {
        let host = std::env::var("HOST").unwrap_or_default();
        host.split('-').next().unwrap_or_default().to_owned()
    });
    println!("cargo::rustc-cfg=bpf_target_arch=\"{arch}\"");
}
