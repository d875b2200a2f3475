//! Decoding of ring-buffer records (`apitap-common::PacketHeader` + payload chunk) into
//! [`apitap_decode::Segment`]s.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use apitap_common::{FAMILY_IPV4, FAMILY_IPV6, HEADER_BYTES, PacketHeader, tcp_flags};
use apitap_decode::Segment;

/// Why a record could not be used (counted as `apitap_sensor_bad_records_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Shorter than a header, or the chunk length disagrees with the record length.
    #[error("record length does not match its header")]
    Length,
    /// Unknown address family.
    #[error("unknown address family")]
    Family,
}

/// Parses one record. `offset_ns` converts the kernel's monotonic clock to Unix time;
/// `snap_len` is the configured snap length (to know which chunk is a packet's last).
pub fn parse(bytes: &[u8], offset_ns: i128, snap_len: u32) -> Result<Segment<'_>, RecordError> {
    if bytes.len() < HEADER_BYTES {
        return Err(RecordError::Length);
    }
    // SAFETY: length checked above; PacketHeader is plain old data, read unaligned.
    let h: PacketHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let payload = &bytes[HEADER_BYTES..];
    if h.chunk_len as usize != payload.len() || h.chunk_offset > h.payload_len {
        return Err(RecordError::Length);
    }
    let (src_ip, dst_ip) = match h.family {
        FAMILY_IPV4 => {
            let s: [u8; 4] = [h.saddr[0], h.saddr[1], h.saddr[2], h.saddr[3]];
            let d: [u8; 4] = [h.daddr[0], h.daddr[1], h.daddr[2], h.daddr[3]];
            (IpAddr::V4(Ipv4Addr::from(s)), IpAddr::V4(Ipv4Addr::from(d)))
        }
        FAMILY_IPV6 => (
            IpAddr::V6(Ipv6Addr::from(h.saddr)),
            IpAddr::V6(Ipv6Addr::from(h.daddr)),
        ),
        _ => return Err(RecordError::Family),
    };
    let captured = h.payload_len.min(snap_len);
    let first = h.chunk_offset == 0;
    let last = h.chunk_offset + h.chunk_len >= captured;
    let mut flags = h.tcp_flags;
    let mut seq = h.seq.wrapping_add(h.chunk_offset);
    if !first {
        // SYN and RST belong to the first chunk; data after a SYN starts one later.
        if flags & tcp_flags::SYN != 0 {
            seq = seq.wrapping_add(1);
        }
        flags &= !(tcp_flags::SYN | tcp_flags::RST);
    }
    if !last {
        flags &= !tcp_flags::FIN;
    }
    let wire_len = if last {
        h.payload_len - h.chunk_offset
    } else {
        h.chunk_len
    };
    let ts_ns = (h.ts_ns as i128 + offset_ns).max(0);
    Ok(Segment {
        ts_us: (ts_ns / 1000) as u64,
        src_ip,
        src_port: h.sport,
        dst_ip,
        dst_port: h.dport,
        seq,
        ack: h.ack,
        flags,
        payload,
        wire_len,
    })
}

/// Serialises a header and payload as the kernel would (for tests and benchmarks).
pub fn encode(h: &PacketHeader, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_BYTES + payload.len());
    // SAFETY: PacketHeader is repr(C) plain old data with no padding bytes.
    let raw = unsafe {
        std::slice::from_raw_parts((h as *const PacketHeader).cast::<u8>(), HEADER_BYTES)
    };
    v.extend_from_slice(raw);
    v.extend_from_slice(payload);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(chunk_offset: u32, chunk_len: u32, payload_len: u32, flags: u8) -> PacketHeader {
        let mut saddr = [0u8; 16];
        saddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        PacketHeader {
            ts_ns: 5_000,
            saddr,
            daddr,
            seq: 100,
            ack: 7,
            ifindex: 3,
            payload_len,
            chunk_offset,
            chunk_len,
            sport: 40000,
            dport: 80,
            family: FAMILY_IPV4,
            direction: 0,
            tcp_flags: flags,
            _pad: 0,
        }
    }

    #[test]
    fn single_chunk_round_trip() {
        let rec = encode(&header(0, 3, 3, tcp_flags::ACK | tcp_flags::FIN), b"abc");
        let s = parse(&rec, 1_000_000, 65535).unwrap();
        assert_eq!(s.src_ip.to_string(), "10.0.0.2");
        assert_eq!(s.dst_port, 80);
        assert_eq!(s.payload, b"abc");
        assert_eq!(s.wire_len, 3);
        assert_eq!(s.ts_us, 1005);
        assert_eq!(s.flags & tcp_flags::FIN, tcp_flags::FIN);
    }

    #[test]
    fn chunks_split_flags_and_sequence() {
        let a = encode(&header(0, 2, 5, tcp_flags::ACK | tcp_flags::FIN), b"ab");
        let b = encode(&header(2, 3, 5, tcp_flags::ACK | tcp_flags::FIN), b"cde");
        let sa = parse(&a, 0, 65535).unwrap();
        let sb = parse(&b, 0, 65535).unwrap();
        assert_eq!(
            (sa.seq, sa.wire_len, sa.flags & tcp_flags::FIN),
            (100, 2, 0)
        );
        assert_eq!(
            (sb.seq, sb.wire_len, sb.flags & tcp_flags::FIN),
            (102, 3, tcp_flags::FIN)
        );
    }

    #[test]
    fn truncated_packet_reports_wire_length_on_last_chunk() {
        let rec = encode(&header(0, 4, 10, tcp_flags::ACK), b"abcd");
        let s = parse(&rec, 0, 4).unwrap();
        assert_eq!((s.payload.len(), s.wire_len), (4, 10));
    }

    #[test]
    fn malformed_records_are_rejected() {
        assert_eq!(parse(b"short", 0, 1).unwrap_err(), RecordError::Length);
        let mut rec = encode(&header(0, 3, 3, 0), b"abc");
        rec.pop();
        assert_eq!(parse(&rec, 0, 65535).unwrap_err(), RecordError::Length);
        let mut h = header(0, 0, 0, 0);
        h.family = 9;
        assert_eq!(
            parse(&encode(&h, b""), 0, 65535).unwrap_err(),
            RecordError::Family
        );
    }
}
