//! apitap-secret owns how the sensor and the analyzer read credentials from files (issue 22,
//! R-OPS-3): the site hash key, Kafka SASL/TLS secrets, the PostgreSQL password and the
//! admin HTTP token.
//!
//! A secret file is refused unless only its owner may read or write it (no group or other
//! permission bits: `chmod 600`), or it is owned by root and its group may only read it
//! (`0640`/`0440`: a Kubernetes Secret volume with `defaultMode: 0400` under an `fsGroup`,
//! which the kubelet makes `root:<fsGroup>` `0440`) — PostgreSQL's rule for its key file. It
//! is also refused unless it holds at least the required number of bytes after trimming surrounding
//! whitespace (the trailing newline of `echo`). Errors never contain the file's contents, and
//! a [`Secret`] prints as `<redacted>`.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

/// Why a secret file gives no secret. The messages never contain the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file could not be read.
    #[error("cannot read the secret file")]
    Read(#[source] std::io::Error),
    /// The file holds only whitespace.
    #[error("the secret file is empty")]
    Empty,
    /// The secret is too short to resist guessing.
    #[error(
        "the secret file holds {bytes} bytes of secret; at least {min} are needed (e.g. `head -c 32 /dev/urandom | base64 > FILE`)"
    )]
    TooShort {
        /// Secret bytes found (after trimming whitespace).
        bytes: usize,
        /// Bytes required.
        min: usize,
    },
    /// Others than the owner may read or write the file.
    #[error(
        "the secret file is accessible to group or others (mode {mode:04o}); `chmod 600` it (or 0640 owned by root)"
    )]
    Exposed {
        /// Its permission bits.
        mode: u32,
    },
}

/// A secret read from a file. `Debug` never shows it; the bytes are overwritten on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as text, if it is UTF-8 (passwords, tokens).
    pub fn expose_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Compares with `other` (a presented bearer token) in time that depends on neither where
    /// they differ nor, beyond the secret's own length, on the presented length.
    pub fn matches(&self, other: &[u8]) -> bool {
        let mut diff = u8::from(self.0.len() != other.len());
        for (i, s) in self.0.iter().enumerate() {
            diff |= s ^ other.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in &mut self.0 {
            // SAFETY: `b` is a valid, aligned, exclusive reference to a byte of our buffer; a
            // volatile write keeps the compiler from eliding the wipe of a dead buffer.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

/// Owner-only, or root-owned with read access for the group alone.
fn private(mode: u32, uid: u32) -> bool {
    mode & 0o077 == 0 || (uid == 0 && mode & 0o037 == 0)
}

/// Reads the secret in `path`: owner-only permissions, surrounding whitespace trimmed, at
/// least `min_bytes` left.
pub fn read_secret_file(path: &Path, min_bytes: usize) -> Result<Secret, SecretFileError> {
    let file = std::fs::File::open(path).map_err(SecretFileError::Read)?;
    let meta = file.metadata().map_err(SecretFileError::Read)?;
    let mode = meta.permissions().mode() & 0o7777;
    if !private(mode, meta.uid()) {
        return Err(SecretFileError::Exposed { mode });
    }
    let mut raw = Secret(Vec::new());
    (&file)
        .read_to_end(&mut raw.0)
        .map_err(SecretFileError::Read)?;
    let trimmed = raw.0.trim_ascii();
    if trimmed.is_empty() {
        return Err(SecretFileError::Empty);
    }
    if trimmed.len() < min_bytes {
        return Err(SecretFileError::TooShort {
            bytes: trimmed.len(),
            min: min_bytes,
        });
    }
    Ok(Secret(trimmed.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_read_is_allowed_only_for_root_owned_files() {
        assert!(private(0o600, 1000));
        assert!(private(0o400, 0));
        assert!(private(0o640, 0));
        assert!(private(0o440, 0));
        assert!(!private(0o640, 1000));
        assert!(!private(0o660, 0));
        assert!(!private(0o604, 0));
        assert!(!private(0o644, 0));
    }

    #[test]
    fn only_private_long_enough_files_give_a_secret() {
        let dir = std::env::temp_dir().join(format!("apitap-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        let write = |text: &str, mode: u32| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("correct horse battery\n", 0o600);
        let s = read_secret_file(&p, 8).unwrap();
        assert_eq!(s.expose(), b"correct horse battery");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(s.matches(b"correct horse battery"));
        assert!(!s.matches(b"correct horse batterz"));
        assert!(!s.matches(b"correct"));
        write("correct horse battery\n", 0o644);
        let e = read_secret_file(&p, 8).unwrap_err();
        assert!(matches!(e, SecretFileError::Exposed { mode: 0o644 }), "{e}");
        assert!(!e.to_string().contains("horse"), "{e}");
        write("hunter2\n", 0o400);
        let e = read_secret_file(&p, 8).unwrap_err();
        assert!(
            matches!(e, SecretFileError::TooShort { bytes: 7, min: 8 }),
            "{e}"
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        write(" \n", 0o600);
        assert!(matches!(
            read_secret_file(&p, 1),
            Err(SecretFileError::Empty)
        ));
        assert!(matches!(
            read_secret_file(&dir.join("missing"), 1),
            Err(SecretFileError::Read(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
