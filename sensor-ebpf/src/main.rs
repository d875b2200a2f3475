//! apitap kernel side: an XDP program (ingress) and a TC classifier (egress) that copy the TCP
//! payload of packets on the configured ports into one ring buffer (R-CAP-1, R-CAP-2), and a
//! cgroup egress program that records which cgroup owns each captured flow (R-CAP-5), and
//! uprobes on the TLS library with socket tracepoints that capture HTTPS plaintext (R-CAP-4).
//!
//! Both programs are observers: they always let the packet through unchanged (`XDP_PASS`,
//! `TC_ACT_UNSPEC` so later tcx programs still run). Every packet that should have been captured
//! and was not, or only partly, bumps a per-CPU drop counter named after its cause (R-CAP-7).
//! Record layout and counter indices live in `apitap-common`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod capture;
#[cfg(target_arch = "bpf")]
mod owner;
#[cfg(target_arch = "bpf")]
mod tls;

/// The crate is only meaningful for the BPF target; a host build (`cargo check --workspace`)
/// produces an empty binary.
#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(all(target_arch = "bpf", not(test)))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program with a reachable panic, so this is never executed.
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
