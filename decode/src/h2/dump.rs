//! The byte-dump format of apitap's HTTP/2 captures (`tests/fixtures/h2/`, written by its
//! `pcap2dump.py`): one connection's two directions in capture order, as records
//! `[side: u8, 0 = client, 1 = server][length: u32 big endian][bytes]`. Read by the tests and
//! benches, and usable to replay a connection into [`super::Connection`].

use crate::session::Side;

/// A malformed dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    /// A record header or body runs past the end.
    #[error("truncated record at offset {0}")]
    Truncated(usize),
    /// A side byte other than 0 or 1.
    #[error("bad side byte at offset {0}")]
    Side(usize),
}

/// The records of a dump, borrowed from it.
pub fn records(b: &[u8]) -> impl Iterator<Item = Result<(Side, &[u8]), DumpError>> {
    let mut i = 0;
    std::iter::from_fn(move || {
        if i >= b.len() {
            return None;
        }
        let at = i;
        let Some(h) = b.get(i..i + 5) else {
            i = b.len();
            return Some(Err(DumpError::Truncated(at)));
        };
        let side = match h[0] {
            0 => Side::Client,
            1 => Side::Server,
            _ => {
                i = b.len();
                return Some(Err(DumpError::Side(at)));
            }
        };
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        let Some(body) = b.get(i + 5..i + 5 + len) else {
            i = b.len();
            return Some(Err(DumpError::Truncated(at)));
        };
        i += 5 + len;
        Some(Ok((side, body)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_records_and_rejects_damage() {
        let d = [0, 0, 0, 0, 2, b'h', b'i', 1, 0, 0, 0, 0];
        let r: Vec<_> = records(&d).collect();
        assert_eq!(
            r,
            vec![Ok((Side::Client, &b"hi"[..])), Ok((Side::Server, &b""[..]))]
        );
        assert_eq!(records(&d[..5]).next(), Some(Err(DumpError::Truncated(0))));
        assert_eq!(
            records(&[2, 0, 0, 0, 0]).next(),
            Some(Err(DumpError::Side(0)))
        );
    }
}
