//! Processes started after the sensor whose TLS cannot be captured (R-CAP-4).
//!
//! The probes are on files (inodes) chosen at start; the sensor then drops the capabilities
//! attaching needs (see `docs/tls.md`). A process that later runs a file nobody ran at start
//! (a new build of a server with OpenSSL linked in) is therefore not traced. The exec
//! tracepoint reports every exec of a selected process with the executed file's device and
//! inode and the path given to `execve`; this watch classifies that file and counts each
//! such process whose executable implements a library the probes understand but that was
//! not probed (`not_probed`), or a TLS implementation they cannot hook (`not_hookable`), so
//! that the blind spot is visible in `apitap_tls_unsupported_processes_total`.
//!
//! Without capabilities the sensor cannot read other processes' `/proc/<pid>/exe` or maps:
//! the file is opened by its path in the sensor's own mount namespace and used only if it is
//! the very inode the kernel executed (a container's path usually is not: counted as
//! `unreadable`). Shared libraries a later process maps are not checked.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use tracing::{debug, warn};

use super::attach::unsupported;
use super::elf::{self, Class};

/// Files classified at most (then the cache starts over).
const MAX_CLASSIFIED: usize = 4096;

/// What the watch did (`apitap_tls_exec_checks_total{result}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchStats {
    /// Execs whose executable was checked (or was a probed file).
    pub checked: u64,
    /// Execs whose file the sensor could not open as the executed inode (a relative path, a
    /// path in another mount namespace, a file already replaced).
    pub unreadable: u64,
}

/// Counts processes started after the sensor whose TLS is not captured.
#[derive(Debug)]
pub struct ExecWatch {
    probed: HashSet<(u64, u64)>,
    classes: HashMap<(u64, u64), Class>,
    /// Files already reported in the log (one warning per file).
    warned: HashSet<(u64, u64)>,
    counts: BTreeMap<(&'static str, &'static str), u64>,
    stats: WatchStats,
    /// The attach helper probes hookable files: they are not counted at exec.
    late_attach: bool,
}

/// The user-space `st_dev` of a kernel `dev_t` (major << 20 | minor).
pub fn user_dev(kernel_dev: u32) -> u64 {
    libc::makedev(kernel_dev >> 20, kernel_dev & 0xf_ffff)
}

impl ExecWatch {
    /// A watch over the files probed at start (`probed`: device and inode), continuing the
    /// start-time `counts` by (library, reason).
    pub fn new(
        probed: impl IntoIterator<Item = (u64, u64)>,
        counts: impl IntoIterator<Item = (&'static str, &'static str, u64)>,
    ) -> Self {
        ExecWatch {
            probed: probed.into_iter().collect(),
            classes: HashMap::new(),
            warned: HashSet::new(),
            counts: counts
                .into_iter()
                .map(|(lib, reason, n)| ((lib, reason), n))
                .collect(),
            stats: WatchStats::default(),
            late_attach: false,
        }
    }

    /// With the attach helper (`tls.attach_later`): a hookable file is not counted when a
    /// process runs it; the helper's outcome is ([`ExecWatch::late_outcome`]).
    pub fn with_late_attach(mut self) -> Self {
        self.late_attach = true;
        self
    }

    /// The attach helper's report about `file` (a `flavor` library).
    pub fn late_outcome(
        &mut self,
        file: (u64, u64),
        flavor: super::elf::Flavor,
        outcome: super::attacher::Outcome,
    ) {
        use super::attacher::Outcome;
        match outcome {
            Outcome::Attached => {
                self.probed.insert(file);
            }
            Outcome::Failed => {
                *self
                    .counts
                    .entry((flavor.name(), unsupported::ATTACH_FAILED))
                    .or_default() += 1;
            }
            Outcome::Detached => {
                self.probed.remove(&file);
            }
        }
    }

    /// Processes whose TLS is not captured, by (library, reason): at start and since.
    pub fn counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.counts
            .iter()
            .map(|((lib, reason), n)| (*lib, *reason, *n))
            .collect()
    }

    /// What the watch did.
    pub fn stats(&self) -> WatchStats {
        self.stats
    }

    /// A selected process `pid` executed `path`, the file `(dev, ino)` (`dev` in user-space
    /// encoding, see [`user_dev`]).
    pub fn exec(&mut self, pid: u32, path: &[u8], dev: u64, ino: u64) {
        let inode = (dev, ino);
        if self.probed.contains(&inode) {
            self.stats.checked += 1;
            return;
        }
        let shown = String::from_utf8_lossy(path).into_owned();
        let class = match self.classes.get(&inode) {
            Some(c) => *c,
            None => {
                let file = Path::new(&shown);
                let same = file.is_absolute()
                    && std::fs::metadata(file).is_ok_and(|m| (m.dev(), m.ino()) == inode);
                if !same {
                    self.stats.unreadable += 1;
                    debug!(pid, path = %shown, "exec: the executed file is not reachable by its path");
                    return;
                }
                let c = elf::classify(file).unwrap_or(Class::None);
                if self.classes.len() >= MAX_CLASSIFIED {
                    self.classes.clear();
                }
                self.classes.insert(inode, c);
                c
            }
        };
        self.stats.checked += 1;
        let key = match class {
            // The helper looks at this process's files and reports.
            Class::Hookable(_) if self.late_attach => return,
            Class::Hookable(flavor) => (flavor.name(), unsupported::NOT_PROBED),
            Class::Unsupported(lib) => (lib, unsupported::NOT_HOOKABLE),
            Class::None => return,
        };
        *self.counts.entry(key).or_default() += 1;
        if self.warned.insert(inode) {
            warn!(
                pid,
                file = %shown,
                library = key.0,
                reason = key.1,
                "a process started after the sensor uses TLS that is not captured (probes attach at start only: restart the sensor, or list the file in tls.libraries)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_devices_map_to_user_space_devices() {
        // 8:1 (sda1) and 259:65536 (an nvme partition with a large minor).
        assert_eq!(user_dev(8 << 20 | 1), libc::makedev(8, 1));
        assert_eq!(user_dev(259 << 20 | 65536), libc::makedev(259, 65536));
    }

    /// Files made for the test: an executable with OpenSSL's functions counts once per exec
    /// unless probed, one with wolfSSL's as not hookable, any other file not at all; a path
    /// that is not the executed inode is unreadable.
    #[test]
    fn execs_are_classified_and_counted() {
        let dir = std::env::temp_dir().join(format!("apitap-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let build = |name: &str, src: &str| crate::tls::elf::tests::build(&dir, name, src, &[]);
        let Some(openssl) = build(
            "srv",
            "int SSL_read(void){return 0;} int SSL_write(void){return 0;} int SSL_free(void){return 0;}\nint main(void){return SSL_read()+SSL_write()+SSL_free();}\n",
        ) else {
            let _ = std::fs::remove_dir_all(&dir);
            return crate::attribution::skip("gcc is not installed (run `cargo xtask setup`)");
        };
        let wolf = build(
            "wolf",
            "int wolfSSL_read(void){return 0;}\nint main(void){return wolfSSL_read();}\n",
        )
        .unwrap();
        let plain = build("plain", "int main(void){return 0;}\n").unwrap();
        let id = |p: &Path| {
            let m = std::fs::metadata(p).unwrap();
            (m.dev(), m.ino())
        };
        let bytes = |p: &Path| p.to_string_lossy().into_owned().into_bytes();
        let start = ("go", unsupported::NOT_HOOKABLE, 2);

        let mut w = ExecWatch::new([], [start]);
        for p in [&openssl, &openssl, &wolf, &plain] {
            let (dev, ino) = id(p);
            w.exec(1, &bytes(p), dev, ino);
        }
        // A relative path, and a path that is another file than the executed one.
        let (dev, ino) = id(&openssl);
        w.exec(1, b"srv", dev, ino + 1);
        w.exec(1, &bytes(&plain), dev, ino + 1);
        assert_eq!(
            w.stats(),
            WatchStats {
                checked: 4,
                unreadable: 2
            }
        );
        assert_eq!(
            w.counts(),
            vec![
                ("go", unsupported::NOT_HOOKABLE, 2),
                ("openssl", unsupported::NOT_PROBED, 2),
                ("wolfssl", unsupported::NOT_HOOKABLE, 1),
            ]
        );

        // Probed at start: traced, not counted.
        let mut w = ExecWatch::new([id(&openssl)], []);
        let (dev, ino) = id(&openssl);
        w.exec(1, &bytes(&openssl), dev, ino);
        assert_eq!(w.counts(), vec![]);
        assert_eq!(w.stats().checked, 1);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
