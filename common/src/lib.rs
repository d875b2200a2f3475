//! Kernel↔user wire types for apitap.
//!
//! This crate owns every byte layout shared between the eBPF programs (`sensor-ebpf`) and the agent
//! (`sensor-user`): the per-packet record header written into the ring buffer, the sensor
//! configuration the agent writes into a map, and the indices of the per-CPU counters. All types
//! are `#[repr(C)]`, `Copy`, with explicit padding and no `bool`, and each has a compile-time size
//! assertion so that a layout change on one side cannot go unnoticed on the other.
//!
//! With the `user` feature the types implement [`aya::Pod`] so the agent can read and write maps.
#![no_std]

/// Name of the ring buffer map carrying [`PacketHeader`] records (R-CAP-1).
pub const MAP_EVENTS: &str = "EVENTS";
/// Name of the per-CPU counter array indexed by [`Counter`] (R-CAP-7).
pub const MAP_COUNTERS: &str = "COUNTERS";
/// Name of the single-entry array holding the [`SensorConfig`].
pub const MAP_CONFIG: &str = "CONFIG";
/// Name of the hash map of TCP ports to capture (key: port in host order, value: 1).
pub const MAP_PORTS: &str = "PORTS";
/// Name of the per-CPU scratch buffer used to assemble one record before output.
pub const MAP_SCRATCH: &str = "SCRATCH";

/// Name of the LRU hash map of [`FlowKey`] → [`FlowOwner`]: which cgroup owns the local socket
/// of each captured connection, written by the cgroup egress program (R-CAP-5).
pub const MAP_FLOW_OWNERS: &str = "FLOW_OWNERS";
/// Entries in [`MAP_FLOW_OWNERS`]; the least recently used flow is evicted beyond it.
pub const MAX_FLOW_OWNERS: u32 = 65_536;

/// Program names as they appear in the object file.
pub const PROG_XDP_INGRESS: &str = "apitap_xdp_ingress";
/// TC (clsact / tcx) egress classifier.
pub const PROG_TC_EGRESS: &str = "apitap_tc_egress";
/// cgroup_skb egress program attached to the cgroup v2 root: records each local socket's
/// cgroup into [`MAP_FLOW_OWNERS`].
pub const PROG_CGROUP_EGRESS: &str = "apitap_cgroup_egress";

/// Bytes of payload carried by one ring-buffer record at most. A packet whose captured payload
/// is longer is split into several records with increasing [`PacketHeader::chunk_offset`].
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Largest snap length the kernel side honours: a GSO/TSO super-packet is at most 64 KiB.
pub const MAX_SNAP_BYTES: u32 = 65_535;
/// Chunks per packet at most (`MAX_SNAP_BYTES / CHUNK_BYTES`, rounded up).
pub const MAX_CHUNKS: u32 = MAX_SNAP_BYTES.div_ceil(CHUNK_BYTES as u32);
/// Entries in the [`MAP_PORTS`] map.
pub const MAX_PORTS: u32 = 1024;

/// Where the packet was seen, relative to the host the sensor runs on.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by this host (XDP).
    Ingress = 0,
    /// Sent by this host (TC egress).
    Egress = 1,
}

/// Address family of a [`PacketHeader`].
pub const FAMILY_IPV4: u8 = 4;
/// Address family of a [`PacketHeader`].
pub const FAMILY_IPV6: u8 = 6;

/// TCP flag bits as they appear in byte 13 of the TCP header (RFC 9293 §3.1).
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronize sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
}

/// Header of one ring-buffer record; `chunk_len` payload bytes follow it directly.
///
/// Addresses are in network byte order as they were on the wire; IPv4 addresses occupy the first
/// four bytes of the 16-byte fields and the rest is zero. Ports, sequence numbers and lengths are
/// in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// `bpf_ktime_get_ns()` when the program ran (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// Source address.
    pub saddr: [u8; 16],
    /// Destination address.
    pub daddr: [u8; 16],
    /// TCP sequence number of the first payload byte of the packet (not of this chunk).
    pub seq: u32,
    /// TCP acknowledgment number.
    pub ack: u32,
    /// Interface index the packet was seen on.
    pub ifindex: u32,
    /// TCP payload length of the whole packet.
    pub payload_len: u32,
    /// Offset of this record's bytes within the packet's TCP payload.
    pub chunk_offset: u32,
    /// Payload bytes following this header in the record.
    pub chunk_len: u32,
    /// TCP source port.
    pub sport: u16,
    /// TCP destination port.
    pub dport: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// [`Direction`] as `u8`.
    pub direction: u8,
    /// TCP flags byte ([`tcp_flags`]).
    pub tcp_flags: u8,
    /// Explicit padding; always zero.
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<PacketHeader>() == 72);
const _: () = assert!(core::mem::align_of::<PacketHeader>() == 8);

/// Size of [`PacketHeader`] in bytes.
pub const HEADER_BYTES: usize = core::mem::size_of::<PacketHeader>();

/// Key of [`MAP_FLOW_OWNERS`]: one direction of a TCP connection as a local socket sends it
/// (`saddr`/`sport` are the local side). Addresses as in [`PacketHeader`]; ports in host order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Local (source) address, network byte order; IPv4 in the first four bytes.
    pub saddr: [u8; 16],
    /// Remote (destination) address.
    pub daddr: [u8; 16],
    /// Local (source) TCP port.
    pub sport: u16,
    /// Remote (destination) TCP port.
    pub dport: u16,
    /// [`FAMILY_IPV4`] or [`FAMILY_IPV6`].
    pub family: u8,
    /// Explicit padding; always zero.
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);

/// Value of [`MAP_FLOW_OWNERS`]: who owns the local socket of a flow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowOwner {
    /// cgroup v2 id of the socket (`bpf_skb_cgroup_id`): the inode number of the cgroup's
    /// directory in the cgroup v2 hierarchy.
    pub cgroup_id: u64,
    /// Owner uid of the socket (`bpf_get_socket_uid`), as seen from the initial user namespace.
    pub uid: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<FlowOwner>() == 16);

/// The per-CPU scratch area in which the kernel side assembles a record before `bpf_ringbuf_output`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Scratch {
    /// Record header.
    pub header: PacketHeader,
    /// Payload chunk.
    pub data: [u8; CHUNK_BYTES],
}
const _: () = assert!(core::mem::size_of::<Scratch>() == HEADER_BYTES + CHUNK_BYTES);

/// Capture configuration written by the agent into [`MAP_CONFIG`] before attaching.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SensorConfig {
    /// Payload bytes to copy per packet at most (≤ [`MAX_SNAP_BYTES`]); longer payloads are
    /// truncated and counted in [`Counter::Truncated`].
    pub snap_len: u32,
    /// [`config_flags`] bits.
    pub flags: u32,
    /// Wake-up batching: records are written without waking the agent, except the one that
    /// makes the ring's unread data cross this many bytes, which forces a wake-up; the agent
    /// also drains the ring on a short timer. A wake-up costs the packet's CPU an inter-processor
    /// interrupt and the agent a context switch, so waking once per record at tens of thousands
    /// of records per second costs more than copying them. 0 keeps the kernel's default (wake
    /// the agent whenever it has caught up), the lowest latency.
    pub wakeup_bytes: u32,
    /// Explicit padding; always zero.
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<SensorConfig>() == 16);

/// Bits of [`SensorConfig::flags`].
pub mod config_flags {
    /// Capture every TCP port; [`crate::MAP_PORTS`] is ignored.
    pub const ALL_PORTS: u32 = 1;
    /// The agent has written the configuration; until then the programs capture nothing.
    pub const ENABLED: u32 = 2;
}

/// Indices of the per-CPU counters in [`MAP_COUNTERS`]. Every cause for which a packet that
/// should have been captured was not, or was only partly, has its own counter (R-CAP-7).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Packets the programs ran on.
    Packets = 0,
    /// TCP packets on a configured port with payload or SYN/FIN/RST.
    Matched = 1,
    /// Records written to the ring buffer.
    Records = 2,
    /// Payload bytes written to the ring buffer.
    PayloadBytes = 3,
    /// Drop: the ring buffer was full.
    RingFull = 4,
    /// Drop: payload longer than the snap length (the tail is missing).
    Truncated = 5,
    /// Drop: headers were not in the linear part of the packet.
    NonLinear = 6,
    /// Drop: malformed IPv4/IPv6/TCP header.
    ParseError = 7,
    /// Drop: copying payload bytes out of the packet failed.
    LoadFailed = 8,
    /// Drop: IPv6 packet with more extension headers than the programs walk (4) before TCP.
    Ipv6ExtHeaders = 9,
    /// Drop: IPv4 fragment (the agent cannot reassemble IP fragments).
    IpFragment = 10,
    /// Flows whose owning cgroup the cgroup egress program recorded (new or changed owner).
    OwnerFlows = 11,
    /// Flow owners the cgroup egress program could not record (map update failed); those
    /// flows' events carry no workload (R-CAP-5).
    OwnerUpdateFailed = 12,
}

impl Counter {
    /// Number of counters.
    pub const COUNT: u32 = 13;
    /// All counters in index order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::Packets,
        Counter::Matched,
        Counter::Records,
        Counter::PayloadBytes,
        Counter::RingFull,
        Counter::Truncated,
        Counter::NonLinear,
        Counter::ParseError,
        Counter::LoadFailed,
        Counter::Ipv6ExtHeaders,
        Counter::IpFragment,
        Counter::OwnerFlows,
        Counter::OwnerUpdateFailed,
    ];

    /// Stable snake_case name used in metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Packets => "packets",
            Counter::Matched => "matched",
            Counter::Records => "records",
            Counter::PayloadBytes => "payload_bytes",
            Counter::RingFull => "ring_full",
            Counter::Truncated => "truncated",
            Counter::NonLinear => "non_linear",
            Counter::ParseError => "parse_error",
            Counter::LoadFailed => "load_failed",
            Counter::Ipv6ExtHeaders => "ipv6_ext_headers",
            Counter::IpFragment => "ip_fragment",
            Counter::OwnerFlows => "owner_flows",
            Counter::OwnerUpdateFailed => "owner_update_failed",
        }
    }

    /// True for counters that count lost or partly lost packets.
    pub const fn is_drop(self) -> bool {
        !matches!(
            self,
            Counter::Packets
                | Counter::Matched
                | Counter::Records
                | Counter::PayloadBytes
                | Counter::OwnerFlows
                | Counter::OwnerUpdateFailed
        )
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all types are repr(C), Copy, contain only integers and byte arrays, and have no
    // implicit padding (the size assertions above pin the layout).
    unsafe impl aya::Pod for super::PacketHeader {}
    unsafe impl aya::Pod for super::SensorConfig {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowOwner {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_dense_and_named_uniquely() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
            for other in &Counter::ALL[i + 1..] {
                assert_ne!(c.name(), other.name());
            }
        }
    }

    #[test]
    fn max_chunks_covers_max_snap() {
        assert!(MAX_CHUNKS as usize * CHUNK_BYTES >= MAX_SNAP_BYTES as usize);
        assert!((MAX_CHUNKS as usize - 1) * CHUNK_BYTES < MAX_SNAP_BYTES as usize);
    }

    #[test]
    fn header_field_offsets_are_stable() {
        assert_eq!(core::mem::offset_of!(PacketHeader, saddr), 8);
        assert_eq!(core::mem::offset_of!(PacketHeader, seq), 40);
        assert_eq!(core::mem::offset_of!(PacketHeader, chunk_len), 60);
        assert_eq!(core::mem::offset_of!(PacketHeader, sport), 64);
        assert_eq!(core::mem::offset_of!(PacketHeader, _pad), 71);
    }
}
