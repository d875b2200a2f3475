//! The live capture loop: ring buffer → reassembly/decoding → sink, with periodic timeouts,
//! metrics and a clean shutdown on SIGINT/SIGTERM that reports every pending transaction.
//!
//! The loop never awaits the event bus: a Kafka sink hands each event to librdkafka's memory
//! queue or to the spool thread and returns (R-BUS-2, R-CAP-7).

use std::time::Duration;

use anyhow::Context as _;
use apitap_decode::Reassembler;
use apitap_schema::{ApiEvent, SensorInfo};
use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::attribution::{Attributor, cgroup, kubernetes};
use crate::capture::{Capture, Owners, check_privileges};
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::{self, Shared, Snapshot};
use crate::minimise::Minimiser;
use crate::privilege;
use crate::record;
use crate::sink::Sink;
use crate::tls::{KernelExes, TlsDecoder, TlsHandles, TlsOwner};

/// Records handled per wake-up before yielding to timers and signals.
const BATCH_RECORDS: usize = 16_384;

/// Events decoded but not yet handed to the sink at most: a batch of records is drained into
/// the sink as it goes, so a burst of small pipelined transactions cannot pile up a batch's
/// worth of events (up to 64 per record) in memory (issue 22).
const MAX_QUEUED_EVENTS: usize = 256;

/// Host name from the kernel, or `unknown`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Attribution over the kernel's owner map.
type KernelAttributor =
    Attributor<aya::maps::HashMap<MapData, apitap_common::FlowKey, apitap_common::FlowOwner>>;

/// The TLS side of the pipeline (R-CAP-4): its decoder and the kernel maps it reads.
struct TlsPipe {
    decoder: TlsDecoder,
    counters: aya::maps::PerCpuArray<MapData, u64>,
    exes: aya::maps::HashMap<MapData, u32, apitap_common::tls::TlsExe>,
    events: Vec<(ApiEvent, TlsOwner)>,
    /// Counts processes whose TLS is not captured (R-CAP-4).
    watch: crate::tls::watch::ExecWatch,
    /// The helper probing files first seen later (`tls.attach_later`).
    attacher: Option<crate::tls::attacher::Attacher>,
    /// Its reports so far: attached, failed, detached.
    late: [u64; 3],
}

impl TlsPipe {
    /// Takes the attach helper's reports into the watch, the counters and the log.
    fn late_reports(&mut self) {
        use crate::tls::attacher::Outcome;
        let Some(a) = &mut self.attacher else {
            return;
        };
        for r in a.reports() {
            self.late[r.outcome as usize - 1] += 1;
            self.watch.late_outcome(r.file, r.flavor, r.outcome);
            match r.outcome {
                Outcome::Attached => info!(
                    pid = r.pid,
                    inode = r.file.1,
                    kind = r.flavor.name(),
                    "TLS library probed after start"
                ),
                Outcome::Failed => warn!(
                    pid = r.pid,
                    inode = r.file.1,
                    kind = r.flavor.name(),
                    "TLS library first seen after start could not be probed"
                ),
                Outcome::Detached => info!(
                    inode = r.file.1,
                    kind = r.flavor.name(),
                    "TLS library no longer mapped by a selected process: probes detached"
                ),
            }
        }
    }
}

struct Pipeline {
    reasm: Reassembler,
    tls: Option<TlsPipe>,
    attributor: Option<KernelAttributor>,
    minimiser: Minimiser,
    sink: Sink,
    events: Vec<ApiEvent>,
    records: u64,
    bad_records: u64,
    ring_wakeups: u64,
    ring_timer_drains: u64,
}

impl Pipeline {
    fn drain_events(&mut self) -> anyhow::Result<()> {
        for mut e in self.events.drain(..) {
            if let Some(a) = &mut self.attributor {
                a.attribute(&mut e);
            }
            let e = self.minimiser.apply(e);
            self.sink.write(&e)?;
        }
        if let Some(t) = &mut self.tls {
            for (mut e, owner) in t.events.drain(..) {
                if let Some(a) = &mut self.attributor {
                    a.attribute_known(&mut e, owner.owner, owner.server);
                }
                let e = self.minimiser.apply(e);
                self.sink.write(&e)?;
            }
        }
        Ok(())
    }

    /// Takes up to `max` records from the TLS ring into the TLS decoder; returns how many
    /// and whether the ring ran empty.
    fn drain_tls_ring(
        &mut self,
        rb: &mut RingBuf<MapData>,
        offset_ns: i128,
        max: usize,
    ) -> anyhow::Result<(usize, bool)> {
        let mut n = 0;
        let mut exhausted = false;
        while n < max {
            let Some(t) = &mut self.tls else {
                return Ok((0, true));
            };
            let Some(item) = rb.next() else {
                exhausted = true;
                break;
            };
            n += 1;
            match crate::tls::decoder::parse(&item) {
                Ok(rec) if rec.header.kind == apitap_common::tls::TlsKind::Exec as u8 => {
                    // Exec notices carry the file's inode in `ssl` and its device in `sock`.
                    let h = &rec.header;
                    let dev = crate::tls::watch::user_dev(h.sock as u32);
                    t.watch.exec(h.tgid, rec.data, dev, h.ssl);
                    if let Some(a) = &mut t.attacher {
                        a.notify(h.tgid);
                    }
                    t.decoder.exec_record();
                }
                Ok(rec) => {
                    let mut exes = KernelExes(&t.exes);
                    t.decoder.record(&rec, offset_ns, &mut exes, &mut t.events);
                }
                Err(_) => t.decoder.bad_record(),
            }
            drop(item);
            if n % 256 == 1 {
                t.late_reports();
            }
            if t.events.len() >= MAX_QUEUED_EVENTS {
                self.drain_events()?;
            }
        }
        Ok((n, exhausted))
    }

    /// Decodes one segment; hands the events to the sink once [`MAX_QUEUED_EVENTS`] wait.
    fn ingest(&mut self, seg: &apitap_decode::Segment<'_>) -> anyhow::Result<()> {
        self.reasm.segment(seg, &mut self.events);
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.drain_events()?;
        }
        Ok(())
    }

    /// Takes up to `max` records from the ring into the reassembler; returns how many and
    /// whether the ring ran empty.
    fn drain_ring(
        &mut self,
        rb: &mut RingBuf<MapData>,
        offset_ns: i128,
        snap_len: u32,
        max: usize,
    ) -> anyhow::Result<(usize, bool)> {
        let mut n = 0;
        let mut exhausted = false;
        while n < max {
            let Some(item) = rb.next() else {
                exhausted = true;
                break;
            };
            n += 1;
            match record::parse(&item, offset_ns, snap_len) {
                Ok(seg) => self.ingest(&seg)?,
                Err(_) => self.bad_records += 1,
            }
        }
        self.records += n as u64;
        Ok((n, exhausted))
    }

    fn snapshot(&self, capture: &Capture) -> Snapshot {
        Snapshot {
            kernel: capture.counters().unwrap_or_else(|e| {
                warn!(error = %e, "reading kernel counters failed");
                Default::default()
            }),
            decode: self.reasm.stats().clone(),
            h2: self.reasm.h2_stats(),
            bad_records: self.bad_records,
            records: self.records,
            ring_wakeups: self.ring_wakeups,
            ring_timer_drains: self.ring_timer_drains,
            events: self.sink.events,
            connections: self.reasm.connections(),
            held_bytes: self.reasm.held_bytes(),
            bus: self.sink.bus_metrics(),
            payload: self.minimiser.stats.clone(),
            payload_mode: self.minimiser.mode(),
            attribution: self.attributor.as_ref().map(Attributor::stats),
            tls: self.tls.as_ref().map(|t| crate::metrics::TlsSnapshot {
                kernel: crate::tls::counters(&t.counters).unwrap_or_else(|e| {
                    warn!(error = %e, "reading TLS kernel counters failed");
                    Default::default()
                }),
                stats: t.decoder.tls_stats(),
                decode: t.decoder.stats().clone(),
                h2: t.decoder.h2_stats(),
                connections: t.decoder.connections(),
                held_bytes: t.decoder.held_bytes(),
                unsupported: t.watch.counts(),
                exec_checks: t.watch.stats(),
                late_probes: t.late,
                late_notices_dropped: t.attacher.as_ref().map_or(0, |a| a.notices_dropped),
            }),
        }
    }
}

/// Readiness of the TLS ring, or never when TLS capture is off.
async fn tls_readable(
    ring: &mut Option<AsyncFd<RingBuf<MapData>>>,
) -> std::io::Result<tokio::io::unix::AsyncFdReadyMutGuard<'_, RingBuf<MapData>>> {
    match ring {
        Some(r) => r.readable_mut().await,
        None => std::future::pending().await,
    }
}

/// The sensor identity `cfg` describes (`sensor.id`, defaulting to the host name).
pub fn sensor_info(cfg: &Config) -> SensorInfo {
    let host = host_name();
    SensorInfo {
        id: cfg.sensor.id.clone().unwrap_or_else(|| host.clone()),
        host,
        node: cfg.attribution.kubernetes.node(),
    }
}

/// Programs loaded and attached, privileges given up: what capture runs on.
pub struct Attached {
    capture: Capture,
    ring: RingBuf<MapData>,
    owners: Option<Owners>,
    tls: Option<TlsHandles>,
}

/// Loads and attaches the programs, then drops every capability the kernel does not need the
/// sensor to keep (none from 6.6 on, see [`crate::privilege`]). Call it while the process has
/// one thread: before the sink, the metrics server or anything else starts threads.
pub fn attach(cfg: &Config) -> anyhow::Result<Attached> {
    cfg.validate()?;
    check_privileges(cfg.tls.enabled)?;
    let (capture, ring, owners, tls) = Capture::attach(&cfg.capture, &cfg.attribution, &cfg.tls)?;
    // Unknown kernel version: assume the oldest behaviour (keep what old kernels need).
    let kernel = aya::util::KernelVersion::current()
        .unwrap_or_else(|_| aya::util::KernelVersion::new(0, 0, 0));
    let keep = privilege::needed_after_attach(kernel);
    privilege::drop_all_but(&keep)
        .context("dropping capabilities after attaching the programs (R-OPS-3)")?;
    if keep.is_empty() {
        info!("capabilities dropped: none held from here on");
    } else {
        warn!(kept = ?keep, kernel = ?kernel, "capabilities dropped except what this kernel needs to read counters and detach (before 6.6)");
    }
    Ok(Attached {
        capture,
        ring,
        owners,
        tls,
    })
}

/// Runs live capture until SIGINT or SIGTERM, writing to the configured sink.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let attached = attach(&cfg)?;
    // The producer's threads start after the drop, so they never hold a capability.
    let sink = Sink::from_config(&cfg, &sensor_info(&cfg).id)?;
    run_attached(cfg, attached, sink).await
}

/// Runs live capture on `attached` until SIGINT or SIGTERM, writing to `sink`. The embedded
/// single-process mode calls this with a sink over the in-memory bus (`Sink::from_publisher`),
/// the analyzer consuming the other end in the same process.
pub async fn run_attached(cfg: Config, attached: Attached, sink: Sink) -> anyhow::Result<()> {
    let Attached {
        capture,
        ring,
        owners,
        tls,
    } = attached;
    let sensor = sensor_info(&cfg);
    let attributor = match owners {
        Some(Owners { map, cgroup_root }) => {
            let k = &cfg.attribution.kubernetes;
            let pods = match (k.active(), &sensor.node) {
                (true, Some(node)) => {
                    match kubernetes::watch(node, k.kubeconfig.as_deref()).await {
                        Ok(p) => Some(p),
                        // `auto` in a pod without a token (automountServiceAccountToken: false):
                        // capture goes on, events name cgroups and containers but not pods.
                        Err(e) if k.mode == crate::config::KubernetesMode::Auto => {
                            warn!(error = %format!("{e:#}"), "pods are not looked up (attribution.kubernetes.mode = \"auto\")");
                            None
                        }
                        Err(e) => return Err(e),
                    }
                }
                _ => {
                    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
                        warn!(
                            "in a Kubernetes pod but pods are not looked up: set $NODE_NAME or \
                             attribution.kubernetes.node_name (or mode = \"off\" to silence this)"
                        );
                    }
                    None
                }
            };
            let mut resolver = cgroup::Resolver::new(cgroup_root);
            resolver.scan();
            Some(Attributor::new(
                map,
                resolver,
                pods,
                cfg.attribution.max_cached_connections,
            ))
        }
        None => None,
    };
    let minimiser = Minimiser::from_config(&cfg.payload)?;
    info!(mode = minimiser.mode().as_str(), "payload mode");
    let shared = Shared::default();
    if let Some(addr) = cfg.metrics.listen {
        metrics::serve(addr, cfg.metrics.token_file.as_deref(), shared.clone()).await?;
        info!(%addr, "metrics endpoint listening");
    }
    // SAFETY: the RingBuf owns its map file descriptor, which stays open and unchanged until
    // the AsyncFd (which owns the RingBuf) is dropped.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("registering the ring buffer with the runtime: {e}"))?;
    let snap_len = cfg.capture.snap_len_bytes;
    let (tls, mut tls_ring) = match tls {
        Some(TlsHandles {
            ring,
            counters,
            exes,
            libraries,
            unsupported,
            probed,
            attacher,
        }) => {
            // SAFETY: as for the capture ring above.
            let ring =
                unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
                    .map_err(|e| anyhow::anyhow!("registering the TLS ring buffer: {e}"))?;
            let pipe = TlsPipe {
                decoder: TlsDecoder::new(
                    sensor.clone(),
                    cfg.reassembly().session,
                    libraries,
                    cfg.tls.max_connections,
                    cfg.tls.idle_timeout_secs,
                ),
                counters,
                exes,
                events: Vec::new(),
                watch: if attacher.is_some() {
                    crate::tls::watch::ExecWatch::new(probed, unsupported).with_late_attach()
                } else {
                    crate::tls::watch::ExecWatch::new(probed, unsupported)
                },
                attacher,
                late: [0; 3],
            };
            (Some(pipe), Some(ring))
        }
        None => (None, None),
    };
    let mut p = Pipeline {
        reasm: Reassembler::new(cfg.reassembly(), sensor),
        tls,
        attributor,
        minimiser,
        sink,
        events: Vec::new(),
        records: 0,
        bad_records: 0,
        ring_wakeups: 0,
        ring_timer_drains: 0,
    };
    let mut clock = Clock::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut poll = tokio::time::interval(Duration::from_millis(cfg.capture.poll_interval_ms));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    shared.publish(p.snapshot(&capture));
    info!("capturing");

    let mut backlog = false;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                if !backlog {
                    p.ring_wakeups += 1;
                }
                let (_, exhausted) =
                    p.drain_ring(guard.get_inner_mut(), clock.offset_ns(), snap_len, BATCH_RECORDS)?;
                // Still readable after a full batch: the next turn continues this wake-up.
                backlog = !exhausted;
                if exhausted {
                    guard.clear_ready();
                }
                p.drain_events()?;
                p.sink.flush()?;
            }
            guard = tls_readable(&mut tls_ring) => {
                let mut guard = guard.context("waiting on the TLS ring buffer")?;
                let (_, exhausted) =
                    p.drain_tls_ring(guard.get_inner_mut(), clock.offset_ns(), BATCH_RECORDS)?;
                if exhausted {
                    guard.clear_ready();
                }
                p.drain_events()?;
                p.sink.flush()?;
            }
            // Below `capture.wakeup_bytes` the kernel does not wake us: drain on a timer.
            _ = poll.tick() => {
                let (mut n, _) = p.drain_ring(ring.get_mut(), clock.offset_ns(), snap_len, BATCH_RECORDS)?;
                if let Some(r) = &mut tls_ring {
                    n += p.drain_tls_ring(r.get_mut(), clock.offset_ns(), BATCH_RECORDS)?.0;
                }
                // An idle host pays this tick 1000 / poll_interval_ms times a second: nothing
                // read, nothing to encode or flush.
                if n > 0 {
                    p.ring_timer_drains += 1;
                    p.drain_events()?;
                    p.sink.flush()?;
                }
            }
            _ = tick.tick() => {
                clock.refresh();
                p.reasm.tick(clock.now_us(), &mut p.events);
                if let Some(t) = &mut p.tls {
                    t.decoder.tick(clock.now_us(), &mut t.events);
                    t.late_reports();
                }
                p.drain_events()?;
                p.sink.flush()?;
                shared.publish(p.snapshot(&capture));
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    // Shutdown: take what the kernel already queued, then report every open transaction.
    p.drain_ring(ring.get_mut(), clock.offset_ns(), snap_len, usize::MAX)?;
    if let Some(r) = &mut tls_ring {
        p.drain_tls_ring(r.get_mut(), clock.offset_ns(), usize::MAX)?;
    }
    p.reasm.finish(&mut p.events);
    if let Some(t) = &mut p.tls {
        t.decoder.finish(clock.now_us(), &mut t.events);
    }
    p.drain_events()?;
    p.sink.close()?;
    let snap = p.snapshot(&capture);
    shared.publish(snap.clone());
    info!(
        events = snap.events,
        records = snap.records,
        bad_records = snap.bad_records,
        kernel_drops = snap.kernel_drops(),
        stream_gaps = snap.decode.stream_gaps,
        minimised_events = snap.payload.minimised_events,
        "stopped"
    );
    drop(capture);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SinkKind;
    use std::net::IpAddr;

    /// A burst of records that each complete a transaction (issue 22: 16k records were decoded
    /// before any event left) is handed to the sink as it is decoded: never more than
    /// [`MAX_QUEUED_EVENTS`] wait in memory, and none is lost.
    #[test]
    fn a_burst_of_transactions_is_drained_while_it_is_decoded() {
        let mut cfg = Config::parse("[capture]\ninterfaces = [\"lo\"]\nports = [80]\n").unwrap();
        let path = std::env::temp_dir().join(format!("apitap-live-burst-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        cfg.sink.kind = SinkKind::File;
        cfg.sink.path = Some(path.clone());
        let mut p = Pipeline {
            reasm: Reassembler::new(cfg.reassembly(), sensor_info(&cfg)),
            tls: None,
            attributor: None,
            minimiser: Minimiser::from_config(&cfg.payload).unwrap(),
            sink: Sink::open(&cfg.sink).unwrap(),
            events: Vec::new(),
            records: 0,
            bad_records: 0,
            ring_wakeups: 0,
            ring_timer_drains: 0,
        };
        let server: IpAddr = "10.0.0.1".parse().unwrap();
        let req = b"GET /burst HTTP/1.1\r\nHost: h\r\n\r\n";
        let res = b"HTTP/1.1 204 No Content\r\n\r\n";
        let n = 3 * MAX_QUEUED_EVENTS as u16;
        for i in 0..n {
            let client: IpAddr = IpAddr::from([10, 1, (i >> 8) as u8, i as u8]);
            for (from_client, payload) in [(true, &req[..]), (false, &res[..])] {
                let (src, dst) = if from_client {
                    ((client, 40000), (server, 80))
                } else {
                    ((server, 80), (client, 40000))
                };
                let seg = apitap_decode::Segment {
                    ts_us: 1_000 + u64::from(i),
                    src_ip: src.0,
                    src_port: src.1,
                    dst_ip: dst.0,
                    dst_port: dst.1,
                    seq: 1,
                    // The server acknowledges the whole request it answers.
                    ack: if from_client { 1 } else { 1 + req.len() as u32 },
                    flags: 0x10,
                    payload,
                    wire_len: payload.len() as u32,
                };
                p.ingest(&seg).unwrap();
                assert!(
                    p.events.len() < MAX_QUEUED_EVENTS,
                    "{} queued",
                    p.events.len()
                );
            }
        }
        p.drain_events().unwrap();
        p.sink.close().unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(written.lines().count(), usize::from(n));
        assert_eq!(p.reasm.stats().transactions, u64::from(n));
    }
}
