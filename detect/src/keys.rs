//! Keyed hashing of actor keys and other attacker-controlled values: SipHash-1-3 with a 128-bit
//! key derived from the site's [`HashKey`] (so two analyzers of one site, and a restarted one,
//! derive the same actor hashes and the same `finding_info.uid`), never reversible without the
//! key (R-OPS-3). Maps are keyed by these 64-bit hashes, so an attacker cannot aim collisions
//! at them (HashDoS) without the key.
use std::hash::Hasher as _;

use apitap_labels::HashKey;
use siphasher::sip::SipHasher13;

/// Domain separation of the values hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Domain {
    Ip = 1,
    Subnet = 2,
    Account = 3,
    Username = 4,
    UserAgent = 5,
    Fingerprint = 6,
    Template = 7,
    Endpoint = 8,
    Id = 9,
    Path = 10,
    Code = 11,
    Campaign = 12,
}

/// The keyed hasher of one engine.
#[derive(Clone)]
pub struct Keyer {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for Keyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyer(<redacted>)")
    }
}

impl Keyer {
    /// Derives the SipHash key from the site's hash key.
    pub fn new(key: &HashKey) -> Keyer {
        let h = key.hash_normalised(b"apitap-detect v1 actor key");
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&h.0[..8]);
        b.copy_from_slice(&h.0[8..]);
        Keyer {
            k0: u64::from_le_bytes(a),
            k1: u64::from_le_bytes(b),
        }
    }

    pub(crate) fn hasher(&self, d: Domain) -> SipHasher13 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(d as u8);
        h
    }

    /// Keyed hash of bytes in a domain.
    pub(crate) fn hash(&self, d: Domain, bytes: &[u8]) -> u64 {
        let mut h = self.hasher(d);
        h.write(bytes);
        h.finish()
    }

    /// The account key of a user name (HTTP Basic, login body: `basic:` and `login_user:`
    /// accounts), as an analyst types it.
    pub fn user_name_key(&self, name: &str) -> u64 {
        self.hash_lower(Domain::Username, name.trim().as_bytes())
    }

    /// The account key of a credential value: a JWT `sub`, a bearer token or API key, a
    /// session token (`jwt_sub:`, `api_key:` and `session:` accounts).
    pub fn credential_key(&self, value: &str) -> u64 {
        self.hash(Domain::Account, value.as_bytes())
    }

    /// The key of an exact User-Agent value.
    pub fn user_agent_key(&self, user_agent: &str) -> u64 {
        self.hash(Domain::UserAgent, user_agent.as_bytes())
    }

    /// Keyed hash of bytes, ASCII case folded.
    pub(crate) fn hash_lower(&self, d: Domain, bytes: &[u8]) -> u64 {
        let mut h = self.hasher(d);
        let mut buf = [0u8; 64];
        for chunk in bytes.chunks(64) {
            let n = chunk.len();
            buf[..n].copy_from_slice(chunk);
            buf[..n].make_ascii_lowercase();
            h.write(&buf[..n]);
        }
        h.finish()
    }

    /// Keyed hash of several parts (each length-prefixed, so parts cannot run together).
    pub(crate) fn hash_parts(&self, d: Domain, parts: &[&[u8]]) -> u64 {
        let mut h = self.hasher(d);
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }

    /// Keyed hash of two 64-bit values.
    pub(crate) fn pair(&self, d: Domain, a: u64, b: u64) -> u64 {
        let mut h = self.hasher(d);
        h.write_u64(a);
        h.write_u64(b);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_domain_separated_and_stable() {
        let k = Keyer::new(&HashKey::from_secret(b"site"));
        let k2 = Keyer::new(&HashKey::from_secret(b"site"));
        let other = Keyer::new(&HashKey::from_secret(b"other"));
        assert_eq!(
            k.hash(Domain::Username, b"alice"),
            k2.hash(Domain::Username, b"alice")
        );
        assert_ne!(
            k.hash(Domain::Username, b"alice"),
            other.hash(Domain::Username, b"alice")
        );
        assert_ne!(
            k.hash(Domain::Username, b"alice"),
            k.hash(Domain::Account, b"alice")
        );
        assert_eq!(
            k.hash_lower(Domain::Username, b"ALICE"),
            k.hash(Domain::Username, b"alice")
        );
        let long = "A".repeat(200);
        assert_eq!(
            k.hash_lower(Domain::Path, long.as_bytes()),
            k.hash(Domain::Path, long.to_ascii_lowercase().as_bytes())
        );
        assert_ne!(
            k.hash_parts(Domain::Endpoint, &[b"ab", b"c"]),
            k.hash_parts(Domain::Endpoint, &[b"a", b"bc"])
        );
        assert_eq!(format!("{k:?}"), "Keyer(<redacted>)");
    }
}
