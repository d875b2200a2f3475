//! Link-, network- and transport-layer parsing of captured frames (pcap replay, R-CAP-6).
//!
//! The live path parses headers in the kernel (`sensor-ebpf`); offline input arrives as whole
//! frames and is parsed here into a [`Segment`]. Supported: Ethernet with up to two VLAN tags
//! (IEEE 802.1Q/802.1ad), Linux cooked capture v1 and v2, raw IP, BSD loopback; IPv4
//! (RFC 791) and IPv6 with extension headers (RFC 8200 §4); TCP (RFC 9293 §3.1). Nothing here
//! panics on hostile input: every length is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::tcp::Segment;

/// Link-layer header type of a capture (pcap LINKTYPE_* values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// LINKTYPE_ETHERNET (1).
    Ethernet,
    /// LINKTYPE_LINUX_SLL (113).
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276).
    LinuxSll2,
    /// LINKTYPE_RAW (101), LINKTYPE_IPV4 (228), LINKTYPE_IPV6 (229): the frame is an IP packet.
    RawIp,
    /// LINKTYPE_NULL (0) / LINKTYPE_LOOP (108): 4-byte address family, then IP.
    Loopback,
}

impl Link {
    /// Maps a pcap link type number; `None` for unsupported ones.
    pub fn from_linktype(n: i32) -> Option<Link> {
        match n {
            1 => Some(Link::Ethernet),
            113 => Some(Link::LinuxSll),
            276 => Some(Link::LinuxSll2),
            101 | 12 | 14 | 228 | 229 => Some(Link::RawIp),
            0 | 108 => Some(Link::Loopback),
            _ => None,
        }
    }
}

/// Why a frame could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// A header is cut short or inconsistent.
    #[error("malformed or truncated header")]
    Malformed,
    /// An IP fragment (reassembly of IP fragments is not supported).
    #[error("IP fragment")]
    Fragment,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;

fn be16(b: &[u8], at: usize) -> Result<u16, PacketError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or(PacketError::Malformed)
}

fn be32(b: &[u8], at: usize) -> Result<u32, PacketError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(PacketError::Malformed)
}

fn byte(b: &[u8], at: usize) -> Result<u8, PacketError> {
    b.get(at).copied().ok_or(PacketError::Malformed)
}

/// Parses one captured frame. `Ok(None)`: a valid frame that is not TCP (ignored).
/// `wire_len` of the segment is the payload length the IP header declares; when the capture
/// cut the frame short, the rest is a gap for the reassembler.
pub fn parse_frame(
    link: Link,
    frame: &[u8],
    ts_us: u64,
) -> Result<Option<Segment<'_>>, PacketError> {
    let (ethertype, l3) = match link {
        Link::Ethernet => {
            let mut off = 12;
            let mut t = be16(frame, off)?;
            for _ in 0..2 {
                if t == ETH_P_8021Q || t == ETH_P_8021AD {
                    off += 4;
                    t = be16(frame, off)?;
                }
            }
            (t, off + 2)
        }
        Link::LinuxSll => (be16(frame, 14)?, 16),
        Link::LinuxSll2 => (be16(frame, 0)?, 20),
        Link::RawIp => match byte(frame, 0)? >> 4 {
            4 => (ETH_P_IP, 0),
            6 => (ETH_P_IPV6, 0),
            _ => return Err(PacketError::Malformed),
        },
        Link::Loopback => match byte(frame, 4)? >> 4 {
            4 => (ETH_P_IP, 4),
            6 => (ETH_P_IPV6, 4),
            _ => return Ok(None),
        },
    };
    let ip = frame.get(l3..).ok_or(PacketError::Malformed)?;
    let (src_ip, dst_ip, l4, ip_end) = match ethertype {
        ETH_P_IP => {
            let vihl = byte(ip, 0)?;
            let ihl = usize::from(vihl & 0x0f) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(PacketError::Malformed);
            }
            if byte(ip, 9)? != IPPROTO_TCP {
                return Ok(None);
            }
            if be16(ip, 6)? & 0x3fff != 0 {
                return Err(PacketError::Fragment);
            }
            let tot = usize::from(be16(ip, 2)?);
            let s: [u8; 4] = ip
                .get(12..16)
                .and_then(|s| s.try_into().ok())
                .ok_or(PacketError::Malformed)?;
            let d: [u8; 4] = ip
                .get(16..20)
                .and_then(|s| s.try_into().ok())
                .ok_or(PacketError::Malformed)?;
            // tot_len 0 appears on TSO super-packets captured before segmentation.
            let end = if tot == 0 { usize::MAX } else { tot };
            if end < ihl {
                return Err(PacketError::Malformed);
            }
            (
                IpAddr::V4(Ipv4Addr::from(s)),
                IpAddr::V4(Ipv4Addr::from(d)),
                ihl,
                end,
            )
        }
        ETH_P_IPV6 => {
            let plen = usize::from(be16(ip, 4)?);
            let s: [u8; 16] = ip
                .get(8..24)
                .and_then(|s| s.try_into().ok())
                .ok_or(PacketError::Malformed)?;
            let d: [u8; 16] = ip
                .get(24..40)
                .and_then(|s| s.try_into().ok())
                .ok_or(PacketError::Malformed)?;
            let mut next = byte(ip, 6)?;
            let mut off = 40;
            // RFC 8200 §4: walk extension headers (bounded).
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 => {
                        let len = usize::from(byte(ip, off + 1)?);
                        next = byte(ip, off)?;
                        off += (len + 1) * 8;
                    }
                    51 => {
                        let len = usize::from(byte(ip, off + 1)?);
                        next = byte(ip, off)?;
                        off += (len + 2) * 4;
                    }
                    44 => {
                        return if byte(ip, off)? == IPPROTO_TCP {
                            Err(PacketError::Fragment)
                        } else {
                            Ok(None)
                        };
                    }
                    _ => break,
                }
            }
            if next != IPPROTO_TCP {
                return Ok(None);
            }
            let end = if plen == 0 { usize::MAX } else { 40 + plen };
            if end < off {
                return Err(PacketError::Malformed);
            }
            (
                IpAddr::V6(Ipv6Addr::from(s)),
                IpAddr::V6(Ipv6Addr::from(d)),
                off,
                end,
            )
        }
        _ => return Ok(None),
    };
    let tcp = ip.get(l4..).ok_or(PacketError::Malformed)?;
    let src_port = be16(tcp, 0)?;
    let dst_port = be16(tcp, 2)?;
    let seq = be32(tcp, 4)?;
    let ack = be32(tcp, 8)?;
    let doff = usize::from(byte(tcp, 12)? >> 4) * 4;
    let flags = byte(tcp, 13)?;
    if doff < 20 {
        return Err(PacketError::Malformed);
    }
    let payload_start = l4 + doff;
    if payload_start > ip_end || payload_start > ip.len() {
        // Options run past the datagram, or the capture cut the TCP header.
        return Err(PacketError::Malformed);
    }
    let declared = if ip_end == usize::MAX {
        ip.len().saturating_sub(payload_start)
    } else {
        ip_end - payload_start
    };
    let captured_end = ip.len().min(payload_start + declared);
    let payload = ip.get(payload_start..captured_end).unwrap_or_default();
    let wire_len = u32::try_from(declared).map_err(|_| PacketError::Malformed)?;
    Ok(Some(Segment {
        ts_us,
        src_ip,
        src_port,
        dst_ip,
        dst_port,
        seq,
        ack,
        flags,
        payload,
        wire_len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(payload: &[u8], flags: u8) -> Vec<u8> {
        let mut t = vec![0u8; 20];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&80u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[8..12].copy_from_slice(&2000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = flags;
        t.extend_from_slice(payload);
        t
    }

    fn ipv4(l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 0, 0, 2]);
        ip[16..20].copy_from_slice(&[10, 0, 0, 1]);
        ip.extend_from_slice(l4);
        ip
    }

    fn ether(ethertype: u16, vlan: bool, l3: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        if vlan {
            f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
            f.extend_from_slice(&[0, 7]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    #[test]
    fn ethernet_vlan_ipv4_tcp() {
        let frame = ether(ETH_P_IP, true, &ipv4(&tcp(b"GET / HTTP/1.1\r\n\r\n", 0x18)));
        let s = parse_frame(Link::Ethernet, &frame, 7).unwrap().unwrap();
        assert_eq!(
            (s.src_port, s.dst_port, s.seq, s.ack, s.flags),
            (40000, 80, 1000, 2000, 0x18)
        );
        assert_eq!(s.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.wire_len as usize, s.payload.len());
        assert_eq!(s.src_ip.to_string(), "10.0.0.2");
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let mut frame = ether(ETH_P_IP, false, &ipv4(&tcp(b"", 0x10)));
        frame.extend_from_slice(&[0u8; 6]);
        let s = parse_frame(Link::Ethernet, &frame, 0).unwrap().unwrap();
        assert!(s.payload.is_empty() && s.wire_len == 0);
    }

    #[test]
    fn snapped_frame_reports_declared_length() {
        let mut frame = ether(ETH_P_IP, false, &ipv4(&tcp(&[b'x'; 100], 0x10)));
        frame.truncate(frame.len() - 60);
        let s = parse_frame(Link::Ethernet, &frame, 0).unwrap().unwrap();
        assert_eq!((s.payload.len(), s.wire_len), (40, 100));
    }

    #[test]
    fn ipv6_with_hop_by_hop_and_sll2() {
        let l4 = tcp(b"hi", 0x18);
        let mut ip = vec![0u8; 40];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((8 + l4.len()) as u16).to_be_bytes());
        ip[6] = 0; // hop-by-hop
        ip[8..24].copy_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        ip[24..40].copy_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        ip.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        ip.extend_from_slice(&l4);
        let mut frame = vec![0u8; 20];
        frame[0..2].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        frame.extend_from_slice(&ip);
        let s = parse_frame(Link::LinuxSll2, &frame, 0).unwrap().unwrap();
        assert_eq!(s.payload, b"hi");
        assert_eq!(s.dst_ip.to_string(), "fd00::1");
    }

    #[test]
    fn non_tcp_fragments_and_garbage() {
        let mut udp = ipv4(&[0u8; 8]);
        udp[9] = 17;
        assert!(matches!(parse_frame(Link::RawIp, &udp, 0), Ok(None)));
        let mut frag = ipv4(&tcp(b"x", 0));
        frag[6] = 0x20; // MF
        assert_eq!(
            parse_frame(Link::RawIp, &frag, 0).unwrap_err(),
            PacketError::Fragment
        );
        for n in 0..64 {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37 + n) as u8).collect();
            for link in [
                Link::Ethernet,
                Link::LinuxSll,
                Link::LinuxSll2,
                Link::RawIp,
                Link::Loopback,
            ] {
                let _ = parse_frame(link, &junk, 0);
            }
        }
        let mut bad = ipv4(&tcp(b"", 0));
        bad[32] = 2 << 4; // data offset 8 bytes
        assert_eq!(
            parse_frame(Link::RawIp, &bad, 0).unwrap_err(),
            PacketError::Malformed
        );
    }
}
