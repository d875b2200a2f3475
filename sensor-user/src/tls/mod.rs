//! TLS plaintext capture (R-CAP-4): the agent's side of the uprobes on OpenSSL 3
//! (`libssl.so.3`, or linked into an executable) and GnuTLS 3 (`libgnutls.so.30`).
//!
//! - [`attach`] finds the library files (configured, or the standard directories and every
//!   copy a running process maps, containers included), takes the kernel field offsets the
//!   programs read from the kernel's BTF ([`btf`]; raw tracepoints, so no tracefs), selects
//!   processes by command name in the kernel, and attaches one set of
//!   uprobes per file (inode): a process that starts later and maps the same file is traced
//!   without attaching anything, so the sensor drops its capabilities right after start like
//!   the cleartext capture does.
//! - [`decoder`] turns the TLS ring's records into per-connection, per-direction ordered
//!   plaintext for the same [`apitap_decode::Session`] as cleartext capture, so HTTPS yields
//!   the same events, with `tls: true`, the library and the process.
//!
//! - [`elf`] tells from a file's symbol table which library it implements, so OpenSSL
//!   linked into an executable is found like `libssl.so.3`, and GnuTLS (`libgnutls.so.30`)
//!   is probed with the same programs; [`watch`] counts processes started later whose TLS is
//!   not captured (a file not probed at start, or a TLS implementation the probes cannot
//!   hook).
//!
//! Supported: OpenSSL 3.x (shared, or linked into an executable that keeps its symbol
//! table), GnuTLS 3.x (`libgnutls.so.30`). Not yet: BoringSSL, Go `crypto/tls`, NSS,
//! wolfSSL, mbedTLS (counted), stripped executables, files first run after the sensor
//! started (counted); see `docs/tls.md`.

pub mod attach;
pub mod attacher;
pub mod btf;
pub mod decoder;
pub mod elf;
pub mod watch;

use apitap_common::tls::{TlsCounter, TlsExe};
use aya::maps::{HashMap, MapData, PerCpuArray};

pub use attach::{TlsHandles, attach};
pub use decoder::{TlsDecoder, TlsOwner, TlsStats};

/// Executables from the kernel's exec map, else `/proc/<pid>/exe` (readable only for the
/// sensor's own uid once capabilities are dropped).
pub struct KernelExes<'a>(pub &'a HashMap<MapData, u32, TlsExe>);

impl decoder::ExeSource for KernelExes<'_> {
    fn executable(&mut self, pid: u32) -> Option<String> {
        if let Ok(v) = self.0.get(&pid, 0)
            && let Some(p) = attach::exe_path(&v)
        {
            return Some(p);
        }
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }
}

/// Kernel TLS counters summed over CPUs, indexed like [`TlsCounter::ALL`].
pub fn counters(
    map: &PerCpuArray<MapData, u64>,
) -> anyhow::Result<[u64; TlsCounter::COUNT as usize]> {
    let mut out = [0u64; TlsCounter::COUNT as usize];
    for c in TlsCounter::ALL {
        out[c as usize] = map.get(&(c as u32), 0)?.iter().sum();
    }
    Ok(out)
}
