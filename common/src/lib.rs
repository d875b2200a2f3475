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

/// TLS plaintext capture (R-CAP-4): wire types of the uprobes on the TLS library's read and
/// write calls, and of the socket tracepoints that tell which connection a call used.
pub mod tls {
    /// Name of the ring buffer carrying [`TlsHeader`] records.
    pub const MAP_TLS_EVENTS: &str = "TLS_EVENTS";
    /// Name of the per-CPU counter array indexed by [`TlsCounter`].
    pub const MAP_TLS_COUNTERS: &str = "TLS_COUNTERS";
    /// Name of the single-entry array holding the [`TlsConfig`].
    pub const MAP_TLS_CONFIG: &str = "TLS_CONFIG";
    /// Name of the hash map of selected command names (key: `comm`, NUL-padded to 16 bytes).
    pub const MAP_TLS_COMMS: &str = "TLS_COMMS";
    /// Name of the LRU map of process id → [`TlsExe`]: the executable each selected process
    /// runs, from `sched_process_exec` (inherited on fork) and filled by the agent at start.
    pub const MAP_TLS_EXES: &str = "TLS_EXES";
    /// Name of the hash map of selected executables (key: the path, NUL-padded to
    /// [`EXE_BYTES`], as in [`TlsExe`]).
    pub const MAP_TLS_EXE_SELECT: &str = "TLS_EXE_SELECT";
    /// Name of the hash map of selected ports (key: `u16`): the local port of an accepting
    /// socket, the remote port of a connecting one.
    pub const MAP_TLS_PORTS: &str = "TLS_PORTS";
    /// Entries in [`MAP_TLS_COMMS`], and in [`MAP_TLS_EXE_SELECT`].
    pub const MAX_TLS_COMMS: u32 = 256;
    /// Entries in [`MAP_TLS_PORTS`].
    pub const MAX_TLS_PORTS: u32 = 256;
    /// Entries in [`MAP_TLS_EXES`].
    pub const MAX_TLS_EXES: u32 = 16_384;
    /// TCP sockets whose 4-tuple and role are remembered (LRU, from `inet_sock_set_state`).
    pub const MAX_TLS_SOCKETS: u32 = 65_536;
    /// Threads inside a traced TLS call at once, at most.
    pub const MAX_TLS_INFLIGHT: u32 = 16_384;
    /// Bytes of an executable's path kept (longer paths are cut).
    pub const EXE_BYTES: usize = 128;
    /// Plaintext bytes carried by one record at most.
    pub const TLS_CHUNK_BYTES: usize = 16 * 1024;
    /// Records a small chunk is written into: chunks up to this size reserve only this much.
    pub const TLS_SMALL_CHUNK_BYTES: usize = 1024;
    /// Chunks one program run writes at most; a longer call is continued by tail calls.
    pub const TLS_CHUNKS_PER_RUN: u32 = 16;
    /// Program runs (the first plus tail calls) per call at most: with
    /// [`TLS_CHUNKS_PER_RUN`] × [`TLS_CHUNK_BYTES`] each, a call returning up to 8 MiB is
    /// captured whole; the rest of a longer one is counted in [`TlsCounter::TooLong`].
    pub const TLS_RUNS_PER_CALL: u32 = 32;
    /// Name of the program array the return probes tail-call to continue a long call.
    pub const MAP_TLS_TAIL: &str = "TLS_TAIL";

    /// Program names in the object file.
    pub const PROG_SSL_READ_ENTRY: &str = "apitap_ssl_read_entry";
    /// `SSL_read`/`SSL_read_ex` return.
    pub const PROG_SSL_READ_RETURN: &str = "apitap_ssl_read_return";
    /// `SSL_read_ex` entry (the length is returned through a pointer).
    pub const PROG_SSL_READ_EX_ENTRY: &str = "apitap_ssl_read_ex_entry";
    /// `SSL_write` entry.
    pub const PROG_SSL_WRITE_ENTRY: &str = "apitap_ssl_write_entry";
    /// `SSL_write_ex` entry.
    pub const PROG_SSL_WRITE_EX_ENTRY: &str = "apitap_ssl_write_ex_entry";
    /// `SSL_write`/`SSL_write_ex` return.
    pub const PROG_SSL_WRITE_RETURN: &str = "apitap_ssl_write_return";
    /// `SSL_do_handshake`/`SSL_accept`/`SSL_connect` entry: binds the SSL object's socket.
    pub const PROG_SSL_HANDSHAKE_ENTRY: &str = "apitap_ssl_handshake_entry";
    /// Their return.
    pub const PROG_SSL_HANDSHAKE_RETURN: &str = "apitap_ssl_handshake_return";
    /// `SSL_free` entry: the SSL object's socket binding is forgotten.
    pub const PROG_SSL_FREE: &str = "apitap_ssl_free";
    /// GnuTLS `gnutls_record_recv(session, data, len)` entry (R-CAP-4); its return is
    /// [`PROG_SSL_READ_RETURN`] (the entry marks the `ssize_t` result).
    pub const PROG_GNUTLS_RECV_ENTRY: &str = "apitap_gnutls_recv_entry";
    /// GnuTLS `gnutls_record_send(session, data, len)` entry; its return is
    /// [`PROG_SSL_WRITE_RETURN`].
    pub const PROG_GNUTLS_SEND_ENTRY: &str = "apitap_gnutls_send_entry";
    /// `SSL_ctrl(ssl, cmd, larg, parg)` entry: `SSL_set_tlsext_host_name` of OpenSSL (a
    /// macro for `SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, ..., name)`), the client's SNI.
    pub const PROG_SSL_CTRL_ENTRY: &str = "apitap_ssl_ctrl_entry";
    /// `SSL_set_tlsext_host_name(ssl, name)` entry (a function in BoringSSL): the client's
    /// SNI.
    pub const PROG_SSL_SET_HOST_ENTRY: &str = "apitap_ssl_set_host_entry";
    /// `gnutls_server_name_set(session, type, name, len)` entry.
    pub const PROG_GNUTLS_SET_NAME_ENTRY: &str = "apitap_gnutls_set_name_entry";
    /// `SSL_get_servername(ssl, type)` entry and return: the name the server read from the
    /// ClientHello (a server calls it in its servername callback).
    pub const PROG_SSL_GET_SERVERNAME_ENTRY: &str = "apitap_ssl_get_servername_entry";
    /// Its return.
    pub const PROG_SSL_GET_SERVERNAME_RETURN: &str = "apitap_ssl_get_servername_return";
    /// Go `crypto/tls.(*Conn).Read` entry (register ABI, Go 1.17+, x86-64).
    pub const PROG_GO_READ_ENTRY: &str = "apitap_go_read_entry";
    /// Go `crypto/tls.(*Conn).Write` entry.
    pub const PROG_GO_WRITE_ENTRY: &str = "apitap_go_write_entry";
    /// Attached at each `RET` instruction of those two functions (never a uretprobe: Go
    /// moves goroutine stacks, which a uretprobe's rewritten return address breaks).
    pub const PROG_GO_RETURN: &str = "apitap_go_return";
    /// Go `crypto/tls.(*Conn).Close` entry: the connection's end.
    pub const PROG_GO_CLOSE: &str = "apitap_go_close";
    /// Continuation of a long call (tail-called from the return probes).
    pub const PROG_TLS_CONTINUE: &str = "apitap_tls_continue";
    /// Raw tracepoint `sock_send_length`: the socket a traced call wrote to.
    pub const PROG_SOCK_SEND: &str = "apitap_sock_send";
    /// Raw tracepoint `sock_recv_length`: the socket a traced call read from.
    pub const PROG_SOCK_RECV: &str = "apitap_sock_recv";
    /// Raw tracepoint `inet_sock_set_state`: 4-tuples and roles of TCP sockets.
    pub const PROG_SOCK_STATE: &str = "apitap_sock_state";
    /// Raw tracepoint `sched_process_exec`.
    pub const PROG_PROCESS_EXEC: &str = "apitap_process_exec";
    /// Raw tracepoint `sched_process_fork`.
    pub const PROG_PROCESS_FORK: &str = "apitap_process_fork";

    /// What a [`TlsHeader`] record reports.
    #[repr(u8)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum TlsKind {
        /// Plaintext the process read (`SSL_read*`): sent by the peer.
        Read = 0,
        /// Plaintext the process wrote (`SSL_write*`): sent by the process.
        Write = 1,
        /// The TCP socket closed; no payload.
        Close = 2,
        /// A selected process executed a file; the payload is the path it executed (as
        /// given to `execve`, cut to [`EXE_BYTES`] - 1), [`TlsHeader::ssl`] the file's inode
        /// number and [`TlsHeader::sock`] its device (the kernel's `dev_t`), so the agent
        /// can count a TLS library it did not probe (R-CAP-4).
        Exec = 3,
        /// The server name (SNI, RFC 6066 §3) of the connection [`TlsHeader::ssl`]: the
        /// payload is the name (at most [`SNI_BYTES`] - 1 bytes), as the client set it or the
        /// server read it from the ClientHello.
        Sni = 4,
    }

    /// Bytes of a server name kept (a DNS name is at most 253).
    pub const SNI_BYTES: usize = 256;

    /// Role of the traced process on a connection ([`TlsHeader::role`]).
    pub mod role {
        /// The socket's establishment was not seen (opened before the sensor started).
        pub const UNKNOWN: u8 = 0;
        /// The process connected (SYN_SENT → ESTABLISHED).
        pub const CLIENT: u8 = 1;
        /// The process accepted (SYN_RECV → ESTABLISHED).
        pub const SERVER: u8 = 2;
    }

    /// Header of one TLS ring record; `chunk_len` plaintext bytes follow it directly (the
    /// record may be longer: the kernel reserves fixed sizes, see [`TLS_SMALL_CHUNK_BYTES`]).
    ///
    /// `sock` is the kernel address of the socket: the agent uses it, with `tgid`, only as a
    /// connection key, and never writes it out (it would leak the kernel's address layout).
    /// Addresses in network byte order, IPv4 in the first four bytes; ports in host order.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct TlsHeader {
        /// `bpf_ktime_get_ns()` when the call returned (CLOCK_MONOTONIC).
        pub ts_ns: u64,
        /// Address of the library's connection object (`SSL *`) in the process: with `tgid`,
        /// the key of the TLS connection.
        pub ssl: u64,
        /// Socket (see above); 0 when no socket was seen for the call.
        pub sock: u64,
        /// cgroup v2 id of the process (`bpf_get_current_cgroup_id`).
        pub cgroup_id: u64,
        /// Offset of the call's first plaintext byte in this direction of the connection, as
        /// counted since the probes first saw the connection object: a record further on than
        /// the agent expected means bytes were lost (a gap).
        pub stream_offset: u64,
        /// Plaintext bytes the call returned in all.
        pub call_len: u32,
        /// Offset of this record's bytes within the call's plaintext.
        pub chunk_offset: u32,
        /// Plaintext bytes following this header.
        pub chunk_len: u32,
        /// Process id (thread group id).
        pub tgid: u32,
        /// Thread id.
        pub tid: u32,
        /// Real uid of the process.
        pub uid: u32,
        /// Local address of the socket.
        pub laddr: [u8; 16],
        /// Remote address of the socket.
        pub raddr: [u8; 16],
        /// Command name of the thread (`comm`), NUL-padded.
        pub comm: [u8; 16],
        /// Local TCP port.
        pub lport: u16,
        /// Remote TCP port.
        pub rport: u16,
        /// [`TlsKind`] as `u8`.
        pub kind: u8,
        /// [`crate::FAMILY_IPV4`], [`crate::FAMILY_IPV6`], or 0 when unknown.
        pub family: u8,
        /// [`role`] of the process on the connection.
        pub role: u8,
        /// Library index the agent gave the probe (attach cookie).
        pub library: u8,
        /// Explicit padding; always zero.
        pub _pad: [u8; 8],
    }
    const _: () = assert!(core::mem::size_of::<TlsHeader>() == 128);
    const _: () = assert!(core::mem::align_of::<TlsHeader>() == 8);

    /// Size of [`TlsHeader`] in bytes.
    pub const TLS_HEADER_BYTES: usize = core::mem::size_of::<TlsHeader>();

    /// A small TLS record as reserved in the ring.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct TlsSmallRecord {
        /// Header.
        pub header: TlsHeader,
        /// Plaintext (the first `chunk_len` bytes are meaningful).
        pub data: [u8; TLS_SMALL_CHUNK_BYTES],
    }
    const _: () =
        assert!(core::mem::size_of::<TlsSmallRecord>() == TLS_HEADER_BYTES + TLS_SMALL_CHUNK_BYTES);

    /// A full-size TLS record as reserved in the ring.
    #[repr(C)]
    #[derive(Clone, Copy)]
    pub struct TlsRecord {
        /// Header.
        pub header: TlsHeader,
        /// Plaintext (the first `chunk_len` bytes are meaningful).
        pub data: [u8; TLS_CHUNK_BYTES],
    }
    const _: () = assert!(core::mem::size_of::<TlsRecord>() == TLS_HEADER_BYTES + TLS_CHUNK_BYTES);

    /// A TCP socket as `inet_sock_set_state` described it when it was established.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TlsSocket {
        /// Local address.
        pub laddr: [u8; 16],
        /// Remote address.
        pub raddr: [u8; 16],
        /// Local port.
        pub lport: u16,
        /// Remote port.
        pub rport: u16,
        /// Address family ([`crate::FAMILY_IPV4`] or [`crate::FAMILY_IPV6`]).
        pub family: u8,
        /// [`role`] of the local end.
        pub role: u8,
        /// 1 once a traced TLS call used the socket (its close is then reported).
        pub traced: u8,
        /// Explicit padding; always zero.
        pub _pad: u8,
    }
    const _: () = assert!(core::mem::size_of::<TlsSocket>() == 40);

    /// The executable of a process, as `execve` was given it (or `/proc/<pid>/exe` at start).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct TlsExe {
        /// Path bytes, NUL-terminated unless exactly [`EXE_BYTES`] long.
        pub path: [u8; EXE_BYTES],
    }
    const _: () = assert!(core::mem::size_of::<TlsExe>() == EXE_BYTES);

    /// Configuration written by the agent into [`MAP_TLS_CONFIG`] before attaching: flags and
    /// the byte offsets of the kernel fields the programs read, taken from the running
    /// kernel's BTF (`/sys/kernel/btf/vmlinux`), so that no layout is compiled in.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct TlsConfig {
        /// [`tls_flags`] bits.
        pub flags: u32,
        /// `struct sock_common.skc_daddr` (remote IPv4 address).
        pub sk_daddr: u32,
        /// `struct sock_common.skc_rcv_saddr` (local IPv4 address).
        pub sk_rcv_saddr: u32,
        /// `struct sock_common.skc_dport` (remote port, network order).
        pub sk_dport: u32,
        /// `struct sock_common.skc_num` (local port, host order).
        pub sk_num: u32,
        /// `struct sock_common.skc_family`.
        pub sk_family: u32,
        /// `struct sock_common.skc_v6_daddr`.
        pub sk_v6_daddr: u32,
        /// `struct sock_common.skc_v6_rcv_saddr`.
        pub sk_v6_rcv_saddr: u32,
        /// `struct sock.sk_protocol` (a `u16`).
        pub sk_protocol: u32,
        /// `struct task_struct.tgid`.
        pub task_tgid: u32,
        /// `struct linux_binprm.filename` (a `const char *`).
        pub bprm_filename: u32,
        /// `struct linux_binprm.file` (the executed `struct file *`).
        pub bprm_file: u32,
        /// `struct file.f_inode`.
        pub file_inode: u32,
        /// `struct inode.i_ino` (an `unsigned long`).
        pub inode_ino: u32,
        /// `struct inode.i_sb`.
        pub inode_sb: u32,
        /// `struct super_block.s_dev` (the kernel's `dev_t`: major << 20 | minor).
        pub sb_dev: u32,
        /// `struct task_struct.files` (Go: from a file descriptor to its socket).
        pub task_files: u32,
        /// `struct files_struct.fdt`.
        pub files_fdt: u32,
        /// `struct fdtable.fd` (the `struct file **` array).
        pub fdtable_fd: u32,
        /// `struct fdtable.max_fds`.
        pub fdtable_max_fds: u32,
        /// `struct file.private_data` (a socket file's `struct socket *`).
        pub file_private_data: u32,
        /// `struct socket.sk`.
        pub socket_sk: u32,
        /// Unread bytes in the TLS ring at which a record wakes the agent (`capture.wakeup_bytes`,
        /// at most half the TLS ring); below it the agent drains the ring on its poll timer. 0:
        /// the kernel decides per record (a wake-up, an inter-processor interrupt, per record).
        pub wakeup_bytes: u32,
        /// Explicit padding; always zero.
        pub _pad: u32,
    }
    const _: () = assert!(core::mem::size_of::<TlsConfig>() == 96);

    /// Bits of [`TlsConfig::flags`].
    pub mod tls_flags {
        /// The agent has written the configuration; until then the probes capture nothing.
        pub const ENABLED: u32 = 1;
        /// Trace every process calling the library; [`super::MAP_TLS_COMMS`] is ignored.
        pub const ALL_PROCESSES: u32 = 2;
        /// Processes are also selected by executable ([`super::MAP_TLS_EXE_SELECT`]).
        pub const BY_EXECUTABLE: u32 = 4;
        /// Only connections on [`super::MAP_TLS_PORTS`] are captured (those whose socket is
        /// not known are captured too: their port cannot be told).
        pub const BY_PORT: u32 = 8;
    }

    /// Indices of the per-CPU counters in [`MAP_TLS_COUNTERS`]. Each cause for which plaintext
    /// of a selected process was not captured, or only partly, has its own counter (R-CAP-7).
    #[repr(u32)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum TlsCounter {
        /// Traced calls of selected processes that returned plaintext.
        Calls = 0,
        /// Records written to the TLS ring buffer.
        Records = 1,
        /// Plaintext bytes written to the TLS ring buffer.
        Bytes = 2,
        /// Drop: the ring buffer was full (bytes of the call from that chunk on are lost).
        RingFull = 3,
        /// Drop: reading the plaintext out of the process's memory failed.
        ReadFailed = 4,
        /// Drop: the call returned more than [`TLS_RUNS_PER_CALL`] runs can copy.
        TooLong = 5,
        /// Drop: the return probe found no entry state (too many threads inside calls).
        NoEntry = 6,
        /// Calls whose socket was not seen (no socket I/O inside the call and none before
        /// on the same SSL object); their records carry `sock == 0`.
        NoSocket = 7,
        /// Sockets whose close was reported.
        Closes = 8,
        /// Drop: a tail call to continue a long call failed.
        TailCallFailed = 9,
        /// Exec notices of selected processes written to the ring ([`TlsKind::Exec`]).
        Execs = 10,
        /// Exec notices the ring had no room for (the agent cannot check those processes'
        /// TLS library).
        ExecsLost = 11,
    }

    impl TlsCounter {
        /// Number of counters.
        pub const COUNT: u32 = 12;
        /// All counters in index order.
        pub const ALL: [TlsCounter; Self::COUNT as usize] = [
            TlsCounter::Calls,
            TlsCounter::Records,
            TlsCounter::Bytes,
            TlsCounter::RingFull,
            TlsCounter::ReadFailed,
            TlsCounter::TooLong,
            TlsCounter::NoEntry,
            TlsCounter::NoSocket,
            TlsCounter::Closes,
            TlsCounter::TailCallFailed,
            TlsCounter::Execs,
            TlsCounter::ExecsLost,
        ];

        /// Stable snake_case name used in metrics and logs.
        pub const fn name(self) -> &'static str {
            match self {
                TlsCounter::Calls => "calls",
                TlsCounter::Records => "records",
                TlsCounter::Bytes => "bytes",
                TlsCounter::RingFull => "ring_full",
                TlsCounter::ReadFailed => "read_failed",
                TlsCounter::TooLong => "too_long",
                TlsCounter::NoEntry => "no_entry",
                TlsCounter::NoSocket => "no_socket",
                TlsCounter::Closes => "closes",
                TlsCounter::TailCallFailed => "tail_call_failed",
                TlsCounter::Execs => "execs",
                TlsCounter::ExecsLost => "execs_lost",
            }
        }

        /// True for counters that count lost plaintext (calls, not bytes).
        pub const fn is_drop(self) -> bool {
            matches!(
                self,
                TlsCounter::RingFull
                    | TlsCounter::ReadFailed
                    | TlsCounter::TooLong
                    | TlsCounter::NoEntry
                    | TlsCounter::TailCallFailed
            )
        }
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
    unsafe impl aya::Pod for super::tls::TlsSocket {}
    unsafe impl aya::Pod for super::tls::TlsExe {}
    unsafe impl aya::Pod for super::tls::TlsConfig {}
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
    fn tls_counters_are_dense_and_named_uniquely() {
        use tls::TlsCounter;
        for (i, c) in TlsCounter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32);
            for other in &TlsCounter::ALL[i + 1..] {
                assert_ne!(c.name(), other.name());
            }
        }
    }

    #[test]
    fn tls_header_field_offsets_are_stable() {
        use tls::TlsHeader;
        assert_eq!(core::mem::offset_of!(TlsHeader, stream_offset), 32);
        assert_eq!(core::mem::offset_of!(TlsHeader, call_len), 40);
        assert_eq!(core::mem::offset_of!(TlsHeader, laddr), 64);
        assert_eq!(core::mem::offset_of!(TlsHeader, comm), 96);
        assert_eq!(core::mem::offset_of!(TlsHeader, lport), 112);
        assert_eq!(core::mem::offset_of!(TlsHeader, library), 119);
        assert_eq!(core::mem::offset_of!(TlsHeader, _pad), 120);
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
