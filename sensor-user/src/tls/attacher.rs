//! Probing TLS library files that appear after start (R-CAP-4, issue 16: "libraries loaded
//! later; attach once per inode, detach when gone"), by privilege separation.
//!
//! The sensor drops every capability once its programs are attached: it parses hostile
//! traffic, and a process that can attach uprobes can read any process's memory. Attaching
//! to a file first seen later (a new container image's `libssl.so.3`, a new build of a Go
//! server, a library `dlopen`ed by a running process) needs those capabilities. So, before the
//! drop, [`spawn`] forks a small **attach helper** that keeps exactly CAP_BPF, CAP_PERFMON,
//! CAP_SYS_ADMIN (uprobe perf events) and CAP_SYS_PTRACE (other processes' `/proc/<pid>/maps`
//! and `/root`), with `no_new_privs`, and dies with the sensor (`PR_SET_PDEATHSIG`). It never
//! sees traffic. Its only input is a process id on a `SOCK_SEQPACKET` socket pair (the exec
//! notices of selected processes); it finds the files itself:
//!
//! - on each notice it reads that process's maps a little later (0.1 s and 1 s: the exec
//!   tracepoint fires before the dynamic loader maps the libraries), and every
//!   `tls.rescan_interval_secs` it reads the maps of every selected process (the kernel's
//!   map of their executables), so a library loaded later is found too;
//! - each file (device, inode) is classified once by its symbols ([`super::elf`], which
//!   parses untrusted files with the memory-safe `object` crate) and, if it implements a
//!   library the probes understand and is not probed, probed with the same programs and
//!   cookies as at start, through `/proc/<pid>/root` (a container's own copy);
//! - a file probed this way that no selected process maps for three rescans is detached.
//!
//! It reports each outcome to the sensor ([`Report`]), which counts and logs them.

use std::collections::{HashMap as StdHashMap, HashSet, VecDeque};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use apitap_common::tls::TlsExe;
use aya::Ebpf;
use aya::maps::{HashMap, MapData};
use tracing::warn;

use super::attach::{self, Library, Links};
use super::elf::{self, Class, Flavor};
use crate::privilege;

/// CAP_SYS_PTRACE: reading other users' `/proc/<pid>/maps` and `/proc/<pid>/root`.
const CAP_SYS_PTRACE: u32 = 19;
/// Files remembered at most (classified or probed); past it, the classifications of files
/// not probed are forgotten (and redone if seen again).
const MAX_KNOWN_FILES: usize = 8192;
/// Scans waiting at most; a notice beyond it is dropped (the next rescan finds the files).
const MAX_PENDING: usize = 4096;
/// Rescans without a selected process mapping a file probed late before it is detached.
const DETACH_AFTER_RESCANS: u32 = 3;

/// What the helper did with a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// Probed.
    Attached = 1,
    /// Implements a library the probes understand, but attaching failed.
    Failed = 2,
    /// No selected process maps it any more: its probes are gone.
    Detached = 3,
}

/// One report of the helper (fixed layout on the socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The file's device (user-space encoding) and inode.
    pub file: (u64, u64),
    /// The process in whose maps it was found.
    pub pid: u32,
    /// Its library.
    pub flavor: Flavor,
    /// What was done.
    pub outcome: Outcome,
}

const REPORT_BYTES: usize = 24;

impl Report {
    fn encode(&self) -> [u8; REPORT_BYTES] {
        let mut b = [0u8; REPORT_BYTES];
        b[..8].copy_from_slice(&self.file.0.to_le_bytes());
        b[8..16].copy_from_slice(&self.file.1.to_le_bytes());
        b[16..20].copy_from_slice(&self.pid.to_le_bytes());
        b[20] = self.flavor as u8;
        b[21] = self.outcome as u8;
        b
    }

    fn decode(b: &[u8]) -> Option<Report> {
        if b.len() != REPORT_BYTES {
            return None;
        }
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let mut pid = [0u8; 4];
        pid.copy_from_slice(&b[16..20]);
        let flavor = *Flavor::ALL.iter().find(|f| **f as u8 == b[20])?;
        let outcome = match b[21] {
            1 => Outcome::Attached,
            2 => Outcome::Failed,
            3 => Outcome::Detached,
            _ => return None,
        };
        Some(Report {
            file: (u64_at(0), u64_at(8)),
            pid: u32::from_le_bytes(pid),
            flavor,
            outcome,
        })
    }
}

/// The sensor's end of the helper.
#[derive(Debug)]
pub struct Attacher {
    sock: OwnedFd,
    child: libc::pid_t,
    /// Notices not sent (the helper's queue was full).
    pub notices_dropped: u64,
}

impl Attacher {
    /// Asks the helper to look at `pid`'s files (a selected process just executed). Never
    /// blocks; a notice the socket cannot take is counted.
    pub fn notify(&mut self, pid: u32) {
        let b = pid.to_le_bytes();
        // SAFETY: sends 4 bytes from a live buffer on our own socket, without blocking.
        let rc = unsafe {
            libc::send(
                self.sock.as_raw_fd(),
                b.as_ptr().cast(),
                b.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if rc != 4 {
            self.notices_dropped += 1;
        }
    }

    /// The helper's reports received since the last call (never blocks).
    pub fn reports(&mut self) -> Vec<Report> {
        let mut out = Vec::new();
        let mut b = [0u8; REPORT_BYTES + 1];
        loop {
            // SAFETY: receives into a live buffer of its length, without blocking.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                break; // EAGAIN, or the helper is gone
            };
            if n == 0 {
                break;
            }
            if let Some(r) = Report::decode(&b[..n]) {
                out.push(r);
            }
        }
        out
    }

    /// The helper's process id.
    pub fn pid(&self) -> u32 {
        self.child as u32
    }
}

impl Drop for Attacher {
    fn drop(&mut self) {
        // SAFETY: signals and reaps our own child.
        unsafe {
            libc::kill(self.child, libc::SIGKILL);
            libc::waitpid(self.child, std::ptr::null_mut(), 0);
        }
    }
}

/// Forks the attach helper (see the module docs). Must be called while the process has one
/// thread and still holds the attach capabilities; `probed` are the files probed at start,
/// `exes` the kernel's map of selected processes.
pub fn spawn(
    ebpf: &mut Ebpf,
    exes: &HashMap<MapData, u32, TlsExe>,
    probed: &[(u64, u64)],
    rescan: Duration,
) -> anyhow::Result<Attacher> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: socketpair writes two descriptors into the array on success.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("socketpair for the attach helper");
    }
    // SAFETY: both descriptors were just created and are owned here alone.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork in a single-threaded process (the caller's contract): the child runs only
    // this function's code below and ends with `_exit`, never returning into the caller.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error()).context("forking the attach helper");
    }
    if child == 0 {
        drop(ours);
        let code = match helper(ebpf, exes, probed, rescan, theirs, parent) {
            Ok(()) => 0,
            Err(e) => {
                warn!(error = %format!("{e:#}"), "TLS attach helper stopped");
                1
            }
        };
        // SAFETY: ends the child without running the parent's destructors (which would
        // detach the programs the sensor still uses).
        unsafe { libc::_exit(code) };
    }
    drop(theirs);
    Ok(Attacher {
        sock: ours,
        child,
        notices_dropped: 0,
    })
}

/// A file the helper knows.
enum Known {
    /// Probed at start (never detached here).
    AtStart,
    /// Probed by the helper: its links, path and rescans since a process last mapped it.
    Late {
        lib: Library,
        links: Links,
        unseen: u32,
    },
    /// Not a library the probes understand, or attaching failed (not retried).
    Skip,
}

/// The helper's main loop; returns when the sensor is gone.
fn helper(
    ebpf: &mut Ebpf,
    exes: &HashMap<MapData, u32, TlsExe>,
    probed: &[(u64, u64)],
    rescan: Duration,
    sock: OwnedFd,
    parent: libc::pid_t,
) -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments; then a check for a parent that died before it.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    // SAFETY: getppid has no preconditions.
    if unsafe { libc::getppid() } != parent {
        return Ok(());
    }
    // What it keeps of those four is what it has (CAP_SYS_PTRACE may not be granted: then
    // only the sensor user's own processes can be looked at).
    let held = privilege::permitted();
    let keep: Vec<u32> = [
        privilege::CAP_BPF,
        privilege::CAP_PERFMON,
        privilege::CAP_SYS_ADMIN,
        CAP_SYS_PTRACE,
    ]
    .into_iter()
    .filter(|c| held.contains(c))
    .collect();
    privilege::drop_all_but(&keep).context("the attach helper's capabilities")?;
    let mut known: StdHashMap<(u64, u64), Known> =
        probed.iter().map(|f| (*f, Known::AtStart)).collect();
    let mut pending: VecDeque<(Instant, u32)> = VecDeque::new();
    let mut next_rescan = Instant::now() + rescan;
    loop {
        let now = Instant::now();
        let wake = pending
            .front()
            .map_or(next_rescan, |(t, _)| (*t).min(next_rescan));
        let timeout = wake.saturating_duration_since(now).as_millis().min(60_000) as libc::c_int;
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid descriptor.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout) };
        if rc > 0 {
            if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 && pfd.revents & libc::POLLIN == 0
            {
                return Ok(()); // the sensor closed its end
            }
            let mut b = [0u8; 8];
            // SAFETY: receives into a live buffer of its length.
            let n = unsafe { libc::recv(sock.as_raw_fd(), b.as_mut_ptr().cast(), b.len(), 0) };
            if n == 0 {
                return Ok(());
            }
            if n == 4 && pending.len() + 2 <= MAX_PENDING {
                let pid = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let t = Instant::now();
                pending.push_back((t + Duration::from_millis(100), pid));
                pending.push_back((t + Duration::from_secs(1), pid));
            }
        }
        let now = Instant::now();
        while pending.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, pid)) = pending.pop_front() {
                scan(ebpf, &mut known, pid, &sock, &mut HashSet::new());
            }
        }
        if now >= next_rescan {
            next_rescan = now + rescan;
            let mut seen = HashSet::new();
            let pids: Vec<u32> = exes.keys().filter_map(Result::ok).collect();
            for pid in pids {
                scan(ebpf, &mut known, pid, &sock, &mut seen);
            }
            detach_unseen(ebpf, &mut known, &seen, &sock);
            if known.len() > MAX_KNOWN_FILES {
                known.retain(|_, k| !matches!(k, Known::Skip));
            }
        }
    }
}

fn report(sock: &OwnedFd, r: &Report) {
    let b = r.encode();
    // SAFETY: sends a live buffer on our own socket; a full socket loses the report, which
    // only costs the sensor a log line and a count.
    unsafe {
        libc::send(
            sock.as_raw_fd(),
            b.as_ptr().cast(),
            b.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Probes the files `pid` maps that implement a supported library and are not probed yet;
/// adds every file it maps to `seen`.
fn scan(
    ebpf: &mut Ebpf,
    known: &mut StdHashMap<(u64, u64), Known>,
    pid: u32,
    sock: &OwnedFd,
    seen: &mut HashSet<(u64, u64)>,
) {
    let Ok(maps) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return; // exited
    };
    for path in attach::mapped_objects(&maps) {
        let full = PathBuf::from(format!("/proc/{pid}/root{path}"));
        let Ok(meta) = std::fs::metadata(&full) else {
            continue;
        };
        let file = (meta.dev(), meta.ino());
        seen.insert(file);
        if let Some(k) = known.get_mut(&file) {
            if let Known::Late { unseen, .. } = k {
                *unseen = 0;
            }
            continue;
        }
        let Ok(Class::Hookable(flavor)) = elf::classify(&full) else {
            known.insert(file, Known::Skip);
            continue;
        };
        let lib = Library {
            path: full,
            inode: file,
            flavor,
        };
        let outcome = match attach::attach_library(ebpf, &lib, flavor as u64) {
            Ok(links) => {
                known.insert(
                    file,
                    Known::Late {
                        lib,
                        links,
                        unseen: 0,
                    },
                );
                Outcome::Attached
            }
            Err(_) => {
                known.insert(file, Known::Skip);
                Outcome::Failed
            }
        };
        report(
            sock,
            &Report {
                file,
                pid,
                flavor,
                outcome,
            },
        );
    }
}

/// Detaches the files probed late that no selected process mapped for
/// [`DETACH_AFTER_RESCANS`] rescans.
fn detach_unseen(
    ebpf: &mut Ebpf,
    known: &mut StdHashMap<(u64, u64), Known>,
    seen: &HashSet<(u64, u64)>,
    sock: &OwnedFd,
) {
    let mut gone = Vec::new();
    for (file, k) in known.iter_mut() {
        if let Known::Late { unseen, .. } = k
            && !seen.contains(file)
        {
            *unseen += 1;
            if *unseen >= DETACH_AFTER_RESCANS {
                gone.push(*file);
            }
        }
    }
    for file in gone {
        if let Some(Known::Late { lib, links, .. }) = known.remove(&file) {
            let flavor = lib.flavor;
            attach::detach_library(ebpf, &lib, links);
            report(
                sock,
                &Report {
                    file,
                    pid: 0,
                    flavor,
                    outcome: Outcome::Detached,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_garbage_is_refused() {
        let r = Report {
            file: (2049, 1 << 40),
            pid: 4321,
            flavor: Flavor::Go,
            outcome: Outcome::Detached,
        };
        assert_eq!(Report::decode(&r.encode()), Some(r));
        let mut b = r.encode();
        b[21] = 9;
        assert_eq!(Report::decode(&b), None);
        b[21] = 1;
        b[20] = 200;
        assert_eq!(Report::decode(&b), None);
        assert_eq!(Report::decode(&b[..10]), None);
    }
}
