//! Packet parsing and payload copy shared by the XDP and TC entry points.

use apitap_common::{
    CHUNK_BYTES, Counter, Direction, FAMILY_IPV4, FAMILY_IPV6, HEADER_BYTES, MAX_CHUNKS, MAX_PORTS,
    MAX_SNAP_BYTES, Scratch, SensorConfig, config_flags, tcp_flags,
};
use aya_ebpf::{
    bindings::{
        BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC, xdp_action,
    },
    helpers::generated::{
        bpf_ktime_get_ns, bpf_skb_load_bytes, bpf_xdp_get_buff_len, bpf_xdp_load_bytes,
    },
    macros::{classifier, map, xdp},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{TcContext, XdpContext},
};

/// Default ring size; the agent overrides it from `capture.ring_buffer_bytes`.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map]
pub(crate) static CONFIG: Array<SensorConfig> = Array::with_max_entries(1, 0);

#[map]
pub(crate) static PORTS: HashMap<u16, u8> = HashMap::with_max_entries(MAX_PORTS, 0);

#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const IPPROTO_TCP: u8 = 6;
/// IPv6 extension headers walked at most before the upper-layer header.
const MAX_IPV6_EXT_HEADERS: usize = 4;

/// Why a packet could not be captured; each maps to one drop counter.
#[derive(Clone, Copy)]
enum Drop {
    NonLinear,
    Parse,
    Load,
    RingFull,
    Ipv6Ext,
    Fragment,
}

impl Drop {
    #[inline(always)]
    fn counter(self) -> Counter {
        match self {
            Drop::NonLinear => Counter::NonLinear,
            Drop::Parse => Counter::ParseError,
            Drop::Load => Counter::LoadFailed,
            Drop::RingFull => Counter::RingFull,
            Drop::Ipv6Ext => Counter::Ipv6ExtHeaders,
            Drop::Fragment => Counter::IpFragment,
        }
    }
}

/// Ring-buffer output flags for a record of `record_len` bytes into `ring` (the packet ring
/// or the TLS ring): wake the agent only when this record makes the unread data cross
/// `wakeup_bytes` (the agent drains the ring on a timer besides), or leave the decision to
/// the kernel when batching is off (`wakeup_bytes == 0`). Two CPUs writing at once may both
/// miss the crossing; the agent's timer bounds that delay.
#[inline(always)]
pub(crate) fn wakeup_flags(ring: &RingBuf, wakeup_bytes: u32, record_len: usize) -> u64 {
    if wakeup_bytes == 0 {
        return 0;
    }
    let before = ring.query(BPF_RB_AVAIL_DATA as u64);
    // Each record also carries the ring's own 8-byte header.
    let after = before + record_len as u64 + 8;
    let wake = u64::from(wakeup_bytes);
    if before < wake && after >= wake {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub(crate) fn bump(counter: Counter, by: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; the program cannot be preempted on this CPU while it runs.
        unsafe { *slot += by };
    }
}

/// What the two hooks provide; everything else is shared.
trait Source {
    const DIRECTION: Direction;
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Bytes in the packet from the start of the L2 header, including non-linear parts.
    fn total_len(&self) -> usize;
    fn ifindex(&self) -> u32;
    /// Copies `len` bytes at `offset` (from the L2 header) into `dst`; negative on failure.
    fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64;
}

impl Source for XdpContext {
    const DIRECTION: Direction = Direction::Ingress;
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    #[inline(always)]
    fn total_len(&self) -> usize {
        // SAFETY: helper call with the program's own context.
        unsafe { bpf_xdp_get_buff_len(self.ctx) as usize }
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        self.ingress_ifindex() as u32
    }
    #[inline(always)]
    fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: `dst` points into the per-CPU scratch buffer with at least `len` bytes.
        unsafe { bpf_xdp_load_bytes(self.ctx, offset, dst.cast(), len) }
    }
}

impl Source for TcContext {
    const DIRECTION: Direction = Direction::Egress;
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn total_len(&self) -> usize {
        self.len() as usize
    }
    #[inline(always)]
    fn ifindex(&self) -> u32 {
        // SAFETY: reading a field of the program's own __sk_buff context.
        unsafe { (*self.skb.skb).ifindex }
    }
    #[inline(always)]
    fn load(&self, offset: u32, dst: *mut u8, len: u32) -> i64 {
        // SAFETY: `dst` points into the per-CPU scratch buffer with at least `len` bytes.
        unsafe { bpf_skb_load_bytes(self.skb.skb.cast(), offset, dst.cast(), len) }
    }
}

/// The one bounds-checked accessor for packet memory: a pointer to a `T` at `offset` from the
/// start of the linear data, or the reason it is not there.
#[inline(always)]
fn ptr_at<S: Source, T>(src: &S, offset: usize) -> Result<*const T, Drop> {
    let start = src.data();
    let end = src.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        // Short linear area: either the headers live in a fragment, or the packet is malformed.
        return Err(if end - start < src.total_len() {
            Drop::NonLinear
        } else {
            Drop::Parse
        });
    }
    Ok((start + offset) as *const T)
}

/// Returns `x` unchanged through a volatile stack slot, so that bounds checks written after it
/// survive optimisation and reach the verifier.
#[inline(always)]
fn opaque(x: u32) -> u32 {
    let slot = x;
    // SAFETY: reading a live, initialised local.
    unsafe { core::ptr::read_volatile(&slot) }
}

#[inline(always)]
fn read<S: Source, T: Copy>(src: &S, offset: usize) -> Result<T, Drop> {
    let p = ptr_at::<S, T>(src, offset)?;
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `p` are inside the packet.
    Ok(unsafe { core::ptr::read_unaligned(p) })
}

/// Copies a `T` at a variable `offset` through the load-bytes helper: unlike direct packet
/// access, this verifies for any offset and also reaches non-linear data.
#[inline(always)]
fn load<S: Source, T: Copy>(src: &S, offset: usize) -> Result<T, Drop> {
    let mut v = core::mem::MaybeUninit::<T>::uninit();
    if src.load(
        offset as u32,
        v.as_mut_ptr().cast(),
        core::mem::size_of::<T>() as u32,
    ) < 0
    {
        return Err(Drop::Parse);
    }
    // SAFETY: the helper filled all `size_of::<T>()` bytes; T is plain data.
    Ok(unsafe { v.assume_init() })
}

#[xdp(frags)]
pub fn apitap_xdp_ingress(ctx: XdpContext) -> u32 {
    observe(&ctx);
    xdp_action::XDP_PASS
}

#[classifier]
pub fn apitap_tc_egress(ctx: TcContext) -> i32 {
    observe(&ctx);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn observe<S: Source>(src: &S) {
    bump(Counter::Packets, 1);
    if let Err(drop) = try_observe(src) {
        bump(drop.counter(), 1);
    }
}

#[inline(always)]
fn try_observe<S: Source>(src: &S) -> Result<(), Drop> {
    let Some(cfg) = CONFIG.get(0) else {
        return Ok(());
    };
    if cfg.flags & config_flags::ENABLED == 0 {
        return Ok(());
    }
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: per-CPU scratch value, exclusively ours for the duration of this program run.
    let scratch = unsafe { &mut *scratch };
    let hdr = &mut scratch.header;

    // L2: Ethernet with at most one 802.1Q/802.1ad tag.
    let mut l3 = ETH_HDR_LEN;
    let mut proto = u16::from_be(read::<S, u16>(src, 12)?);
    if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
        proto = u16::from_be(read::<S, u16>(src, 16)?);
        l3 += 4;
    }

    // L3 (RFC 791 §3.1, RFC 8200 §3). `ip_end` is where the IP datagram ends per its header.
    let l4;
    let mut ip_end;
    match proto {
        ETH_P_IP => {
            let vihl: u8 = read(src, l3)?;
            let ihl = ((vihl & 0x0f) as usize) * 4;
            if vihl >> 4 != 4 || ihl < 20 {
                return Err(Drop::Parse);
            }
            if read::<S, u8>(src, l3 + 9)? != IPPROTO_TCP {
                return Ok(());
            }
            // More-fragments flag or a fragment offset: only the agent could reassemble it.
            if u16::from_be(read::<S, u16>(src, l3 + 6)?) & 0x3fff != 0 {
                return Err(Drop::Fragment);
            }
            let tot_len = u16::from_be(read::<S, u16>(src, l3 + 2)?) as usize;
            hdr.saddr = [0; 16];
            hdr.daddr = [0; 16];
            let s: [u8; 4] = read(src, l3 + 12)?;
            let d: [u8; 4] = read(src, l3 + 16)?;
            hdr.saddr[..4].copy_from_slice(&s);
            hdr.daddr[..4].copy_from_slice(&d);
            hdr.family = FAMILY_IPV4;
            l4 = l3 + ihl;
            // tot_len is 0 for GSO super-packets larger than 64 KiB (BIG TCP).
            ip_end = if tot_len == 0 {
                usize::MAX
            } else {
                l3 + tot_len
            };
        }
        ETH_P_IPV6 => {
            let plen = u16::from_be(read::<S, u16>(src, l3 + 4)?) as usize;
            hdr.saddr = read(src, l3 + 8)?;
            hdr.daddr = read(src, l3 + 24)?;
            hdr.family = FAMILY_IPV6;
            ip_end = if plen == 0 {
                usize::MAX
            } else {
                l3 + 40 + plen
            };
            // Walk extension headers (RFC 8200 §4) to the upper-layer header.
            let mut next: u8 = read(src, l3 + 6)?;
            let mut off = l3 + 40;
            for _ in 0..MAX_IPV6_EXT_HEADERS {
                match next {
                    IPPROTO_TCP => break,
                    // Hop-by-hop, routing, destination options: length in 8-octet units.
                    0 | 43 | 60 => {
                        let [nh, len]: [u8; 2] = load(src, off)?;
                        next = nh;
                        off += (len as usize + 1) * 8;
                    }
                    // Authentication header: length in 4-octet units, minus 2 (RFC 4302 §2.2).
                    51 => {
                        let [nh, len]: [u8; 2] = load(src, off)?;
                        next = nh;
                        off += (len as usize + 2) * 4;
                    }
                    // Fragment header (RFC 8200 §4.5): the agent cannot reassemble fragments.
                    44 => {
                        let [nh, _]: [u8; 2] = load(src, off)?;
                        if nh == IPPROTO_TCP {
                            return Err(Drop::Fragment);
                        }
                        return Ok(());
                    }
                    // ESP, ICMPv6, UDP, no next header, ...: not TCP we can see.
                    _ => return Ok(()),
                }
            }
            if next != IPPROTO_TCP {
                // Still inside the extension-header chain after the walk limit.
                return match next {
                    0 | 43 | 60 | 51 | 44 => Err(Drop::Ipv6Ext),
                    _ => Ok(()),
                };
            }
            l4 = off;
        }
        _ => return Ok(()),
    }

    // L4 (RFC 9293 §3.1), read in one copy since its offset varies.
    let tcp: [u8; 20] = load(src, l4)?;
    let sport = u16::from_be_bytes([tcp[0], tcp[1]]);
    let dport = u16::from_be_bytes([tcp[2], tcp[3]]);
    if cfg.flags & config_flags::ALL_PORTS == 0
        // SAFETY: plain lookups; values are not kept.
        && unsafe { PORTS.get(&sport).is_none() && PORTS.get(&dport).is_none() }
    {
        return Ok(());
    }
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ack = u32::from_be_bytes([tcp[8], tcp[9], tcp[10], tcp[11]]);
    let doff = ((tcp[12] >> 4) as usize) * 4;
    let flags = tcp[13];
    if doff < 20 {
        return Err(Drop::Parse);
    }
    let payload_off = l4 + doff;
    let total = src.total_len();
    if ip_end > total {
        ip_end = total;
    }
    let payload_len = ip_end.saturating_sub(payload_off) as u32;
    if payload_len == 0 && flags & (tcp_flags::SYN | tcp_flags::FIN | tcp_flags::RST) == 0 {
        return Ok(()); // pure ACK: nothing for the decoder
    }
    bump(Counter::Matched, 1);

    let mut snap = cfg.snap_len;
    if snap > MAX_SNAP_BYTES {
        snap = MAX_SNAP_BYTES;
    }
    let captured = if payload_len > snap {
        bump(Counter::Truncated, 1);
        snap
    } else {
        payload_len
    };

    // SAFETY: helper without arguments.
    hdr.ts_ns = unsafe { bpf_ktime_get_ns() };
    hdr.seq = seq;
    hdr.ack = ack;
    hdr.ifindex = src.ifindex();
    hdr.payload_len = payload_len;
    hdr.sport = sport;
    hdr.dport = dport;
    hdr.direction = S::DIRECTION as u8;
    hdr.tcp_flags = flags;
    hdr._pad = 0;

    let mut chunk_off: u32 = 0;
    for _ in 0..MAX_CHUNKS {
        let mut len = captured - chunk_off;
        if len > CHUNK_BYTES as u32 {
            len = CHUNK_BYTES as u32;
        }
        // LLVM can prove `len > 0` from the loop condition and drop the checks below; the
        // verifier cannot follow that proof, so hide the value from the optimiser.
        let len = opaque(len);
        if len > CHUNK_BYTES as u32 {
            return Err(Drop::Parse);
        }
        scratch.header.chunk_offset = chunk_off;
        scratch.header.chunk_len = len;
        if len > 0 {
            let dst = scratch.data.as_mut_ptr();
            if src.load(payload_off as u32 + chunk_off, dst, len) < 0 {
                return Err(Drop::Load);
            }
        }
        let record_len = HEADER_BYTES + len as usize;
        // SAFETY: `record_len <= size_of::<Scratch>()` because `len <= CHUNK_BYTES`.
        let record = unsafe {
            core::slice::from_raw_parts((scratch as *const Scratch).cast::<u8>(), record_len)
        };
        if EVENTS
            .output::<[u8]>(record, wakeup_flags(&EVENTS, cfg.wakeup_bytes, record_len))
            .is_err()
        {
            return Err(Drop::RingFull);
        }
        bump(Counter::Records, 1);
        bump(Counter::PayloadBytes, len as u64);
        chunk_off += len;
        if chunk_off >= captured {
            break;
        }
    }
    Ok(())
}
