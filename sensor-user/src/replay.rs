//! `apitap-sensor replay FILE`: the same reassembly and decoder as live capture, fed from a
//! pcap or pcapng file (R-CAP-6) — for investigations and for sites that mirror traffic to a
//! capture box. Link types: Ethernet (with VLAN tags), Linux cooked v1/v2, raw IP, loopback.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use apitap_decode::Reassembler;
use apitap_decode::packet::{Link, PacketError, parse_frame};
use apitap_schema::{ApiEvent, SensorInfo};
use pcap_parser::{Block, PcapBlockOwned, PcapError, create_reader};

use crate::minimise::{Minimiser, PayloadStats};
use crate::sink::Sink;

/// Largest block the reader will grow its buffer for (a jumbo GSO frame is 64 KiB; pcapng
/// blocks carry some options on top).
const MAX_BLOCK_BYTES: usize = 16 * 1024 * 1024;

/// What a replay saw and produced.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    /// Frames read.
    pub packets: u64,
    /// TCP segments handed to the decoder.
    pub tcp_segments: u64,
    /// Frames that were valid but not TCP.
    pub not_tcp: u64,
    /// Frames with malformed headers (dropped).
    pub malformed: u64,
    /// IP fragments (dropped: not reassembled).
    pub fragments: u64,
    /// Frames on interfaces with an unsupported link type (dropped).
    pub unsupported_link: u64,
    /// Events written.
    pub events: u64,
    /// Events carrying each anomaly code.
    pub anomalies: BTreeMap<String, u64>,
    /// Decoder counters.
    pub decode: apitap_decode::Stats,
    /// Data minimisation counters (R-CAP-8).
    pub payload: PayloadStats,
}

impl ReplaySummary {
    /// Human-readable summary, one counter per line.
    pub fn render(&self) -> String {
        let mut s = format!(
            "packets {}\ntcp segments {}\nnot tcp {}\nretransmitted segments {}\nout-of-order segments {}\nconnections {}\ntransactions {}\nevents {}\n",
            self.packets,
            self.tcp_segments,
            self.not_tcp,
            self.decode.segments_retransmitted + self.decode.segments_overlapping,
            self.decode.segments_out_of_order,
            self.decode.connections_opened,
            self.decode.transactions,
            self.events
        );
        let drops = [
            ("malformed frames", self.malformed),
            ("ip fragments", self.fragments),
            ("unsupported link type", self.unsupported_link),
            ("stream gaps", self.decode.stream_gaps),
            ("stream gap bytes", self.decode.stream_gap_bytes),
            (
                "connections not tracked (table full)",
                self.decode.connections_table_full,
            ),
            (
                "connections evicted (table full)",
                self.decode.connections_evicted_table_full,
            ),
            (
                "connections evicted (memory)",
                self.decode.connections_evicted_memory,
            ),
            (
                "requests without response",
                self.decode.requests_without_response,
            ),
            ("unsolicited responses", self.decode.unsolicited_responses),
        ];
        for (name, v) in drops {
            s.push_str(&format!("{name} {v}\n"));
        }
        for (code, n) in &self.anomalies {
            s.push_str(&format!("anomaly {code} {n}\n"));
        }
        let p = &self.payload;
        if p.minimised_events > 0 || p.labelled_events > 0 {
            s.push_str(&format!(
                "minimised events {}\nlabelled events {}\nbody bytes not shipped {}\n",
                p.minimised_events, p.labelled_events, p.removed_body_bytes
            ));
            for (label, n) in &p.findings {
                s.push_str(&format!("findings {label} {n}\n"));
            }
        }
        if let Some(sm) = &p.sampling {
            s.push_str(&format!(
                "events without bodies (sampled out) {}\nbody bytes sampled out {}\n",
                sm.sampled_out_events, sm.sampled_out_body_bytes
            ));
        }
        s
    }
}

struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

struct Interface {
    link: Option<Link>,
    /// Timestamp units per second.
    resolution: u64,
    offset_secs: i64,
}

/// Replays `path` through the decoder into `sink`, events as decoded (`payload = full`).
pub fn replay(
    path: &Path,
    reasm_cfg: apitap_decode::ReassemblyConfig,
    sensor: SensorInfo,
    sink: &mut Sink,
) -> anyhow::Result<ReplaySummary> {
    replay_with(path, reasm_cfg, sensor, &mut Minimiser::full(), sink)
}

/// Replays `path` through the decoder and `minimiser` (the `[payload]` mode) into `sink`.
pub fn replay_with(
    path: &Path,
    reasm_cfg: apitap_decode::ReassemblyConfig,
    sensor: SensorInfo,
    minimiser: &mut Minimiser,
    sink: &mut Sink,
) -> anyhow::Result<ReplaySummary> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let read = Arc::new(AtomicU64::new(0));
    let counting = Counting {
        inner: file,
        read: read.clone(),
    };
    let mut capacity = 1 << 20;
    let mut reader = create_reader(capacity, counting)
        .map_err(|e| anyhow::anyhow!("{}: not a pcap or pcapng file ({e:?})", path.display()))?;
    let mut reasm = Reassembler::new(reasm_cfg, sensor);
    let mut summary = ReplaySummary::default();
    let mut events: Vec<ApiEvent> = Vec::new();
    let mut legacy: Option<(Option<Link>, bool)> = None;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut last_ts_us = 0u64;
    let mut last_tick_us = 0u64;
    let progress = std::io::stderr().is_terminal();
    let mut last_progress = Instant::now();

    loop {
        let (offset, frame) = match reader.next() {
            Ok((offset, block)) => {
                let frame = match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        legacy = Some((
                            Link::from_linktype(h.network.0),
                            h.is_nanosecond_precision(),
                        ));
                        None
                    }
                    PcapBlockOwned::Legacy(b) => {
                        let (link, nanos) = legacy.unwrap_or((None, false));
                        let frac = if nanos {
                            u64::from(b.ts_usec) / 1000
                        } else {
                            u64::from(b.ts_usec)
                        };
                        let caplen = (b.caplen as usize).min(b.data.len());
                        Some((
                            link,
                            u64::from(b.ts_sec) * 1_000_000 + frac,
                            &b.data[..caplen],
                        ))
                    }
                    PcapBlockOwned::NG(Block::SectionHeader(_)) => {
                        interfaces.clear();
                        None
                    }
                    PcapBlockOwned::NG(Block::InterfaceDescription(idb)) => {
                        interfaces.push(Interface {
                            link: Link::from_linktype(idb.linktype.0),
                            resolution: idb.ts_resolution().unwrap_or(1_000_000).max(1),
                            offset_secs: idb.if_tsoffset,
                        });
                        None
                    }
                    PcapBlockOwned::NG(Block::EnhancedPacket(epb)) => {
                        let ifc = interfaces.get(epb.if_id as usize);
                        let link = ifc.and_then(|i| i.link);
                        let ts_us = ifc.map_or(last_ts_us, |i| {
                            let raw = (u128::from(epb.ts_high) << 32) | u128::from(epb.ts_low);
                            let us = raw * 1_000_000 / u128::from(i.resolution);
                            (us as i128 + i128::from(i.offset_secs) * 1_000_000).max(0) as u64
                        });
                        let caplen = (epb.caplen as usize).min(epb.data.len());
                        Some((link, ts_us, &epb.data[..caplen]))
                    }
                    PcapBlockOwned::NG(Block::SimplePacket(spb)) => {
                        let link = interfaces.first().and_then(|i| i.link);
                        Some((link, last_ts_us, spb.data))
                    }
                    PcapBlockOwned::NG(_) => None,
                };
                (offset, frame)
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => {
                if reader.reader_exhausted() {
                    tracing::warn!(
                        "capture ends in the middle of a block; replayed what was complete"
                    );
                    break;
                }
                // A block larger than the buffer: grow it (bounded), else read more.
                if reader.data().len() >= capacity {
                    if capacity >= MAX_BLOCK_BYTES {
                        bail!(
                            "{}: a block is larger than {MAX_BLOCK_BYTES} bytes",
                            path.display()
                        );
                    }
                    capacity *= 2;
                    reader.grow(capacity);
                }
                reader
                    .refill()
                    .map_err(|e| anyhow::anyhow!("reading {}: {e:?}", path.display()))?;
                continue;
            }
            Err(PcapError::UnexpectedEof) => {
                tracing::warn!("capture ends in the middle of a block; replayed what was complete");
                break;
            }
            Err(e) => bail!("{}: malformed capture ({e:?})", path.display()),
        };
        if let Some((link, ts_us, data)) = frame {
            summary.packets += 1;
            last_ts_us = last_ts_us.max(ts_us);
            match link {
                None => summary.unsupported_link += 1,
                Some(link) => match parse_frame(link, data, ts_us) {
                    Ok(Some(seg)) => {
                        summary.tcp_segments += 1;
                        reasm.segment(&seg, &mut events);
                    }
                    Ok(None) => summary.not_tcp += 1,
                    Err(PacketError::Fragment) => summary.fragments += 1,
                    Err(PacketError::Malformed) => summary.malformed += 1,
                },
            }
            // Timeouts run on capture time, so a replay behaves like the live sensor did.
            if last_ts_us >= last_tick_us + 1_000_000 {
                reasm.tick(last_ts_us, &mut events);
                last_tick_us = last_ts_us;
            }
            write(&mut events, minimiser, sink, &mut summary)?;
        }
        reader.consume(offset);
        if progress && last_progress.elapsed() > Duration::from_millis(250) {
            last_progress = Instant::now();
            let done = read.load(Ordering::Relaxed);
            let pct = (done * 100).checked_div(total).unwrap_or(0);
            eprint!(
                "\r{pct:3}%  {} packets  {} events",
                summary.packets, summary.events
            );
        }
    }
    reasm.finish(&mut events);
    write(&mut events, minimiser, sink, &mut summary)?;
    sink.flush()?;
    if progress {
        eprintln!(
            "\r100%  {} packets  {} events",
            summary.packets, summary.events
        );
    }
    summary.decode = reasm.stats().clone();
    summary.payload = minimiser.stats.clone();
    Ok(summary)
}

fn write(
    events: &mut Vec<ApiEvent>,
    minimiser: &mut Minimiser,
    sink: &mut Sink,
    summary: &mut ReplaySummary,
) -> anyhow::Result<()> {
    for e in events.drain(..) {
        for a in &e.anomalies {
            let code = serde_json::to_value(a)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *summary.anomalies.entry(code).or_default() += 1;
        }
        let e = minimiser.apply(e);
        sink.write(&e)?;
        summary.events += 1;
    }
    Ok(())
}
