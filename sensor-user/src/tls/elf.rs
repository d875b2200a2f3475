//! Which TLS library an ELF file implements, from the symbols it defines (`.symtab` or
//! `.dynsym`), so that OpenSSL linked into an executable is found like `libssl.so.3`
//! (R-CAP-4), and processes using a TLS library the probes cannot hook are counted.
//!
//! Go executables are recognised by `crypto/tls.(*Conn).Read`/`Write`/`Close` in `.symtab`
//! and their build version in `.go.buildinfo`; the probes need the register ABI (Go 1.17+,
//! and the inline build-info format of Go 1.18+ to tell) on x86-64. [`go_returns`] finds the
//! `RET` instructions of a function by decoding its machine code (iced-x86), because Go
//! returns are probed where they happen, not through a uretprobe.
//!
//! The file is mapped read-only (page cache, no copy) and only its section headers and symbol
//! tables are touched: a large statically linked server costs its symbol table, once per
//! inode (measured, debug build: the 21 to 43 distinct files of a host's 85 processes, a
//! 69 MB executable with 130 000 symbols among them, in 120 to 200 ms; through a read cache
//! instead of a mapping, 780 ms).

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};
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
    /// Go's `crypto/tls` (`(*Conn).Read`, `(*Conn).Write`, `(*Conn).Close`), x86-64, Go 1.18+.
    Go = 2,
    /// BoringSSL: OpenSSL's API (probed alike, without the `_ex` forms it lacks), told apart
    /// by a function only it defines ([`BORINGSSL_MARK`]).
    BoringSsl = 3,
}

impl Flavor {
    /// Every flavor, in discriminant order.
    pub const ALL: [Flavor; 4] = [
        Flavor::OpenSsl,
        Flavor::GnuTls,
        Flavor::Go,
        Flavor::BoringSsl,
    ];

    /// The event's `tls_library`.
    pub const fn name(self) -> &'static str {
        match self {
            Flavor::OpenSsl => "openssl",
            Flavor::GnuTls => "gnutls",
            Flavor::Go => "go",
            Flavor::BoringSsl => "boringssl",
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
    /// A function to probe is missing or its code cannot be read.
    #[error("{path}: {symbol}: {reason}")]
    Function {
        /// The file.
        path: String,
        /// The function.
        symbol: String,
        /// Why.
        reason: String,
    },
}

/// Go's `crypto/tls` functions the probes need, all defined in `.symtab`.
pub const GO_READ: &str = "crypto/tls.(*Conn).Read";
/// See [`GO_READ`].
pub const GO_WRITE: &str = "crypto/tls.(*Conn).Write";
/// See [`GO_READ`].
pub const GO_CLOSE: &str = "crypto/tls.(*Conn).Close";
const GO: &[&str] = &[GO_READ, GO_WRITE, GO_CLOSE];

/// The Go release that built `obj`, from `.go.buildinfo` (Go 1.18+ stores it inline: the
/// 14-byte magic, pointer size, flags with bit 2, then at offset 32 a varint-prefixed
/// string); `None` for older Go or no build info.
fn go_version(obj: &object::File<'_>) -> Option<(u32, u32)> {
    let data = obj.section_by_name(".go.buildinfo")?.data().ok()?;
    if data.len() < 33 || &data[..14] != b"\xff Go buildinf:" || data[15] & 2 == 0 {
        return None;
    }
    let (len, n) = varint(&data[32..])?;
    let text = data.get(32 + n..32 + n + usize::try_from(len).ok()?)?;
    let text = std::str::from_utf8(text).ok()?.strip_prefix("go")?;
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// An unsigned LEB128 varint at the start of `b`: (value, bytes used).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, byte) in b.iter().take(10).enumerate() {
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Offsets from the start of `symbol` of each `RET` instruction in its code (x86-64 `C3`/`C2`,
/// found by decoding instruction by instruction, so a `C3` byte inside another instruction is
/// never taken for one).
pub fn go_returns(path: &Path, symbol: &str) -> Result<Vec<u64>, ElfError> {
    let shown = || path.display().to_string();
    let fail = |reason: &str| ElfError::Function {
        path: shown(),
        symbol: symbol.to_owned(),
        reason: reason.to_owned(),
    };
    let map = map_file(path)?;
    let obj = object::File::parse(map.bytes()).map_err(|source| ElfError::Parse {
        path: shown(),
        source,
    })?;
    if obj.architecture() != object::Architecture::X86_64 {
        return Err(fail("not an x86-64 executable"));
    }
    let sym = obj
        .symbols()
        .find(|s| s.name() == Ok(symbol) && !s.is_undefined())
        .ok_or_else(|| fail("not defined"))?;
    let section = sym
        .section_index()
        .and_then(|i| obj.section_by_index(i).ok())
        .ok_or_else(|| fail("not in a section"))?;
    let data = section.data().map_err(|_| fail("code not readable"))?;
    let start = sym
        .address()
        .checked_sub(section.address())
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| fail("outside its section"))?;
    let len = usize::try_from(sym.size()).map_err(|_| fail("size out of range"))?;
    let code = data
        .get(start..start.saturating_add(len))
        .filter(|c| !c.is_empty())
        .ok_or_else(|| fail("code out of its section"))?;
    let mut decoder =
        iced_x86::Decoder::with_ip(64, code, sym.address(), iced_x86::DecoderOptions::NONE);
    let mut rets = Vec::new();
    let mut insn = iced_x86::Instruction::default();
    let mut decoded = 0usize;
    while decoder.can_decode() {
        decoded += 1;
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return Err(fail("undecodable instruction"));
        }
        if matches!(insn.mnemonic(), iced_x86::Mnemonic::Ret) {
            rets.push(insn.ip() - sym.address());
        }
    }
    if rets.is_empty() {
        return Err(fail(&format!(
            "no RET instruction in {decoded} instructions ({} bytes at {:#x}, section {} at {:#x}, {} bytes)",
            code.len(),
            sym.address(),
            section.name().unwrap_or("?"),
            section.address(),
            data.len()
        )));
    }
    Ok(rets)
}

/// Defined by BoringSSL's `libssl` (GREASE, RFC 8701), not by OpenSSL's.
const BORINGSSL_MARK: &str = "SSL_CTX_set_grease_enabled";

/// Symbols whose definition identifies each hookable library (all must be defined).
const OPENSSL: &[&str] = &["SSL_read", "SSL_write", "SSL_free"];
const GNUTLS: &[&str] = &["gnutls_record_recv", "gnutls_record_send", "gnutls_deinit"];
/// One defined symbol each of TLS implementations the probes cannot hook.
const UNSUPPORTED: &[(&str, &str)] = &[
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
    let map = map_file(path)?;
    let obj = object::File::parse(map.bytes()).map_err(|source| ElfError::Parse {
        path: shown(),
        source,
    })?;
    let mut openssl = [false; 3];
    let mut gnutls = [false; 3];
    let mut go = [false; 3];
    let mut boringssl = false;
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
        } else if let Some(i) = GO.iter().position(|s| *s == name) {
            go[i] = true;
        } else if name == BORINGSSL_MARK {
            boringssl = true;
        } else if let Some((_, lib)) = UNSUPPORTED.iter().find(|(s, _)| *s == name) {
            unsupported = Some(*lib);
        }
    }
    // A Go executable linking `crypto/tls`: hookable with the register ABI on x86-64; older
    // ones are counted. (A stripped Go executable has no symbols to tell.)
    let go_hookable = go.iter().all(|d| *d)
        && obj.architecture() == object::Architecture::X86_64
        && go_version(&obj).is_some_and(|v| v >= (1, 18));
    Ok(if gnutls.iter().all(|d| *d) {
        Class::Hookable(Flavor::GnuTls)
    } else if openssl.iter().all(|d| *d) && !wraps_gnutls {
        Class::Hookable(if boringssl {
            Flavor::BoringSsl
        } else {
            Flavor::OpenSsl
        })
    } else if go_hookable {
        Class::Hookable(Flavor::Go)
    } else if go[0] {
        Class::Unsupported("go")
    } else if let Some(lib) = unsupported {
        Class::Unsupported(lib)
    } else {
        Class::None
    })
}

/// `path` mapped read-only.
fn map_file(path: &Path) -> Result<Mapping, ElfError> {
    let shown = || path.display().to_string();
    let file = File::open(path).map_err(|source| ElfError::Open {
        path: shown(),
        source,
    })?;
    Mapping::new(&file).map_err(|source| ElfError::Map {
        path: shown(),
        source,
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
            ("android/libssl.so.0", Class::Hookable(Flavor::BoringSsl)),
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

    /// Go executables built here (Debian's Go 1.19): one linking `crypto/tls` is hookable,
    /// and each `RET` found in its Read/Write is a `C3` byte at an instruction boundary;
    /// one without TLS is nothing.
    #[test]
    fn go_executables_are_classified_and_their_returns_found() {
        let has_go = std::process::Command::new("go")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_go {
            return crate::attribution::skip("Go is not installed (run `cargo xtask setup`)");
        }
        let dir = std::env::temp_dir().join(format!("apitap-elf-go-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("plain")).unwrap();
        std::fs::write(dir.join("plain/go.mod"), "module plain\ngo 1.18\n").unwrap();
        std::fs::write(
            dir.join("plain/main.go"),
            "package main\nimport \"fmt\"\nfunc main() { fmt.Println(1) }\n",
        )
        .unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls/go_https");
        let build = |src: &Path, out: &Path| {
            let ok = std::process::Command::new("go")
                .args(["build", "-o"])
                .arg(out)
                .arg(".")
                .current_dir(src)
                .env("GOCACHE", dir.join("cache"))
                .env("GOPATH", dir.join("gopath"))
                .env("GOPROXY", "off")
                .env("HOME", &dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "go build {}", src.display());
        };
        let tls = dir.join("gohttps");
        build(&fixture, &tls);
        let plain = dir.join("plain-bin");
        build(&dir.join("plain"), &plain);
        assert_eq!(classify(&tls).unwrap(), Class::Hookable(Flavor::Go));
        assert_eq!(classify(&plain).unwrap(), Class::None);
        let file = std::fs::read(&tls).unwrap();
        let obj = object::File::parse(&*file).unwrap();
        assert!(go_version(&obj).is_some_and(|v| v >= (1, 18)));
        for f in [GO_READ, GO_WRITE] {
            let sym = obj.symbols().find(|s| s.name() == Ok(f)).unwrap();
            let text = obj.section_by_name(".text").unwrap();
            let code = text.data().unwrap();
            let rets = go_returns(&tls, f).unwrap();
            assert!(!rets.is_empty(), "{f}");
            for off in rets {
                assert!(off < sym.size(), "{f}+{off:#x}");
                let at = (sym.address() + off - text.address()) as usize;
                assert_eq!(code[at], 0xc3, "{f}+{off:#x}");
            }
        }
        assert!(matches!(
            go_returns(&plain, GO_READ),
            Err(ElfError::Function { .. })
        ));
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
