//! Which TLS library an ELF file implements, from the symbols it defines (`.symtab` or
//! `.dynsym`), so that OpenSSL linked into an executable is found like `libssl.so.3`
//! (R-CAP-4), and processes using a TLS library the probes cannot hook are counted.
//!
//! The file is mapped read-only (page cache, no copy) and only its section headers and symbol
//! tables are touched: a large statically linked server costs its symbol table, once per
//! inode (measured, debug build: the 21 to 43 distinct files of a host's 85 processes, a
//! 69 MB executable with 130 000 symbols among them, in 120 to 200 ms; through a read cache
//! instead of a mapping, 780 ms).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use object::{Object as _, ObjectSymbol as _};
use thiserror::Error;

/// A TLS library the probes understand; its discriminant is the probes' attach cookie, which
/// the records carry as [`apitap_common::tls::TlsHeader::library`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Flavor {
    /// OpenSSL's API (`SSL_read`, `SSL_write`, `SSL_free`; shared or linked in).
    OpenSsl = 0,
    /// GnuTLS (`gnutls_record_recv`, `gnutls_record_send`, `gnutls_deinit`).
    GnuTls = 1,
}

impl Flavor {
    /// Every flavor, in discriminant order.
    pub const ALL: [Flavor; 2] = [Flavor::OpenSsl, Flavor::GnuTls];

    /// The event's `tls_library`.
    pub const fn name(self) -> &'static str {
        match self {
            Flavor::OpenSsl => "openssl",
            Flavor::GnuTls => "gnutls",
        }
    }
}

/// What an ELF file is, for TLS capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Defines the functions of a library the probes understand.
    Hookable(Flavor),
    /// Implements TLS the probes cannot hook; the name labels
    /// `apitap_tls_unsupported_processes_total`.
    Unsupported(&'static str),
    /// No TLS implementation (or its symbols are stripped).
    None,
}

/// Why a file could not be classified.
#[derive(Debug, Error)]
pub enum ElfError {
    /// The file could not be opened.
    #[error("opening {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file could not be mapped.
    #[error("mapping {path}: {source}")]
    Map {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Not an object file this sensor reads.
    #[error("{path} is not a readable ELF file: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The cause.
        source: object::read::Error,
    },
}

/// Symbols whose definition identifies each hookable library (all must be defined).
const OPENSSL: &[&str] = &["SSL_read", "SSL_write", "SSL_free"];
const GNUTLS: &[&str] = &["gnutls_record_recv", "gnutls_record_send", "gnutls_deinit"];
/// One defined symbol each of TLS implementations the probes cannot hook.
const UNSUPPORTED: &[(&str, &str)] = &[
    ("crypto/tls.(*Conn).Read", "go"),
    ("SSL_ImportFD", "nss"),
    ("wolfSSL_read", "wolfssl"),
    ("mbedtls_ssl_read", "mbedtls"),
];
/// GnuTLS's OpenSSL compatibility layer (`libgnutls-openssl.so`) defines `SSL_read` on top of
/// `gnutls_record_recv`: it is captured through GnuTLS, never twice.
const WRAPS_GNUTLS: &str = "gnutls_record_recv";

/// Classifies the ELF file at `path` by the symbols it defines.
pub fn classify(path: &Path) -> Result<Class, ElfError> {
    let shown = || path.display().to_string();
    let file = File::open(path).map_err(|source| ElfError::Open {
        path: shown(),
        source,
    })?;
    let map = Mapping::new(&file).map_err(|source| ElfError::Map {
        path: shown(),
        source,
    })?;
    let obj = object::File::parse(map.bytes()).map_err(|source| ElfError::Parse {
        path: shown(),
        source,
    })?;
    let mut openssl = [false; 3];
    let mut gnutls = [false; 3];
    let mut wraps_gnutls = false;
    let mut unsupported = None;
    for sym in obj.dynamic_symbols().chain(obj.symbols()) {
        let Ok(name) = sym.name() else {
            continue;
        };
        if sym.is_undefined() {
            wraps_gnutls |= name == WRAPS_GNUTLS;
            continue;
        }
        if let Some(i) = OPENSSL.iter().position(|s| *s == name) {
            openssl[i] = true;
        } else if let Some(i) = GNUTLS.iter().position(|s| *s == name) {
            gnutls[i] = true;
        } else if let Some((_, lib)) = UNSUPPORTED.iter().find(|(s, _)| *s == name) {
            unsupported = Some(*lib);
        }
    }
    Ok(if gnutls.iter().all(|d| *d) {
        Class::Hookable(Flavor::GnuTls)
    } else if openssl.iter().all(|d| *d) && !wraps_gnutls {
        Class::Hookable(Flavor::OpenSsl)
    } else if let Some(lib) = unsupported {
        Class::Unsupported(lib)
    } else {
        Class::None
    })
}

/// A read-only private mapping of a whole file, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &File) -> std::io::Result<Mapping> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| std::io::Error::other("file too large"))?;
        if len == 0 {
            return Ok(Mapping {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        // SAFETY: a fresh read-only private mapping of an open file; no other memory is
        // touched. (A file truncated by someone else while mapped would fault on access, as
        // in any reader that maps: the files read here are executables and libraries, which
        // are replaced, not truncated, when updated.)
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` maps `len` readable bytes for the lifetime of `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping made in `new`, once.
            unsafe { libc::munmap(self.ptr, self.len) };
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The system's own libraries, when installed (`cargo xtask setup` installs both).
    #[test]
    fn system_libraries_are_classified_by_their_symbols() {
        for (lib, want) in [
            ("libssl.so.3", Class::Hookable(Flavor::OpenSsl)),
            ("libgnutls.so.30", Class::Hookable(Flavor::GnuTls)),
            ("libgnutls-openssl.so.27", Class::None),
            ("libcrypto.so.3", Class::None),
            ("libc.so.6", Class::None),
        ] {
            let Some(path) = ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu"]
                .iter()
                .map(|d| Path::new(d).join(lib))
                .find(|p| p.exists())
            else {
                crate::attribution::skip(&format!("{lib} is not installed"));
                continue;
            };
            assert_eq!(classify(&path).unwrap(), want, "{lib}");
        }
    }

    /// Builds `src` with gcc (`args`: `-shared -fPIC` or nothing) into `dir/name`.
    pub(crate) fn build(
        dir: &Path,
        name: &str,
        src: &str,
        args: &[&str],
    ) -> Option<std::path::PathBuf> {
        let c = dir.join(format!("{name}.c"));
        std::fs::write(&c, src).unwrap();
        let out = dir.join(name);
        let ok = std::process::Command::new("gcc")
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(&c)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(out)
    }

    /// Objects made for the test: what defines (not merely imports) each symbol set decides,
    /// in `.dynsym` (shared objects) or only `.symtab` (executables), and a stripped
    /// executable cannot be recognised.
    #[test]
    fn objects_are_classified_by_the_symbols_they_define() {
        let dir = std::env::temp_dir().join(format!("apitap-elf-gcc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = |names: &[&str]| -> String {
            names
                .iter()
                .map(|n| format!("int {n}(void) {{ return 0; }}\n"))
                .collect()
        };
        let shared = ["-shared", "-fPIC"];
        let cases: Vec<(&str, String, &[&str], Class)> = vec![
            (
                "openssl.so",
                f(OPENSSL),
                &shared,
                Class::Hookable(Flavor::OpenSsl),
            ),
            (
                "gnutls.so",
                f(GNUTLS),
                &shared,
                Class::Hookable(Flavor::GnuTls),
            ),
            (
                "wolfssl.so",
                f(&["wolfSSL_read"]),
                &shared,
                Class::Unsupported("wolfssl"),
            ),
            (
                "partial.so",
                f(&["SSL_read", "SSL_write"]),
                &shared,
                Class::None,
            ),
            (
                "compat.so",
                format!(
                    "extern int gnutls_record_recv(void);\nint SSL_read(void) {{ return gnutls_record_recv(); }}\n{}",
                    f(&["SSL_write", "SSL_free"])
                ),
                &shared,
                Class::None,
            ),
            (
                "static-server",
                format!(
                    "{}int main(void) {{ return SSL_read() + SSL_write() + SSL_free(); }}\n",
                    f(OPENSSL)
                ),
                &[],
                Class::Hookable(Flavor::OpenSsl),
            ),
        ];
        for (name, src, args, want) in cases {
            let Some(obj) = build(&dir, name, &src, args) else {
                let _ = std::fs::remove_dir_all(&dir);
                return crate::attribution::skip("gcc is not installed (run `cargo xtask setup`)");
            };
            assert_eq!(classify(&obj).unwrap(), want, "{name}");
        }
        // Without its symbol table an executable's linked-in OpenSSL is not recognised
        // (strip comes with gcc's binutils).
        let exe = dir.join("static-server");
        let stripped = std::process::Command::new("strip").arg(&exe).status();
        assert!(stripped.is_ok_and(|s| s.success()), "strip");
        assert_eq!(classify(&exe).unwrap(), Class::None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn non_elf_files_are_errors() {
        let dir = std::env::temp_dir().join(format!("apitap-elf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("not-elf");
        std::fs::write(&f, b"#!/bin/sh\necho hi\n").unwrap();
        assert!(matches!(classify(&f), Err(ElfError::Parse { .. })));
        assert!(matches!(
            classify(&dir.join("missing")),
            Err(ElfError::Open { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
