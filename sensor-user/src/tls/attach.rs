//! Finding the TLS libraries, checking the tracepoints' formats, and attaching the TLS
//! programs (uprobes per library file, socket and process tracepoints).

use std::collections::{BTreeMap, HashMap as StdHashMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use apitap_common::tls::{
    EXE_BYTES, MAP_TLS_COMMS, MAP_TLS_CONFIG, MAP_TLS_COUNTERS, MAP_TLS_EVENTS, MAP_TLS_EXES,
    MAP_TLS_TAIL, PROG_GNUTLS_RECV_ENTRY, PROG_GNUTLS_SEND_ENTRY, PROG_PROCESS_EXEC,
    PROG_PROCESS_FORK, PROG_SOCK_RECV, PROG_SOCK_SEND, PROG_SOCK_STATE, PROG_SSL_FREE,
    PROG_SSL_HANDSHAKE_ENTRY, PROG_SSL_HANDSHAKE_RETURN, PROG_SSL_READ_ENTRY,
    PROG_SSL_READ_EX_ENTRY, PROG_SSL_READ_RETURN, PROG_SSL_WRITE_ENTRY, PROG_SSL_WRITE_EX_ENTRY,
    PROG_SSL_WRITE_RETURN, PROG_TLS_CONTINUE, TlsConfig, TlsExe, tls_flags,
};
use apitap_common::tls::{
    MAP_TLS_EXE_SELECT, MAP_TLS_PORTS, PROG_GNUTLS_SET_NAME_ENTRY, PROG_GO_CLOSE,
    PROG_GO_READ_ENTRY, PROG_GO_RETURN, PROG_GO_WRITE_ENTRY, PROG_SSL_CTRL_ENTRY,
    PROG_SSL_GET_SERVERNAME_ENTRY, PROG_SSL_GET_SERVERNAME_RETURN, PROG_SSL_SET_HOST_ENTRY,
};
use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, PerCpuArray, ProgramArray, RingBuf};
use aya::programs::uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope};
use aya::programs::{RawTracePoint, UProbe};
use tracing::{debug, info, warn};

use super::btf::Btf;
use super::elf::{self, Class, Flavor};
use crate::config::TlsSection;

/// The shared OpenSSL 3.x library's file name.
pub const LIBSSL: &str = "libssl.so.3";
/// The shared GnuTLS 3.x library's file name.
pub const LIBGNUTLS: &str = "libgnutls.so.30";

/// Directories searched for [`LIBSSL`] and [`LIBGNUTLS`] on the host when `tls.libraries` is
/// empty.
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

/// A file to probe: a shared library, or an executable with the library linked in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    /// Path the probes are attached through.
    pub path: PathBuf,
    /// Device and inode: one probe per file, however many paths lead to it.
    pub inode: (u64, u64),
    /// Which library's functions it defines.
    pub flavor: Flavor,
}

/// `apitap_tls_unsupported_processes_total` label values: why a process's TLS is not
/// captured.
pub mod unsupported {
    /// It uses a TLS implementation the probes do not understand (Go, NSS, ...).
    pub const NOT_HOOKABLE: &str = "not_hookable";
    /// Its library is one the probes understand, but attaching to that file failed.
    pub const ATTACH_FAILED: &str = "attach_failed";
    /// It started after the sensor and runs a library file the probes understand that was
    /// not probed at start (attaching needs the capabilities dropped after start).
    pub const NOT_PROBED: &str = "not_probed";
}

/// What the start-time search found (R-CAP-4).
#[derive(Debug, Default)]
pub struct Discovery {
    /// The files to probe, one per inode.
    pub libraries: Vec<Library>,
    /// Running processes per library file inode (to count those an attach failure leaves
    /// uncaptured).
    users: StdHashMap<(u64, u64), u64>,
    /// Running processes whose TLS cannot be captured, by (library, reason).
    pub unsupported: BTreeMap<(&'static str, &'static str), u64>,
    /// Distinct files whose symbol tables were read.
    pub classified: usize,
}

impl Discovery {
    fn add(&mut self, path: PathBuf, meta: &std::fs::Metadata, flavor: Flavor) {
        let inode = (meta.dev(), meta.ino());
        if !self.libraries.iter().any(|l| l.inode == inode) {
            self.libraries.push(Library {
                path,
                inode,
                flavor,
            });
        }
    }
}

/// The files to probe: `configured` (each must exist and define a supported library's
/// functions), else the standard directories' [`LIBSSL`] and [`LIBGNUTLS`], and every file a
/// running process maps executable (its executable included, through its `/proc/<pid>/root`)
/// whose symbol table defines OpenSSL's or GnuTLS's functions: OpenSSL linked statically into
/// a server is found by its symbols like the shared library.
pub fn find_libraries(configured: &[PathBuf]) -> anyhow::Result<Discovery> {
    let mut found = Discovery::default();
    if !configured.is_empty() {
        for p in configured {
            let meta = std::fs::metadata(p)
                .ok()
                .filter(|m| m.is_file())
                .with_context(|| {
                    format!("`tls.libraries`: {} is not a readable file", p.display())
                })?;
            match elf::classify(p).with_context(|| format!("`tls.libraries`: {}", p.display()))? {
                Class::Hookable(flavor) => found.add(p.clone(), &meta, flavor),
                _ => bail!(
                    "`tls.libraries`: {} defines neither OpenSSL's (SSL_read, SSL_write, SSL_free) nor GnuTLS's (gnutls_record_recv, gnutls_record_send, gnutls_deinit) functions",
                    p.display()
                ),
            }
        }
        return Ok(found);
    }
    // Classification once per file (inode), however many processes map it.
    let mut classes: StdHashMap<(u64, u64), Class> = StdHashMap::new();
    let mut classify = |path: &Path| -> Option<(std::fs::Metadata, Class)> {
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        let class =
            *classes
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| match elf::classify(path) {
                    Ok(c) => c,
                    Err(e) => {
                        debug!(error = %e, "not classified for TLS");
                        Class::None
                    }
                });
        Some((meta, class))
    };
    for d in LIBRARY_DIRS {
        for name in [LIBSSL, LIBGNUTLS] {
            let path = Path::new(d).join(name);
            if let Some((meta, Class::Hookable(flavor))) = classify(&path) {
                found.add(path, &meta, flavor);
            }
        }
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        scan_processes(procs, &mut found, &mut classify);
    }
    found.classified = classes.len();
    Ok(found)
}

/// Adds the files running processes map executable that define a supported library's
/// functions; counts processes using an unsupported TLS implementation.
fn scan_processes(
    procs: std::fs::ReadDir,
    found: &mut Discovery,
    classify: &mut impl FnMut(&Path) -> Option<(std::fs::Metadata, Class)>,
) {
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
        let mut inodes = HashSet::new();
        let mut not_hookable = HashSet::new();
        for path in mapped_objects(&maps) {
            let full = PathBuf::from(format!("/proc/{pid}/root{path}"));
            match classify(&full) {
                Some((meta, Class::Hookable(flavor))) => {
                    inodes.insert((meta.dev(), meta.ino()));
                    found.add(full, &meta, flavor);
                }
                Some((_, Class::Unsupported(lib))) => {
                    not_hookable.insert(lib);
                }
                _ => {}
            }
        }
        for i in inodes {
            *found.users.entry(i).or_default() += 1;
        }
        for lib in not_hookable {
            *found
                .unsupported
                .entry((lib, unsupported::NOT_HOOKABLE))
                .or_default() += 1;
        }
    }
}

/// Distinct paths of the files a `/proc/<pid>/maps` text maps executable (code: the
/// executable and its shared libraries), without deleted files.
pub fn mapped_objects(maps: &str) -> Vec<&str> {
    let mut v: Vec<&str> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(6, ' ');
            let perms = f.nth(1)?;
            let path = f.nth(3)?.trim_start();
            (perms.contains('x') && path.starts_with('/') && !path.ends_with(" (deleted)"))
                .then_some(path)
        })
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
        bprm_file: o("linux_binprm", "file")?,
        file_inode: o("file", "f_inode")?,
        inode_ino: o("inode", "i_ino")?,
        inode_sb: o("inode", "i_sb")?,
        sb_dev: o("super_block", "s_dev")?,
        task_files: o("task_struct", "files")?,
        files_fdt: o("files_struct", "fdt")?,
        fdtable_fd: o("fdtable", "fd")?,
        fdtable_max_fds: o("fdtable", "max_fds")?,
        file_private_data: o("file", "private_data")?,
        socket_sk: o("socket", "sk")?,
        wakeup_bytes: 0,
        _pad: 0,
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
    /// Library names per attach cookie ([`Flavor`] discriminant).
    pub libraries: Vec<String>,
    /// Processes running at start whose TLS is not captured, by (library, reason)
    /// (`apitap_tls_unsupported_processes_total`).
    pub unsupported: Vec<(&'static str, &'static str, u64)>,
    /// Device and inode of every file probed.
    pub probed: Vec<(u64, u64)>,
    /// The helper that probes files first seen later (`tls.attach_later`).
    pub attacher: Option<super::attacher::Attacher>,
}

/// One probed function: symbol, entry program, return program, and whether the library is
/// probed without it (only older or other builds lack it).
type Probe = (&'static str, &'static str, Option<&'static str>, bool);

/// The OpenSSL functions probed (shared library or linked into an executable).
const OPENSSL_PROBES: &[Probe] = &[
    (
        "SSL_read",
        PROG_SSL_READ_ENTRY,
        Some(PROG_SSL_READ_RETURN),
        false,
    ),
    (
        "SSL_write",
        PROG_SSL_WRITE_ENTRY,
        Some(PROG_SSL_WRITE_RETURN),
        false,
    ),
    ("SSL_free", PROG_SSL_FREE, None, false),
    // OpenSSL 1.1.1 and 3.x; BoringSSL has no `_ex` forms.
    (
        "SSL_read_ex",
        PROG_SSL_READ_EX_ENTRY,
        Some(PROG_SSL_READ_RETURN),
        true,
    ),
    (
        "SSL_write_ex",
        PROG_SSL_WRITE_EX_ENTRY,
        Some(PROG_SSL_WRITE_RETURN),
        true,
    ),
    (
        "SSL_do_handshake",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
        true,
    ),
    (
        "SSL_accept",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
        true,
    ),
    (
        "SSL_connect",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
        true,
    ),
    // The server name (SNI): set by a client (OpenSSL's macro is `SSL_ctrl`; BoringSSL's is
    // a function), read by a server from the ClientHello.
    ("SSL_ctrl", PROG_SSL_CTRL_ENTRY, None, true),
    (
        "SSL_set_tlsext_host_name",
        PROG_SSL_SET_HOST_ENTRY,
        None,
        true,
    ),
    (
        "SSL_get_servername",
        PROG_SSL_GET_SERVERNAME_ENTRY,
        Some(PROG_SSL_GET_SERVERNAME_RETURN),
        true,
    ),
];

/// The GnuTLS functions probed: the session pointer plays OpenSSL's `SSL *` (R-CAP-4).
const GNUTLS_PROBES: &[Probe] = &[
    (
        "gnutls_record_recv",
        PROG_GNUTLS_RECV_ENTRY,
        Some(PROG_SSL_READ_RETURN),
        false,
    ),
    (
        "gnutls_record_send",
        PROG_GNUTLS_SEND_ENTRY,
        Some(PROG_SSL_WRITE_RETURN),
        false,
    ),
    ("gnutls_deinit", PROG_SSL_FREE, None, false),
    (
        "gnutls_handshake",
        PROG_SSL_HANDSHAKE_ENTRY,
        Some(PROG_SSL_HANDSHAKE_RETURN),
        true,
    ),
    (
        "gnutls_server_name_set",
        PROG_GNUTLS_SET_NAME_ENTRY,
        None,
        true,
    ),
];

/// Go's `crypto/tls`: entries only; the returns of Read and Write are probed at their `RET`
/// instructions ([`GO_RETURNS`]).
const GO_PROBES: &[Probe] = &[
    (elf::GO_READ, PROG_GO_READ_ENTRY, None, false),
    (elf::GO_WRITE, PROG_GO_WRITE_ENTRY, None, false),
    (elf::GO_CLOSE, PROG_GO_CLOSE, None, false),
];

/// The Go functions whose `RET` instructions get [`PROG_GO_RETURN`].
const GO_RETURNS: &[&str] = &[elf::GO_READ, elf::GO_WRITE];

fn probes(flavor: Flavor) -> &'static [Probe] {
    match flavor {
        Flavor::OpenSsl | Flavor::BoringSsl => OPENSSL_PROBES,
        Flavor::GnuTls => GNUTLS_PROBES,
        Flavor::Go => GO_PROBES,
    }
}

/// Where each probe of `lib` goes: (symbol, offset in it, program, optional).
fn probe_points(lib: &Library) -> anyhow::Result<Vec<(&'static str, u64, &'static str, bool)>> {
    let mut points = Vec::new();
    for (symbol, entry, ret, optional) in probes(lib.flavor) {
        points.push((*symbol, 0, *entry, *optional));
        if let Some(ret) = ret {
            points.push((*symbol, 0, *ret, *optional));
        }
    }
    if lib.flavor == Flavor::Go {
        for symbol in GO_RETURNS {
            for off in elf::go_returns(&lib.path, symbol)? {
                points.push((*symbol, off, PROG_GO_RETURN, false));
            }
        }
    }
    Ok(points)
}

/// The probes attached to one file: (program, link), to detach them later.
pub(crate) type Links = Vec<(&'static str, UProbeLinkId)>;

/// Attaches `flavor`'s probes to `lib` with attach cookie `cookie`; on a required function's
/// failure detaches what it attached (one direction alone would decode as garbage).
pub(crate) fn attach_library(ebpf: &mut Ebpf, lib: &Library, cookie: u64) -> anyhow::Result<Links> {
    let mut links = Vec::new();
    let mut failure = None;
    // An optional function whose entry failed is skipped with its return probe.
    let mut skipped: Option<&str> = None;
    for (symbol, offset, prog, optional) in probe_points(lib)? {
        if skipped == Some(symbol) {
            continue;
        }
        let p: &mut UProbe = ebpf
            .program_mut(prog)
            .with_context(|| format!("program {prog} missing"))?
            .try_into()?;
        let point = UProbeAttachPoint {
            location: if offset == 0 {
                UProbeAttachLocation::Symbol(symbol)
            } else {
                UProbeAttachLocation::SymbolOffset(symbol, offset)
            },
            cookie: Some(cookie),
        };
        match p.attach(point, &lib.path, UProbeScope::AllProcesses) {
            Ok(link) => links.push((prog, link)),
            Err(e) if optional => {
                debug!(library = %lib.path.display(), symbol, error = %format!("{:#}", anyhow::Error::from(e)), "optional function not probed");
                skipped = Some(symbol);
            }
            Err(e) => {
                failure =
                    Some(anyhow::Error::from(e).context(format!("probing {symbol}+{offset:#x}")));
                break;
            }
        }
    }
    let Some(err) = failure else {
        return Ok(links);
    };
    detach_library(ebpf, lib, links);
    Err(err)
}

/// Detaches the probes `links` of `lib`.
pub(crate) fn detach_library(ebpf: &mut Ebpf, lib: &Library, links: Links) {
    for (prog, link) in links {
        if let Some(p) = ebpf.program_mut(prog)
            && let Ok(p) = <&mut UProbe>::try_from(p)
            && let Err(e) = p.detach(link)
        {
            warn!(library = %lib.path.display(), program = prog, error = %e, "detaching a TLS probe");
        }
    }
}

/// Configures and attaches the TLS programs of `ebpf` per `cfg`; records wake the agent when
/// the unread data crosses `wakeup_bytes` (the capture's setting).
pub fn attach(ebpf: &mut Ebpf, cfg: &TlsSection, wakeup_bytes: u32) -> anyhow::Result<TlsHandles> {
    let btf = Btf::from_kernel()?;
    let mut tls_config = kernel_offsets(&btf)?;
    tls_config.wakeup_bytes = wakeup_bytes.min(cfg.ring_buffer_bytes / 2);
    let scan = std::time::Instant::now();
    let found = find_libraries(&cfg.libraries)?;
    let scan_ms = scan.elapsed().as_millis() as u64;
    let libraries = found.libraries.clone();
    if libraries.is_empty() {
        bail!(
            "`tls.libraries`: no {LIBSSL} or {LIBGNUTLS} in the library directories, and no running process maps a file defining OpenSSL's or GnuTLS's functions (set the paths)"
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
    if cfg.processes.is_empty() && cfg.executables.is_empty() {
        flags |= tls_flags::ALL_PROCESSES;
    }
    if !cfg.executables.is_empty() {
        flags |= tls_flags::BY_EXECUTABLE;
        let mut exes: HashMap<_, [u8; EXE_BYTES], u8> = HashMap::try_from(
            ebpf.map_mut(MAP_TLS_EXE_SELECT)
                .context("map TLS_EXE_SELECT missing")?,
        )?;
        for e in &cfg.executables {
            exes.insert(exe_value(&e.to_string_lossy()).path, 1, 0)
                .with_context(|| format!("`tls.executables`: adding {}", e.display()))?;
        }
    }
    if !cfg.ports.is_empty() {
        flags |= tls_flags::BY_PORT;
        let mut ports: HashMap<_, u16, u8> = HashMap::try_from(
            ebpf.map_mut(MAP_TLS_PORTS)
                .context("map TLS_PORTS missing")?,
        )?;
        for p in &cfg.ports {
            ports
                .insert(p, 1, 0)
                .with_context(|| format!("`tls.ports`: adding {p}"))?;
        }
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
            let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
                continue;
            };
            let all = cfg.processes.is_empty() && cfg.executables.is_empty();
            if all
                || cfg.processes.iter().any(|p| p == comm.trim_end())
                || cfg.executables.contains(&exe)
            {
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
        PROG_GNUTLS_RECV_ENTRY,
        PROG_GNUTLS_SEND_ENTRY,
        PROG_SSL_FREE,
        PROG_SSL_HANDSHAKE_ENTRY,
        PROG_SSL_HANDSHAKE_RETURN,
        PROG_SSL_READ_RETURN,
        PROG_SSL_WRITE_RETURN,
        PROG_TLS_CONTINUE,
        PROG_GO_READ_ENTRY,
        PROG_GO_WRITE_ENTRY,
        PROG_GO_RETURN,
        PROG_GO_CLOSE,
        PROG_SSL_CTRL_ENTRY,
        PROG_SSL_SET_HOST_ENTRY,
        PROG_GNUTLS_SET_NAME_ENTRY,
        PROG_SSL_GET_SERVERNAME_ENTRY,
        PROG_SSL_GET_SERVERNAME_RETURN,
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

    // The attach cookie is the flavor: records name their library whatever the file.
    let names: Vec<String> = Flavor::ALL.iter().map(|f| f.name().to_owned()).collect();
    let mut probed = Vec::new();
    let mut attached = 0usize;
    let mut unsupported = found.unsupported.clone();
    for lib in &libraries {
        match attach_library(ebpf, lib, lib.flavor as u64) {
            Ok(_) => {
                attached += 1;
                probed.push(lib.inode);
                info!(library = %lib.path.display(), inode = lib.inode.1, kind = lib.flavor.name(), "TLS library probed");
            }
            Err(e) => {
                // R-CAP-4: the processes using it are counted as not captured.
                warn!(library = %lib.path.display(), error = %format!("{e:#}"), "TLS library not probed");
                *unsupported
                    .entry((lib.flavor.name(), unsupported::ATTACH_FAILED))
                    .or_default() += found.users.get(&lib.inode).copied().unwrap_or(0);
            }
        }
    }
    if attached == 0 {
        bail!("`tls`: no library could be probed (see the warnings above)");
    }
    for ((lib, reason), n) in &unsupported {
        warn!(
            library = lib,
            reason,
            processes = n,
            "running processes whose TLS is not captured"
        );
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
        classified = found.classified,
        scan_ms,
        processes = ?cfg.processes,
        executables = ?cfg.executables,
        ports = ?cfg.ports,
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
    // The helper is forked last: it inherits the programs as attached at start.
    let attacher = if cfg.attach_later {
        let a = super::attacher::spawn(
            ebpf,
            &exes,
            &probed,
            std::time::Duration::from_secs(cfg.rescan_interval_secs),
        )?;
        info!(
            pid = a.pid(),
            rescan_secs = cfg.rescan_interval_secs,
            "TLS attach helper started (keeps the attach capabilities; the sensor drops them)"
        );
        Some(a)
    } else {
        None
    };
    Ok(TlsHandles {
        ring,
        counters,
        exes,
        libraries: names,
        unsupported: unsupported
            .into_iter()
            .map(|((lib, reason), n)| (lib, reason, n))
            .collect(),
        probed,
        attacher,
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
    fn executable_mappings_are_read_from_maps() {
        let maps = "\
7f0000000000-7f0000001000 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000001000-7f0000002000 r-xp 00001000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3
7f0000003000-7f0000004000 r-xp 00001000 08:01 124 /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f0000005000-7f0000006000 rw-p 00000000 00:00 0 
7f0000006000-7f0000007000 r-xp 00000000 08:01 125 /opt/app/my server
7f0000007000-7f0000008000 r--p 00000000 08:01 126 /opt/app/data.bin
7f0000008000-7f0000009000 r-xp 00000000 08:01 127 /opt/app/old (deleted)
7f0000009000-7f000000a000 r-xp 00000000 00:00 0                          [vdso]
";
        assert_eq!(
            mapped_objects(maps),
            vec![
                "/opt/app/my server",
                "/usr/lib/x86_64-linux-gnu/libcrypto.so.3",
                "/usr/lib/x86_64-linux-gnu/libssl.so.3",
            ]
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
        assert!(c.bprm_file > 0 && c.file_inode > 0 && c.inode_ino > 0 && c.inode_sb > 0);
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
