//! Keyed hashing of values (BLAKE3 keyed mode), so that later stages can correlate and trace a
//! value (R-THR-6) and compare passwords against the common-password list (R-SEN-3) without
//! ever storing it.
use std::fmt;

use crate::label::{Label, ValueHash};

/// Why a secret file (hash key, bearer token) is refused. The messages never contain the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read the secret file")]
    Read(#[source] std::io::Error),
    /// The file holds only whitespace.
    #[error("the secret file is empty")]
    Empty,
    /// The secret is too short to resist guessing.
    #[error(
        "the secret file holds {bytes} bytes of secret; at least {MIN_SECRET_BYTES} are needed (e.g. `head -c 32 /dev/urandom | base64 > FILE`)"
    )]
    TooShort {
        /// Secret bytes found (after trimming whitespace).
        bytes: usize,
    },
    /// Others than the owner may read or write the file.
    #[error("the secret file is accessible to group or others (mode {mode:04o}); `chmod 600` it")]
    Exposed {
        /// Its permission bits.
        mode: u32,
    },
}

/// Shortest site secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;

/// The contents of a secret file, surrounding whitespace trimmed. `Debug` never shows them.
pub struct Secret(Vec<u8>);

impl Secret {
    /// The secret bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// Reads a secret file (a hash key file, a bearer token file of the HTTP endpoints): it must
/// be its owner's alone (no group or other permission bits) and hold at least
/// [`MIN_SECRET_BYTES`] after trimming surrounding whitespace. The one place this rule is
/// written (R-OPS-3).
pub fn read_secret_file(path: &std::path::Path) -> Result<Secret, KeyFileError> {
    use std::os::unix::fs::PermissionsExt as _;
    let file = std::fs::File::open(path).map_err(KeyFileError::Read)?;
    let mode = file
        .metadata()
        .map_err(KeyFileError::Read)?
        .permissions()
        .mode()
        & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { mode });
    }
    let mut secret = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut secret).map_err(KeyFileError::Read)?;
    let trimmed = secret.trim_ascii();
    if trimmed.is_empty() {
        return Err(KeyFileError::Empty);
    }
    if trimmed.len() < MIN_SECRET_BYTES {
        return Err(KeyFileError::TooShort {
            bytes: trimmed.len(),
        });
    }
    Ok(Secret(trimmed.to_vec()))
}

/// The secret key of the keyed hash. Every sensor and analyzer of one site must use the same
/// key for hashes to correlate; a different key per site makes hashes useless elsewhere.
#[derive(Clone)]
pub struct HashKey([u8; 32]);

impl HashKey {
    /// Derives a 256-bit key from operator-supplied secret bytes (BLAKE3 key derivation with a
    /// fixed context string, so any length of secret is fine).
    pub fn from_secret(secret: &[u8]) -> HashKey {
        HashKey(blake3::derive_key("apitap-labels v1 value hash", secret))
    }

    /// Uses 32 raw bytes as the key.
    pub fn from_bytes(key: [u8; 32]) -> HashKey {
        HashKey(key)
    }

    /// The key of a site secret file (`hash_key_file` of sensor and analyzer): its contents,
    /// surrounding whitespace trimmed, through [`HashKey::from_secret`], so every process
    /// reading the same file hashes alike. The file must be its owner's alone and hold at
    /// least [`MIN_SECRET_BYTES`]: whoever has the key can test guesses against the hashes.
    pub fn from_secret_file(path: &std::path::Path) -> Result<HashKey, KeyFileError> {
        let secret = read_secret_file(path)?;
        Ok(HashKey::from_secret(secret.bytes()))
    }

    /// A public fingerprint of the key (8 hex digits): tells which key made a hash, so sensors
    /// and analyzers can confirm they share one and a rotation can be followed. Reveals
    /// nothing about the key.
    pub fn id(&self) -> String {
        let d = blake3::keyed_hash(&self.0, b"apitap hash key id v1");
        d.as_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A random key for this process only (hashes do not correlate with other processes).
    pub fn random() -> std::io::Result<HashKey> {
        use std::io::Read as _;
        let mut bytes = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(HashKey(bytes))
    }

    /// Keyed hash of bytes that are already normalised.
    pub fn hash_normalised(&self, normalised: &[u8]) -> ValueHash {
        let full = blake3::keyed_hash(&self.0, normalised);
        let mut out = [0u8; 16];
        out.copy_from_slice(&full.as_bytes()[..16]);
        ValueHash(out)
    }

    /// Keyed hash of a value as an analyst would type it (e.g. a leaked ID number with spaces):
    /// normalised per label first, exactly as the scanner does.
    pub fn hash_value(&self, label: Label, raw: &[u8]) -> ValueHash {
        let mut buf = Vec::with_capacity(raw.len());
        normalise(label, raw, &mut buf);
        self.hash_normalised(&buf)
    }
}

impl fmt::Debug for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HashKey(<redacted>)")
    }
}

/// Canonical form of a value for hashing: number-like labels keep digits (and a final `X`,
/// upper-cased), e-mail is lower-cased, identifiers are upper-cased without separators,
/// anything else is trimmed.
pub fn normalise(label: Label, raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    match label {
        Label::PrcId
        | Label::Mobile
        | Label::Landline
        | Label::BankCard
        | Label::CreditCard
        | Label::UsSsn => {
            out.extend(
                raw.iter()
                    .filter(|b| b.is_ascii_digit() || **b == b'X' || **b == b'x' || **b == b'*')
                    .map(u8::to_ascii_uppercase),
            );
            // +86 / 0086 country prefix of a mobile number.
            if label == Label::Mobile && out.len() > 11 {
                let cut = out.len() - 11;
                out.drain(..cut);
            }
        }
        Label::Email => out.extend(raw.iter().map(u8::to_ascii_lowercase)),
        Label::Uscc
        | Label::Iban
        | Label::CnPassport
        | Label::HkMacauPermit
        | Label::AwsAccessKey => out.extend(
            raw.iter()
                .filter(|b| b.is_ascii_alphanumeric() || **b == b'*')
                .map(u8::to_ascii_uppercase),
        ),
        _ => out.extend_from_slice(raw.trim_ascii()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site secret file is accepted only when it is private and long enough (issue 22), and
    /// the key id is stable per key and differs between keys.
    #[test]
    fn secret_files_must_be_private_and_long() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("apitap-hashkey-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("key");
        let write = |text: &str, mode: u32| {
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("a site secret of 24 bytes\n", 0o600);
        let k = HashKey::from_secret_file(&p).unwrap();
        assert_eq!(
            k.id(),
            HashKey::from_secret(b"a site secret of 24 bytes").id()
        );
        assert_eq!(k.id().len(), 8);
        assert_ne!(
            k.id(),
            HashKey::from_secret(b"another secret, 24 bytes").id()
        );
        write("a site secret of 24 bytes\n", 0o640);
        let e = HashKey::from_secret_file(&p).unwrap_err();
        assert!(matches!(e, KeyFileError::Exposed { mode: 0o640 }), "{e}");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        write("short\n", 0o600);
        let e = HashKey::from_secret_file(&p).unwrap_err();
        assert!(matches!(e, KeyFileError::TooShort { bytes: 5 }), "{e}");
        assert!(!e.to_string().contains("short"), "never the secret: {e}");
        write(" \n", 0o400);
        assert!(matches!(
            HashKey::from_secret_file(&p),
            Err(KeyFileError::Empty)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn formats_of_one_value_hash_alike() {
        let k = HashKey::from_secret(b"site secret");
        assert_eq!(
            k.hash_value(Label::Mobile, b"+86 138-1234-5678"),
            k.hash_value(Label::Mobile, b"13812345678")
        );
        assert_eq!(
            k.hash_value(Label::PrcId, b"11010519491231002x"),
            k.hash_value(Label::PrcId, b"11010519491231002X")
        );
        let other = HashKey::from_secret(b"other site");
        assert_ne!(
            k.hash_value(Label::Mobile, b"13812345678"),
            other.hash_value(Label::Mobile, b"13812345678")
        );
        assert_eq!(format!("{k:?}"), "HashKey(<redacted>)");
    }
}
