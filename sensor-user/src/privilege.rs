//! Giving up privileges once the programs are attached (R-OPS-3).
//!
//! The sensor needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN only to load and attach its
//! programs. Everything after that — parsing hostile traffic, compressing, talking to Kafka
//! through librdkafka — runs with no capability at all: links, maps and the ring buffer are
//! file descriptors the process already holds, and on kernels with tcx (6.6) and BPF links
//! for XDP, closing them detaches the programs, so exit needs no privilege either.
//!
//! Capabilities are per thread on Linux, so the drop happens while the process has a single
//! thread (before the Kafka producer, the metrics server or the embedded analyzer start); the
//! check afterwards reads every thread's sets from `/proc/self/task` and fails if any thread
//! kept one. `no_new_privs` and an empty bounding set make sure no `execve` gets them back.
//!
//! TLS capture (`[tls]`) needs CAP_PERFMON besides, to load the uprobe and raw tracepoint
//! programs, and CAP_SYS_ADMIN to open the uprobe perf events (the kernel tested, 6.18,
//! refuses them with CAP_PERFMON alone); both only at start. The uprobes are attached to the library *files* (inodes), so a process started
//! later that maps a probed file is traced with no new attach, and nothing is kept after
//! start either. The trade-off: a library file first seen after start (a new container image
//! with its own `libssl.so.3`, a new build of a server with OpenSSL linked in) is not probed
//! until the sensor restarts (such processes are counted when they exec, `tls::watch`);
//! keeping CAP_BPF and
//! CAP_PERFMON to attach later would let a compromised sensor load tracing programs, which
//! read any process's memory.
//!
//! Older kernels still need two capabilities after attach, and keep exactly those: before 6.5
//! every `bpf()` call (reading the drop counters) needs CAP_BPF, and before 6.6 the TC filter
//! is detached over netlink, which needs CAP_NET_ADMIN.

use aya::util::KernelVersion;
use thiserror::Error;

/// CAP_NET_ADMIN (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
/// CAP_SYS_ADMIN.
pub const CAP_SYS_ADMIN: u32 = 21;
/// CAP_PERFMON (uprobes and tracepoints, `[tls]`).
pub const CAP_PERFMON: u32 = 38;
/// CAP_BPF.
pub const CAP_BPF: u32 = 39;

/// Why privileges could not be given up.
#[derive(Debug, Error)]
pub enum PrivilegeError {
    /// A `prctl` or `capset` call failed.
    #[error("{what}: {source}")]
    Syscall {
        /// The call.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// `/proc/self/task` could not be read.
    #[error("reading {path}: {source}")]
    Proc {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// A thread still holds capabilities after the drop (it was started before it).
    #[error("thread {tid} ({name}) still holds capabilities {sets} after the drop")]
    Kept {
        /// Thread id.
        tid: String,
        /// Thread name.
        name: String,
        /// The non-empty sets, as in `/proc/<pid>/status`.
        sets: String,
    },
}

/// The capabilities this kernel needs the sensor to keep after attaching (see the module
/// docs): none from 6.6 on.
pub fn needed_after_attach(kernel: KernelVersion) -> Vec<u32> {
    let mut keep = Vec::new();
    if kernel < KernelVersion::new(6, 5, 0) {
        keep.push(CAP_BPF);
    }
    if kernel < KernelVersion::new(6, 6, 0) {
        keep.push(CAP_NET_ADMIN);
    }
    keep
}

/// Drops every capability except `keep` from all sets (effective, permitted, inheritable,
/// ambient, bounding), sets `no_new_privs`, then checks every thread of the process. Must be
/// called while the process has one thread.
pub fn drop_all_but(keep: &[u32]) -> Result<(), PrivilegeError> {
    let sys = |what: &'static str, rc: libc::c_int| {
        if rc == 0 {
            Ok(())
        } else {
            Err(PrivilegeError::Syscall {
                what,
                source: std::io::Error::last_os_error(),
            })
        }
    };
    // SAFETY: prctl with integer arguments only.
    sys("prctl(PR_SET_NO_NEW_PRIVS)", unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    })?;
    // SAFETY: as above. Fails with EINVAL only on kernels without ambient sets (< 4.3).
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    // The bounding set needs CAP_SETPCAP to shrink; without it (a non-root user granted only
    // the attach capabilities) it cannot matter: no_new_privs stops execve from using it.
    for cap in 0..=last_cap() {
        if !keep.contains(&cap) {
            // SAFETY: as above; EINVAL for a capability this kernel does not know, EPERM
            // without CAP_SETPCAP, both harmless.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        }
    }
    let mut mask = [0u32; 2];
    for cap in keep {
        mask[(*cap / 32) as usize] |= 1 << (cap % 32);
    }
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: mask[0],
            permitted: mask[0],
            inheritable: 0,
        },
        CapData {
            effective: mask[1],
            permitted: mask[1],
            inheritable: 0,
        },
    ];
    // SAFETY: capset with a v3 header and the two data words v3 requires.
    sys("capset", unsafe {
        libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int
    })?;
    let allowed = mask[0] as u64 | (mask[1] as u64) << 32;
    check_threads(allowed)
}

/// The capabilities in this thread's permitted set, as a list of numbers.
pub fn permitted() -> Vec<u32> {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("CapPrm:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    (0..64).filter(|c| mask & (1 << c) != 0).collect()
}

/// Fails if any thread of this process holds a capability outside `allowed` in its
/// effective, permitted, inheritable or ambient set.
pub fn check_threads(allowed: u64) -> Result<(), PrivilegeError> {
    let dir = "/proc/self/task";
    let proc_err = |path: &str, source| PrivilegeError::Proc {
        path: path.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(|e| proc_err(dir, e))? {
        let entry = entry.map_err(|e| proc_err(dir, e))?;
        let path = entry.path().join("status");
        let status = match std::fs::read_to_string(&path) {
            Ok(s) => s,
            // The thread exited meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(proc_err(&path.display().to_string(), e)),
        };
        let sets = held_sets(&status, allowed);
        if !sets.is_empty() {
            let name = status
                .lines()
                .find_map(|l| l.strip_prefix("Name:"))
                .unwrap_or("")
                .trim()
                .to_owned();
            return Err(PrivilegeError::Kept {
                tid: entry.file_name().to_string_lossy().into_owned(),
                name,
                sets: sets.join(" "),
            });
        }
    }
    Ok(())
}

/// The capability sets of a `/proc/<pid>/status` text that hold anything outside `allowed`,
/// as `CapEff=...` strings.
pub fn held_sets(status: &str, allowed: u64) -> Vec<String> {
    ["CapInh", "CapPrm", "CapEff", "CapAmb"]
        .iter()
        .filter_map(|set| {
            let v = status
                .lines()
                .find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
            (v & !allowed != 0).then(|| format!("{set}={v:016x}"))
        })
        .collect()
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernels_with_tcx_keep_nothing() {
        let k = |a, b| KernelVersion::new(a, b, 0);
        assert!(needed_after_attach(k(6, 18)).is_empty());
        assert!(needed_after_attach(k(6, 6)).is_empty());
        assert_eq!(needed_after_attach(k(6, 5)), vec![CAP_NET_ADMIN]);
        assert_eq!(needed_after_attach(k(5, 15)), vec![CAP_BPF, CAP_NET_ADMIN]);
    }

    #[test]
    fn status_sets_outside_the_allowed_mask_are_named() {
        let status = "Name:\tapitap-sensor\nCapInh:\t0000000000000000\nCapPrm:\t0000008000001000\n\
                      CapEff:\t0000008000001000\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\n";
        assert_eq!(
            held_sets(status, 0),
            vec!["CapPrm=0000008000001000", "CapEff=0000008000001000"]
        );
        let allowed = 1 << CAP_NET_ADMIN | 1 << CAP_BPF;
        assert!(
            held_sets(status, allowed).is_empty(),
            "the bounding set is not a held set"
        );
    }
}
