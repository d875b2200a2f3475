//! Keyed hashing of values (BLAKE3 keyed mode), so that later stages can correlate and trace a
//! value (R-THR-6) and compare passwords against the common-password list (R-SEN-3) without
//! ever storing it.
use std::fmt;

use crate::label::{Label, ValueHash};

/// Why a secret file gives no key. The messages never contain the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read the key file")]
    Read(#[source] std::io::Error),
    /// The file holds only whitespace.
    #[error("the key file is empty")]
    Empty,
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
    /// reading the same file hashes alike.
    pub fn from_secret_file(path: &std::path::Path) -> Result<HashKey, KeyFileError> {
        let secret = std::fs::read(path).map_err(KeyFileError::Read)?;
        let trimmed = secret.trim_ascii();
        if trimmed.is_empty() {
            return Err(KeyFileError::Empty);
        }
        Ok(HashKey::from_secret(trimmed))
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
