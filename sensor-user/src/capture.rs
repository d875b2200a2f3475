//! Loading, configuring and attaching the eBPF programs, reading their ring buffer and
//! counters (R-CAP-1, R-CAP-7).
//!
//! Links are owned by the loaded object and are file-descriptor based: if the agent exits or
//! crashes, the kernel detaches the programs, so the host's traffic is never left behind a
//! program nobody reads.

use anyhow::{Context as _, bail};
use std::path::PathBuf;

use apitap_common::{
    Counter, FlowKey, FlowOwner, MAP_CONFIG, MAP_COUNTERS, MAP_EVENTS, MAP_FLOW_OWNERS, MAP_PORTS,
    PROG_CGROUP_EGRESS, PROG_TC_EGRESS, PROG_XDP_INGRESS, SensorConfig, config_flags,
};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, SchedClassifier, TcAttachType, Xdp,
        XdpMode, tc,
    },
    util::KernelVersion,
};
use tracing::{debug, info, warn};

use crate::attribution::cgroup;
use crate::config::{AttributionSection, CaptureSection, TlsSection, XdpModeSetting};
use crate::tls::TlsHandles;

/// The kernel's record of flow owners (R-CAP-5), and the cgroup v2 mount its ids refer to.
pub struct Owners {
    /// [`MAP_FLOW_OWNERS`], written by the cgroup egress program.
    pub map: HashMap<MapData, FlowKey, FlowOwner>,
    /// The cgroup v2 hierarchy the program is attached to the root of.
    pub cgroup_root: PathBuf,
}

/// The eBPF object built from `sensor-ebpf` by this crate's build script.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/apitap-sensor-ebpf"));

/// What [`Capture::attach`] returns: the programs, the capture ring, the flow owners' map
/// (attribution on) and the TLS programs' maps (`[tls]` on).
pub type Attachment = (
    Capture,
    RingBuf<MapData>,
    Option<Owners>,
    Option<TlsHandles>,
);

/// Loaded and attached programs.
pub struct Capture {
    /// Keeps programs and links alive; dropping it detaches everything.
    _ebpf: Ebpf,
    counters: PerCpuArray<MapData, u64>,
}

impl Capture {
    /// Loads the programs, writes the configuration maps and attaches to every interface, and
    /// (with `attribution.enabled`) the cgroup egress program to the cgroup v2 root. Returns
    /// the attached capture, its ring buffer of records and the flow owners' map.
    ///
    /// With `tls.enabled` it also attaches the TLS uprobes and tracepoints and returns their
    /// maps (R-CAP-4); otherwise their ring is the smallest the kernel allows.
    pub fn attach(
        cfg: &CaptureSection,
        attribution: &AttributionSection,
        tls: &TlsSection,
    ) -> anyhow::Result<Attachment> {
        raise_memlock();
        // A page: the least a ring buffer may be.
        let tls_ring = if tls.enabled {
            tls.ring_buffer_bytes
        } else {
            4096
        };
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_EVENTS, cfg.ring_buffer_bytes)
            .map_max_entries(apitap_common::tls::MAP_TLS_EVENTS, tls_ring)
            .load(EBPF_OBJECT)
            .context("loading the eBPF object into the kernel (needs CAP_BPF and CAP_NET_ADMIN)")?;

        let mut ports: HashMap<_, u16, u8> = HashMap::try_from(
            ebpf.map_mut(MAP_PORTS)
                .context("map PORTS missing from the object")?,
        )?;
        for p in &cfg.ports {
            ports
                .insert(p, 1, 0)
                .with_context(|| format!("adding port {p} to the port filter"))?;
        }
        let mut flags = config_flags::ENABLED;
        if cfg.ports.is_empty() {
            flags |= config_flags::ALL_PORTS;
        }
        let mut config: Array<_, SensorConfig> = Array::try_from(
            ebpf.map_mut(MAP_CONFIG)
                .context("map CONFIG missing from the object")?,
        )?;
        config.set(
            0,
            SensorConfig {
                snap_len: cfg.snap_len_bytes,
                flags,
                wakeup_bytes: cfg.wakeup_bytes,
                _pad: 0,
            },
            0,
        )?;

        let mode = match cfg.xdp_mode {
            XdpModeSetting::Skb => XdpMode::Skb,
            XdpModeSetting::Driver => XdpMode::Driver,
            XdpModeSetting::Default => XdpMode::Default,
        };
        let xdp: &mut Xdp = ebpf
            .program_mut(PROG_XDP_INGRESS)
            .context("XDP program missing from the object")?
            .try_into()?;
        xdp.load().context("verifying the XDP program")?;
        for iface in &cfg.interfaces {
            xdp.attach(iface, mode)
                .with_context(|| format!("attaching XDP ({:?} mode) to {iface}", cfg.xdp_mode))?;
        }
        let legacy_tc = KernelVersion::current()
            .map(|v| v < KernelVersion::new(6, 6, 0))
            .unwrap_or(true);
        let tc_prog: &mut SchedClassifier = ebpf
            .program_mut(PROG_TC_EGRESS)
            .context("TC program missing from the object")?
            .try_into()?;
        tc_prog.load().context("verifying the TC program")?;
        for iface in &cfg.interfaces {
            if legacy_tc {
                // Before tcx (6.6) the clsact qdisc must exist; it may already.
                if let Err(e) = tc::qdisc_add_clsact(iface) {
                    debug!(interface = %iface, error = %e, "clsact qdisc not added (may exist)");
                }
            }
            tc_prog
                .attach(iface, TcAttachType::Egress)
                .with_context(|| format!("attaching the TC egress classifier to {iface}"))?;
        }
        info!(interfaces = ?cfg.interfaces, ports = ?cfg.ports, snap_len = cfg.snap_len_bytes, "capture attached");

        let root = match (attribution.enabled, &attribution.cgroup_root) {
            (false, _) => None,
            // Configured: it must be there.
            (true, Some(p)) => Some(cgroup::find_root(Some(p))?),
            // Default: a host without cgroup v2 (or a mount namespace that hides it) captures
            // without attribution, and says so.
            (true, None) => match cgroup::find_root(None) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(error = %e, "attribution off: events will carry no workload (R-CAP-5)");
                    None
                }
            },
        };
        let owners = if let Some(root) = root {
            let dir = std::fs::File::open(&root).with_context(|| {
                format!("`attribution.cgroup_root`: opening {}", root.display())
            })?;
            let prog: &mut CgroupSkb = ebpf
                .program_mut(PROG_CGROUP_EGRESS)
                .context("cgroup egress program missing from the object")?
                .try_into()?;
            prog.load().context("verifying the cgroup egress program")?;
            // A BPF link (kernel >= 5.7, which CAP_BPF needs anyway) always runs beside the
            // programs already on the root (systemd's, a CNI's); the kernel takes no mode
            // flags for links (EINVAL), hence `Single`, which is no flag.
            prog.attach(&dir, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
                .with_context(|| {
                    format!(
                        "`attribution`: attaching the cgroup egress program to {} (needs CAP_NET_ADMIN; attribution.enabled = false turns it off)",
                        root.display()
                    )
                })?;
            info!(cgroup_root = %root.display(), "flow owners recorded from the cgroup root");
            let map = HashMap::try_from(
                ebpf.take_map(MAP_FLOW_OWNERS)
                    .context("map FLOW_OWNERS missing")?,
            )?;
            Some(Owners {
                map,
                cgroup_root: root,
            })
        } else {
            None
        };

        let tls = if tls.enabled {
            Some(crate::tls::attach(&mut ebpf, tls, cfg.wakeup_bytes)?)
        } else {
            None
        };

        let ring = RingBuf::try_from(ebpf.take_map(MAP_EVENTS).context("map EVENTS missing")?)?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(MAP_COUNTERS)
                .context("map COUNTERS missing")?,
        )?;
        Ok((
            Capture {
                _ebpf: ebpf,
                counters,
            },
            ring,
            owners,
            tls,
        ))
    }

    /// Kernel counters summed over CPUs, indexed like [`Counter::ALL`].
    pub fn counters(&self) -> anyhow::Result<[u64; Counter::COUNT as usize]> {
        let mut out = [0u64; Counter::COUNT as usize];
        for c in Counter::ALL {
            let values = self.counters.get(&(c as u32), 0)?;
            out[c as usize] = values.iter().sum();
        }
        Ok(out)
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; newer ones use the memory cgroup.
/// Raising it needs CAP_SYS_RESOURCE, which the sensor does not ask for: a failure is fine.
fn raise_memlock() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        debug!("RLIMIT_MEMLOCK not raised (BPF memory is accounted by cgroup on this kernel)");
    }
}

/// Fails unless the process can load BPF programs (and, with `tls`, attach uprobes and
/// tracepoints), with a message naming what is missing.
pub fn check_privileges(tls: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0);
        use crate::privilege::{CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN};
        let has = |cap: u32| eff & (1u64 << cap) != 0;
        if !has(CAP_NET_ADMIN) || !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
            bail!(
                "apitap-sensor needs CAP_BPF (or CAP_SYS_ADMIN) and CAP_NET_ADMIN to attach XDP/TC programs"
            );
        }
        // Uprobe perf events: CAP_PERFMON is refused (EACCES) on the kernels tested (6.18).
        if tls && !(has(CAP_PERFMON) && has(CAP_SYS_ADMIN)) {
            bail!(
                "`tls.enabled`: apitap-sensor needs CAP_PERFMON and CAP_SYS_ADMIN at start to attach uprobes (dropped after attach)"
            );
        }
    }
    Ok(())
}
