//! Flow ownership (R-CAP-5): a `cgroup_skb/egress` program on the cgroup v2 root sees every
//! packet a local socket sends, in every network namespace, with the socket's cgroup. For
//! TCP packets on the captured ports it records the cgroup (and socket uid) per flow in an LRU
//! map, which the agent reads once per connection to attribute events to a container, a pod or
//! a systemd unit. XDP and TC on an interface cannot do this: the packets there carry no
//! socket, or not the application's once they crossed a veth.
//!
//! Like the capture programs it only observes: it always returns 1 (let the packet go).

use apitap_common::{
    Counter, FAMILY_IPV4, FAMILY_IPV6, FlowKey, FlowOwner, MAX_FLOW_OWNERS, config_flags,
};
use aya_ebpf::{
    helpers::generated::{bpf_get_socket_uid, bpf_skb_cgroup_id},
    macros::{cgroup_skb, map},
    maps::LruHashMap,
    programs::SkBuffContext,
};

use crate::capture::{CONFIG, PORTS, bump};

#[map]
static FLOW_OWNERS: LruHashMap<FlowKey, FlowOwner> =
    LruHashMap::with_max_entries(MAX_FLOW_OWNERS, 0);

/// `__sk_buff.protocol` values (network byte order on the wire, read as big-endian u16).
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const IPPROTO_TCP: u8 = 6;

/// Not a TCP packet on a captured port, or unreadable: nothing to record.
struct Skip;

#[cgroup_skb(egress)]
pub fn apitap_cgroup_egress(ctx: SkBuffContext) -> i32 {
    if let Ok(key) = try_flow_key(&ctx) {
        record(&ctx, &key);
    }
    // 1 = let the packet leave; this program never filters.
    1
}

#[inline(always)]
fn record(ctx: &SkBuffContext, key: &FlowKey) {
    // SAFETY: helpers called with the program's own context.
    let owner = unsafe {
        FlowOwner {
            cgroup_id: bpf_skb_cgroup_id(ctx.skb.skb),
            uid: bpf_get_socket_uid(ctx.skb.skb),
            _pad: 0,
        }
    };
    // SAFETY: plain lookup; the value is copied, not kept.
    if let Some(known) = unsafe { FLOW_OWNERS.get(key) }
        && *known == owner
    {
        return; // the common case: one lookup per packet, no write
    }
    if FLOW_OWNERS.insert(key, &owner, 0).is_ok() {
        bump(Counter::OwnerFlows, 1);
    } else {
        bump(Counter::OwnerUpdateFailed, 1);
    }
}

/// The flow key of a TCP packet on a captured port. cgroup_skb programs see the packet from
/// its network header; `load` is the bounds-checked copy (bpf_skb_load_bytes).
#[inline(always)]
fn try_flow_key(ctx: &SkBuffContext) -> Result<FlowKey, Skip> {
    let Some(cfg) = CONFIG.get(0) else {
        return Err(Skip);
    };
    if cfg.flags & config_flags::ENABLED == 0 {
        return Err(Skip);
    }
    // SAFETY: reading a field of the program's own __sk_buff context.
    let proto = u16::from_be(unsafe { (*ctx.skb.skb).protocol } as u16);
    let mut key = FlowKey::default();
    let l4 = match proto {
        // RFC 791 §3.1
        ETH_P_IP => {
            let ip: [u8; 20] = ctx.load(0).map_err(|_| Skip)?;
            let ihl = ((ip[0] & 0x0f) as usize) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != IPPROTO_TCP {
                return Err(Skip);
            }
            key.saddr[..4].copy_from_slice(&ip[12..16]);
            key.daddr[..4].copy_from_slice(&ip[16..20]);
            key.family = FAMILY_IPV4;
            ihl
        }
        // RFC 8200 §3: TCP directly after the fixed header (extension headers are rare on
        // locally sent TCP; such flows stay unattributed and the agent counts them).
        ETH_P_IPV6 => {
            let ip: [u8; 40] = ctx.load(0).map_err(|_| Skip)?;
            if ip[6] != IPPROTO_TCP {
                return Err(Skip);
            }
            key.saddr.copy_from_slice(&ip[8..24]);
            key.daddr.copy_from_slice(&ip[24..40]);
            key.family = FAMILY_IPV6;
            40
        }
        _ => return Err(Skip),
    };
    let ports: [u8; 4] = ctx.load(l4).map_err(|_| Skip)?;
    key.sport = u16::from_be_bytes([ports[0], ports[1]]);
    key.dport = u16::from_be_bytes([ports[2], ports[3]]);
    if cfg.flags & config_flags::ALL_PORTS == 0
        // SAFETY: plain lookups; values are not kept.
        && unsafe { PORTS.get(&key.sport).is_none() && PORTS.get(&key.dport).is_none() }
    {
        return Err(Skip);
    }
    Ok(key)
}
