//! Finding the TLS libraries, checking the tracepoints' formats, and attaching the TLS
//! programs (uprobes per library file, socket and process tracepoints).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use apitap_common::tls::{
    EXE_BYTES, MAP_TLS_COMMS, MAP_TLS_CONFIG, MAP_TLS_COUNTERS, MAP_TLS_EVENTS, MAP_TLS_EXES,
    MAP_TLS_TAIL, PROG_PROCESS_EXEC, PROG_PROCESS_FORK, PROG_SOCK_RECV, PROG_SOCK_SEND,
    PROG_SOCK_STATE, PROG_SSL_FREE, PROG_SSL_HANDSHAKE_ENTRY, PROG_SSL_HANDSHAKE_RETURN,
    PROG_SSL_READ_ENTRY, PROG_SSL_READ_EX_ENTRY, PROG_SSL_READ_RETURN, PROG_SSL_WRITE_ENTRY,
    PROG_SSL_WRITE_EX_ENTRY, PROG_SSL_WRITE_RETURN, PROG_TLS_CONTINUE, TlsConfig, TlsExe,
    tls_flags,
};
use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeScope};
use aya::programs::{RawTracePoint, UProbe};
use tracing::{debug, info, warn};

use super::btf::Btf;
use crate::config::TlsSection;

/// The library file name probed (OpenSSL 3.x).
pub const LIBSSL: &str = "libssl.so.3";

/// Directories searched for [`LIBSSL`] on the host when `tls.libraries` is empty.
const LIBRARY_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/lib",
    "/usr/local/lib64",
    "/usr/local/lib",
];

/// Processes whose maps are read at most when looking for libraries.
const MAX_SCANNED_PROCESSES: usize = 65_536;

/// A library file to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Path the probes are attached through.
    pub path: PathBuf,
    /// Device and inode: one probe per file, however many paths lead to it.
    pub inode: (u64, u64),
}

/// The libraries to probe: `configured` (each must exist), else the standard directories and
/// every [`LIBSSL`] mapped by a running process (through its `/proc/<pid>/root`).
pub fn find_libraries(configured: &[PathBuf]) -> anyhow::Result<Vec<Library>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut add = |path: PathBuf, out: &mut Vec<Library>| -> bool {
        let Ok(meta) = std::fs::metadata(&path) else {
            return false;
        };
        if !meta.is_file() {
            return false;
        }
        let inode = (meta.dev(), meta.ino());
        if seen.insert(inode) {
            out.push(Library { path, inode });
        }
        true
    };
    if !configured.is_empty() {
        for p in configured {
            if !add(p.clone(), &mut out) {
                bail!("`tls.libraries`: {} is not a readable file", p.display());
            }
        }
        return Ok(out);
    }
    for d in LIBRARY_DIRS {
        add(Path::new(d).join(LIBSSL), &mut out);
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Ok(out);
    };
    for entry in procs.flatten().take(MAX_SCANNED_PROCESSES) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
            continue; // exited, or not ours to read
        };
        for path in mapped_libraries(&maps) {
            add(PathBuf::from(format!("/proc/{pid}/root{path}")), &mut out);
        }
    }
    Ok(out)
}

/// Distinct paths of [`LIBSSL`] files in a `/proc/<pid>/maps` text.
pub fn mapped_libraries(maps: &str) -> Vec<&str> {
    let mut v: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.starts_with('/') && p.rsplit('/').next() == Some(LIBSSL))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The kernel field offsets the programs read, from the running kernel's BTF.
pub fn kernel_offsets(btf: &Btf) -> anyhow::Result<TlsConfig> {
    let o = |s: &str, m: &str| -> anyhow::Result<u32> {
        let off = btf
            .offset(s, m)
            .with_context(|| format!("`tls.enabled`: this kernel's layout of {s}"))?;
        u32::try_from(off).context("offset out of range")
    };
    Ok(TlsConfig {
        flags: 0,
        sk_daddr: o("sock_common", "skc_daddr")?,
        sk_rcv_saddr: o("sock_common", "skc_rcv_saddr")?,
        sk_dport: o("sock_common", "skc_dport")?,
        sk_num: o("sock_common", "skc_num")?,
        sk_family: o("sock_common", "skc_family")?,
        sk_v6_daddr: o("sock_common", "skc_v6_daddr")?,
        sk_v6_rcv_saddr: o("sock_common", "skc_v6_rcv_saddr")?,
        // `struct sock` starts with its `struct sock_common __sk_common`.
        sk_protocol: o("sock", "sk_protocol")?,
        task_tgid: o("task_struct", "tgid")?,
        bprm_filename: o("linux_binprm", "filename")?,
        wakeup_bytes: 0,
    })
}

/// The TLS programs attached, and the maps the agent reads.
pub struct TlsHandles {
    /// Ring of [`apitap_common::tls::TlsHeader`] records.
    pub ring: RingBuf<MapData>,
    /// Per-CPU counters indexed by [`apitap_common::tls::TlsCounter`].
    pub counters: PerCpuArray<MapData, u64>,
    /// Executables per process.
    pub exes: HashMap<MapData, u32, TlsExe>,
    /// Library names per attach cookie.
    pub libraries: Vec<String>,
}

/// The OpenSSL functions probed: (symbol, entry program, return program).
const PROBES: &[(&str, &str, Option<&str>)] = &[
    ("SSL_read", PROG_SSL_READ_ENTRY, Some(PROG_SSL_READ_RETURN)),
    (
        "SSL_read_ex",
        PROG_SSL_READ_EX_ENTRY,
        Some(PROG_SSL_READ_RETURN),
    ),
    (
        "SSL_write",
        PROG_SSL_WRITE_ENTRY,
        Some(PROG_SSL_WRITE_RETURN),
    ),
    (
        "SSL_write_ex",
        PROG_SSL_WRITE_EX_ENTRY,
        Some(PROG_SSL_WRITE_RETURN),
    ),
    ("SSL_free", PROG_SSL_FREE, None),
    (
        "SSL_do_handshake",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
    ),
    (
        "SSL_accept",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
    ),
    (
        "SSL_connect",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
    ),
];

/// Configures and attaches the TLS programs of `ebpf` per `cfg`; records wake the agent when
/// the unread data crosses `wakeup_bytes` (the capture's setting).
pub fn attach(ebpf: &mut Ebpf, cfg: &TlsSection, wakeup_bytes: u32) -> anyhow::Result<TlsHandles> {
    let btf = Btf::from_kernel()?;
    let mut tls_config = kernel_offsets(&btf)?;
    tls_config.wakeup_bytes = wakeup_bytes.min(cfg.ring_buffer_bytes / 2);
    let libraries = find_libraries(&cfg.libraries)?;
    if libraries.is_empty() {
        bail!(
            "`tls.libraries`: no {LIBSSL} found in the library directories or any running process (set the paths)"
        );
    }

    let mut comms: HashMap<_, [u8; 16], u8> = HashMap::try_from(
        ebpf.map_mut(MAP_TLS_COMMS)
            .context("map TLS_COMMS missing")?,
    )?;
    for p in &cfg.processes {
        comms
            .insert(comm_key(p), 1, 0)
            .with_context(|| format!("`tls.processes`: adding {p:?}"))?;
    }
    let mut flags = tls_flags::ENABLED;
    if cfg.processes.is_empty() {
        flags |= tls_flags::ALL_PROCESSES;
    }
    let mut config: Array<_, TlsConfig> = Array::try_from(
        ebpf.map_mut(MAP_TLS_CONFIG)
            .context("map TLS_CONFIG missing")?,
    )?;
    tls_config.flags = flags;
    config.set(0, tls_config, 0)?;

    // Processes running now: their executables, while the sensor may still read any
    // process's /proc/<pid>/exe. Later ones come from the exec tracepoint.
    let mut exes: HashMap<_, u32, TlsExe> =
        HashMap::try_from(ebpf.map_mut(MAP_TLS_EXES).context("map TLS_EXES missing")?)?;
    let mut known = 0usize;
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for entry in procs.flatten().take(MAX_SCANNED_PROCESSES) {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            if !cfg.processes.is_empty() && !cfg.processes.iter().any(|p| p == comm.trim_end()) {
                continue;
            }
            if let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) {
                let _ = exes.insert(pid, exe_value(&exe.to_string_lossy()), 0);
                known += 1;
            }
        }
    }

    for name in [
        PROG_SSL_READ_ENTRY,
        PROG_SSL_READ_EX_ENTRY,
        PROG_SSL_WRITE_ENTRY,
        PROG_SSL_WRITE_EX_ENTRY,
        PROG_SSL_FREE,
        PROG_SSL_HANDSHAKE_ENTRY,
        PROG_SSL_HANDSHAKE_RETURN,
        PROG_SSL_READ_RETURN,
        PROG_SSL_WRITE_RETURN,
        PROG_TLS_CONTINUE,
    ] {
        let p: &mut UProbe = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()?;
        p.load()
            .with_context(|| format!("verifying the TLS program {name}"))?;
    }
    {
        let cont = ebpf
            .program(PROG_TLS_CONTINUE)
            .context("continuation program missing")?
            .fd()?
            .try_clone()?;
        let mut tail =
            ProgramArray::try_from(ebpf.map_mut(MAP_TLS_TAIL).context("map TLS_TAIL missing")?)?;
        tail.set(0, &cont, 0)?;
    }

    let mut names = Vec::new();
    let mut attached = 0usize;
    for (i, lib) in libraries.iter().enumerate() {
        let mut ok = true;
        for (symbol, entry, ret) in PROBES {
            for prog in std::iter::once(*entry).chain(*ret) {
                let p: &mut UProbe = ebpf
                    .program_mut(prog)
                    .with_context(|| format!("program {prog} missing"))?
                    .try_into()?;
                let point = UProbeAttachPoint {
                    location: UProbeAttachLocation::Symbol(symbol),
                    cookie: Some(i as u64),
                };
                if let Err(e) = p.attach(point, &lib.path, UProbeScope::AllProcesses) {
                    // An OpenSSL 1.1 libssl has no SSL_read_ex before 1.1.1; any other miss
                    // means this is not a library the probes understand.
                    warn!(library = %lib.path.display(), symbol, error = %format!("{:#}", anyhow::Error::from(e)), "uprobe not attached");
                    ok = false;
                }
            }
        }
        if ok {
            attached += 1;
        }
        names.push("openssl".to_owned());
        info!(library = %lib.path.display(), inode = lib.inode.1, "TLS library probed");
    }
    if attached == 0 {
        bail!("`tls`: no library could be probed (see the warnings above)");
    }

    for (prog, tp) in [
        (PROG_SOCK_SEND, "sock_send_length"),
        (PROG_SOCK_RECV, "sock_recv_length"),
        (PROG_SOCK_STATE, "inet_sock_set_state"),
        (PROG_PROCESS_EXEC, "sched_process_exec"),
        (PROG_PROCESS_FORK, "sched_process_fork"),
    ] {
        let p: &mut RawTracePoint = ebpf
            .program_mut(prog)
            .with_context(|| format!("program {prog} missing"))?
            .try_into()?;
        p.load().with_context(|| format!("verifying {prog}"))?;
        p.attach(tp).with_context(|| {
            format!("attaching the raw tracepoint {tp} (sock_*_length: kernel 6.3 or later)")
        })?;
    }
    info!(
        libraries = libraries.len(),
        processes = ?cfg.processes,
        running_selected = known,
        "TLS capture attached"
    );
    debug!(?libraries, "TLS libraries");

    let ring = RingBuf::try_from(
        ebpf.take_map(MAP_TLS_EVENTS)
            .context("map TLS_EVENTS missing")?,
    )?;
    let counters = PerCpuArray::try_from(
        ebpf.take_map(MAP_TLS_COUNTERS)
            .context("map TLS_COUNTERS missing")?,
    )?;
    let exes = HashMap::try_from(
        ebpf.take_map(MAP_TLS_EXES)
            .context("map TLS_EXES missing")?,
    )?;
    Ok(TlsHandles {
        ring,
        counters,
        exes,
        libraries: names,
    })
}

/// The [`MAP_TLS_COMMS`] key of a command name: NUL-padded, cut to 15 bytes like `comm`.
pub fn comm_key(name: &str) -> [u8; 16] {
    let mut k = [0u8; 16];
    let b = name.as_bytes();
    let n = b.len().min(15);
    k[..n].copy_from_slice(&b[..n]);
    k
}

/// An executable path as the kernel map stores it.
pub fn exe_value(path: &str) -> TlsExe {
    let mut v = TlsExe {
        path: [0; EXE_BYTES],
    };
    let b = path.as_bytes();
    let n = b.len().min(EXE_BYTES - 1);
    v.path[..n].copy_from_slice(&b[..n]);
    v
}

/// The path in a map value.
pub fn exe_path(v: &TlsExe) -> Option<String> {
    let n = v.path.iter().position(|b| *b == 0).unwrap_or(EXE_BYTES);
    (n > 0).then(|| String::from_utf8_lossy(&v.path[..n]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libssl_paths_are_read_from_maps() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r-xp 00001000 08:01 124 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000005000-7f0000006000 rw-p 00000000 00:00 0 
7f0000006000-7f0000007000 r-xp 00000000 08:01 125 /opt/app/libssl.so.3.bak
";
        assert_eq!(
            mapped_libraries(maps),
            vec!["/usr/lib/x86_64-linux-gnu/libssl.so.3"]
        );
    }

    /// The running kernel's BTF has every field the programs read.
    #[test]
    fn this_kernels_offsets_are_found() {
        let Ok(btf) = Btf::from_kernel() else {
            return crate::attribution::skip("no /sys/kernel/btf/vmlinux");
        };
        let c = kernel_offsets(&btf).unwrap();
        assert_eq!(
            (c.sk_daddr, c.sk_rcv_saddr, c.sk_dport, c.sk_num),
            (0, 4, 12, 14)
        );
        assert!(c.sk_v6_daddr > c.sk_family && c.task_tgid > 0 && c.bprm_filename > 0);
    }

    #[test]
    fn comm_keys_and_exe_values_are_cut_like_the_kernel() {
        assert_eq!(&comm_key("nginx")[..6], b"nginx\0");
        assert_eq!(comm_key("a-very-long-command-name")[15], 0);
        let v = exe_value("/usr/sbin/nginx");
        assert_eq!(exe_path(&v).as_deref(), Some("/usr/sbin/nginx"));
        let long = "x".repeat(300);
        assert_eq!(exe_path(&exe_value(&long)).unwrap().len(), EXE_BYTES - 1);
    }
}
