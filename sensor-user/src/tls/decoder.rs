//! TLS ring records → per-connection, per-direction ordered plaintext → [`Session`] → events.
//!
//! Plaintext bypasses TCP reassembly: a TLS connection is the library's connection object in
//! one process (`(pid, SSL *)`), its two directions are the process's reads and writes, and
//! each record carries its offset in its direction's stream, so a record further on than
//! expected is a gap (bytes the kernel could not copy) and is declared to the session as one.
//! The role (who is the server) comes from how the socket was established, or, for a socket
//! established before the sensor started, from the first bytes (a response starts `HTTP/`).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use apitap_common::tls::{TLS_HEADER_BYTES, TlsHeader, TlsKind, role};
use apitap_common::{FAMILY_IPV4, FAMILY_IPV6, FlowOwner};
use apitap_decode::h2::H2Stats;
use apitap_decode::{ConnMeta, Session, SessionConfig, Side, Stats};
use apitap_schema::{ApiEvent, Endpoint, Process, SensorInfo};

/// Why a TLS record could not be used (counted as `apitap_tls_bad_records_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TlsRecordError {
    /// Shorter than a header, or the chunk does not fit the record or the call.
    #[error("TLS record length does not match its header")]
    Length,
    /// Unknown record kind.
    #[error("unknown TLS record kind")]
    Kind,
}

/// One parsed record: the header and its plaintext (borrowed from the ring).
#[derive(Debug)]
pub struct TlsRecord<'a> {
    /// The header as the kernel wrote it.
    pub header: TlsHeader,
    /// `chunk_len` plaintext bytes.
    pub data: &'a [u8],
}

/// Parses one ring record (the kernel reserves fixed sizes: the record may be longer than
/// the header and chunk).
pub fn parse(bytes: &[u8]) -> Result<TlsRecord<'_>, TlsRecordError> {
    if bytes.len() < TLS_HEADER_BYTES {
        return Err(TlsRecordError::Length);
    }
    // SAFETY: length checked; TlsHeader is plain old data, read unaligned.
    let header: TlsHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if header.kind > TlsKind::Sni as u8 {
        return Err(TlsRecordError::Kind);
    }
    let len = header.chunk_len as usize;
    let end = TLS_HEADER_BYTES
        .checked_add(len)
        .ok_or(TlsRecordError::Length)?;
    if end > bytes.len()
        || u64::from(header.chunk_offset) + u64::from(header.chunk_len) > u64::from(header.call_len)
    {
        return Err(TlsRecordError::Length);
    }
    Ok(TlsRecord {
        header,
        data: &bytes[TLS_HEADER_BYTES..end],
    })
}

/// What the TLS decoder counted (`apitap_tls_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Records read from the TLS ring.
    pub records: u64,
    /// Records that could not be used ([`TlsRecordError`]).
    pub bad_records: u64,
    /// Server names (SNI) reported by the probes.
    pub sni: u64,
    /// Plaintext bytes handed to sessions.
    pub plaintext_bytes: u64,
    /// TLS connections opened.
    pub connections: u64,
    /// TLS connections closed by the library's free call.
    pub connections_closed: u64,
    /// TLS connections closed after `tls.idle_timeout_secs` without plaintext.
    pub connections_idle: u64,
    /// TLS connections closed because `tls.max_connections` were open.
    pub connections_evicted: u64,
    /// Connections whose socket's establishment was not seen; the role was taken from the
    /// first bytes.
    pub role_from_content: u64,
    /// Connections whose socket was never seen: events carry `0.0.0.0:0` endpoints.
    pub unknown_endpoints: u64,
    /// Gaps declared because a record started further on than expected (kernel loss).
    pub gaps: u64,
    /// Bytes in those gaps.
    pub gap_bytes: u64,
    /// Records that started before the expected offset (a connection object reused
    /// without its free being seen): the old connection was closed and a new one opened.
    pub restarts: u64,
}

/// The owner of the traced process's socket, for workload attribution: which side of the
/// event the process is.
#[derive(Debug, Clone, Copy)]
pub struct TlsOwner {
    /// cgroup and uid of the process.
    pub owner: FlowOwner,
    /// The process served the transaction (else it was the client).
    pub server: bool,
}

struct Conn {
    session: Session,
    /// Next expected stream offset per direction: [read, write].
    expected: [u64; 2],
    last_us: u64,
    /// The traced process is the server.
    server: bool,
    process: Arc<Process>,
    library: Arc<str>,
    owner: FlowOwner,
    /// The server name (SNI), when the probes saw it.
    sni: Option<Arc<str>>,
}

/// Looks up the executable of a process (the kernel's exec map, `/proc`).
pub trait ExeSource {
    /// The executable path of `pid`, when known.
    fn executable(&mut self, pid: u32) -> Option<String>;
}

/// Decodes the TLS ring's records into events (see the module documentation).
pub struct TlsDecoder {
    conns: HashMap<(u32, u64), Conn>,
    /// Server names of connections that carried no plaintext yet (the handshake comes first).
    pending_sni: HashMap<(u32, u64), Arc<str>>,
    sensor: Arc<SensorInfo>,
    cfg: Arc<SessionConfig>,
    libraries: Vec<Arc<str>>,
    processes: HashMap<u32, Arc<Process>>,
    max_connections: usize,
    idle_us: u64,
    stats: Stats,
    tls: TlsStats,
    /// HTTP/2 decoder counters of the TLS connections closed so far.
    h2_closed: H2Stats,
}

/// Processes remembered at most (their names are looked up once per pid).
const MAX_PROCESSES: usize = 16_384;

impl TlsDecoder {
    /// A decoder for `libraries` (index = the probes' attach cookie).
    pub fn new(
        sensor: SensorInfo,
        cfg: SessionConfig,
        libraries: Vec<String>,
        max_connections: usize,
        idle_timeout_secs: u64,
    ) -> Self {
        TlsDecoder {
            conns: HashMap::new(),
            pending_sni: HashMap::new(),
            sensor: Arc::new(sensor),
            cfg: Arc::new(cfg),
            libraries: libraries.into_iter().map(Arc::from).collect(),
            processes: HashMap::new(),
            max_connections: max_connections.max(1),
            idle_us: idle_timeout_secs.saturating_mul(1_000_000),
            stats: Stats::default(),
            tls: TlsStats::default(),
            h2_closed: H2Stats::default(),
        }
    }

    /// Decoder counters of the TLS sessions.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// HTTP/2 decoder counters summed over the TLS connections, closed and open
    /// (O(connections): for the periodic metrics snapshot).
    pub fn h2_stats(&self) -> H2Stats {
        let mut total = self.h2_closed.clone();
        for c in self.conns.values() {
            if let Some(h2) = c.session.h2() {
                total.add(h2.stats());
            }
        }
        total
    }

    /// TLS counters.
    pub fn tls_stats(&self) -> TlsStats {
        self.tls
    }

    /// Open TLS connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Bytes held by the open sessions.
    pub fn held_bytes(&self) -> usize {
        self.conns.values().map(|c| c.session.buffered()).sum()
    }

    /// Counts an exec notice (handled by [`super::watch::ExecWatch`]) as a record read.
    pub fn exec_record(&mut self) {
        self.tls.records += 1;
    }

    /// Counts a record that could not be parsed.
    pub fn bad_record(&mut self) {
        self.tls.records += 1;
        self.tls.bad_records += 1;
    }

    /// Handles one record; events completed by it are appended to `out`. `offset_ns`
    /// converts the kernel's monotonic clock to Unix time.
    pub fn record(
        &mut self,
        rec: &TlsRecord<'_>,
        offset_ns: i128,
        exes: &mut dyn ExeSource,
        out: &mut Vec<(ApiEvent, TlsOwner)>,
    ) {
        if rec.header.kind == TlsKind::Exec as u8 {
            return self.exec_record(); // not plaintext: see `super::watch`
        }
        self.tls.records += 1;
        let h = &rec.header;
        let ts_us = ((i128::from(h.ts_ns) + offset_ns).max(0) / 1000) as u64;
        let key = (h.tgid, h.ssl);
        if h.kind == TlsKind::Sni as u8 {
            self.tls.sni += 1;
            let name: Arc<str> = String::from_utf8_lossy(rec.data).into();
            match self.conns.get_mut(&key) {
                Some(c) => c.sni = Some(name),
                None => {
                    // Bounded: names of connections that never carry plaintext go.
                    if self.pending_sni.len() >= self.max_connections {
                        self.pending_sni.clear();
                    }
                    self.pending_sni.insert(key, name);
                }
            }
            return;
        }
        if h.kind == TlsKind::Close as u8 {
            self.pending_sni.remove(&key);
            if let Some(c) = self.conns.remove(&key) {
                self.tls.connections_closed += 1;
                self.close(c, ts_us, false, out);
            }
            return;
        }
        let dir = usize::from(h.kind == TlsKind::Write as u8);
        let offset = h.stream_offset + u64::from(h.chunk_offset);
        if let Some(c) = self.conns.get(&key)
            && offset < c.expected[dir]
        {
            // The connection object was freed and reused without the free being seen.
            self.tls.restarts += 1;
            if let Some(c) = self.conns.remove(&key) {
                self.close(c, ts_us, false, out);
            }
        }
        if !self.conns.contains_key(&key) {
            if self.conns.len() >= self.max_connections {
                self.evict_oldest(ts_us, out);
            }
            let mut conn = self.open(h, rec.data, ts_us, exes);
            conn.sni = self.pending_sni.remove(&key);
            self.conns.insert(key, conn);
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        c.last_us = ts_us;
        // Reads carry what the peer sent; writes what the process sent.
        let side = match (c.server, dir == 1) {
            (true, true) | (false, false) => Side::Server,
            _ => Side::Client,
        };
        let mut produced = Vec::new();
        if offset > c.expected[dir] {
            let missing = offset - c.expected[dir];
            self.tls.gaps += 1;
            self.tls.gap_bytes += missing;
            c.session
                .gap(side, ts_us, missing, &mut self.stats, &mut produced);
        }
        c.session
            .data(side, ts_us, rec.data, None, &mut self.stats, &mut produced);
        c.expected[dir] = offset + rec.data.len() as u64;
        self.tls.plaintext_bytes += rec.data.len() as u64;
        Self::label(c, produced, out);
    }

    /// Closes connections idle for `tls.idle_timeout_secs` at `now_us`.
    pub fn tick(&mut self, now_us: u64, out: &mut Vec<(ApiEvent, TlsOwner)>) {
        let idle: Vec<(u32, u64)> = self
            .conns
            .iter()
            .filter(|(_, c)| now_us.saturating_sub(c.last_us) >= self.idle_us)
            .map(|(k, _)| *k)
            .collect();
        for k in idle {
            if let Some(c) = self.conns.remove(&k) {
                self.tls.connections_idle += 1;
                self.close(c, now_us, false, out);
            }
        }
    }

    /// Reports every open connection's pending transactions (shutdown).
    pub fn finish(&mut self, now_us: u64, out: &mut Vec<(ApiEvent, TlsOwner)>) {
        let all: Vec<(u32, u64)> = self.conns.keys().copied().collect();
        for k in all {
            if let Some(c) = self.conns.remove(&k) {
                self.close(c, now_us, false, out);
            }
        }
    }

    fn evict_oldest(&mut self, ts_us: u64, out: &mut Vec<(ApiEvent, TlsOwner)>) {
        let oldest = self
            .conns
            .iter()
            .min_by_key(|(_, c)| c.last_us)
            .map(|(k, _)| *k);
        if let Some(c) = oldest.and_then(|k| self.conns.remove(&k)) {
            self.tls.connections_evicted += 1;
            self.close(c, ts_us, true, out);
        }
    }

    fn close(
        &mut self,
        mut c: Conn,
        ts_us: u64,
        evicted: bool,
        out: &mut Vec<(ApiEvent, TlsOwner)>,
    ) {
        let mut produced = Vec::new();
        c.session
            .close(ts_us, evicted, &mut self.stats, &mut produced);
        if let Some(h2) = c.session.h2() {
            self.h2_closed.add(h2.stats());
        }
        Self::label(&c, produced, out);
    }

    fn label(c: &Conn, produced: Vec<ApiEvent>, out: &mut Vec<(ApiEvent, TlsOwner)>) {
        for mut e in produced {
            e.tls_library = Some(c.library.to_string());
            e.tls_sni = c.sni.as_deref().map(str::to_owned);
            e.process = Some(c.process.clone());
            out.push((
                e,
                TlsOwner {
                    owner: c.owner,
                    server: c.server,
                },
            ));
        }
    }

    fn open(&mut self, h: &TlsHeader, first: &[u8], ts_us: u64, exes: &mut dyn ExeSource) -> Conn {
        self.tls.connections += 1;
        let server = match h.role {
            role::SERVER => true,
            role::CLIENT => false,
            _ => {
                self.tls.role_from_content += 1;
                // A response starts with the HTTP version; whoever sends one is the server.
                let response = first.starts_with(b"HTTP/");
                (h.kind == TlsKind::Write as u8) == response
            }
        };
        let (local, remote) = match endpoints(h) {
            Some(e) => e,
            None => {
                self.tls.unknown_endpoints += 1;
                let none = Endpoint {
                    ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    port: 0,
                };
                (none, none)
            }
        };
        let (client, server_ep) = if server {
            (remote, local)
        } else {
            (local, remote)
        };
        let meta = ConnMeta {
            sensor: self.sensor.clone(),
            client,
            server: server_ep,
            first_seen_ns: ts_us.saturating_mul(1000),
            tls: true,
        };
        // A connection first seen in the middle of a message: both parsers resynchronise.
        let midstream = h.stream_offset != 0 || h.chunk_offset != 0;
        let library = self
            .libraries
            .get(usize::from(h.library))
            .cloned()
            .unwrap_or_else(|| Arc::from("openssl"));
        Conn {
            session: Session::new(meta, self.cfg.clone(), midstream),
            expected: [0; 2],
            last_us: ts_us,
            server,
            process: self.process(h, exes),
            library,
            owner: FlowOwner {
                cgroup_id: h.cgroup_id,
                uid: h.uid,
                _pad: 0,
            },
            sni: None,
        }
    }

    fn process(&mut self, h: &TlsHeader, exes: &mut dyn ExeSource) -> Arc<Process> {
        let comm = comm(&h.comm);
        if let Some(p) = self.processes.get(&h.tgid)
            && p.comm == comm
        {
            return p.clone();
        }
        if self.processes.len() >= MAX_PROCESSES {
            self.processes.clear();
        }
        let p = Arc::new(Process {
            pid: h.tgid,
            executable: exes.executable(h.tgid),
            comm,
        });
        self.processes.insert(h.tgid, p.clone());
        p
    }
}

/// The NUL-padded command name as text.
fn comm(raw: &[u8; 16]) -> String {
    let n = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..n]).into_owned()
}

/// (local, remote) endpoints of the record's socket; IPv4-mapped IPv6 as IPv4, as the packet
/// path reports them.
fn endpoints(h: &TlsHeader) -> Option<(Endpoint, Endpoint)> {
    let ip = |a: &[u8; 16]| -> Option<IpAddr> {
        match h.family {
            FAMILY_IPV4 => Some(IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3]))),
            FAMILY_IPV6 => {
                let v6 = Ipv6Addr::from(*a);
                Some(match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None => IpAddr::V6(v6),
                })
            }
            _ => None,
        }
    };
    Some((
        Endpoint {
            ip: ip(&h.laddr)?,
            port: h.lport,
        },
        Endpoint {
            ip: ip(&h.raddr)?,
            port: h.rport,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoExe;
    impl ExeSource for NoExe {
        fn executable(&mut self, pid: u32) -> Option<String> {
            (pid == 7).then(|| "/usr/sbin/nginx".to_owned())
        }
    }

    fn header(kind: TlsKind, stream_offset: u64, call_len: u32, chunk: (u32, u32)) -> TlsHeader {
        let mut laddr = [0u8; 16];
        laddr[..4].copy_from_slice(&[10, 0, 0, 1]);
        let mut raddr = [0u8; 16];
        raddr[..4].copy_from_slice(&[10, 0, 0, 2]);
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"nginx");
        TlsHeader {
            ts_ns: 1_000_000,
            ssl: 0xdead_0000,
            sock: 0xffff_0000,
            cgroup_id: 42,
            stream_offset,
            call_len,
            chunk_offset: chunk.0,
            chunk_len: chunk.1,
            tgid: 7,
            tid: 7,
            uid: 33,
            laddr,
            raddr,
            comm,
            lport: 443,
            rport: 50_000,
            kind: kind as u8,
            family: FAMILY_IPV4,
            role: role::SERVER,
            library: 0,
            _pad: [0; 8],
        }
    }

    fn encode(h: &TlsHeader, data: &[u8], reserved: usize) -> Vec<u8> {
        // SAFETY: TlsHeader is repr(C) plain old data without padding.
        let raw = unsafe {
            std::slice::from_raw_parts((h as *const TlsHeader).cast::<u8>(), TLS_HEADER_BYTES)
        };
        let mut v = raw.to_vec();
        v.extend_from_slice(data);
        v.resize(TLS_HEADER_BYTES + reserved.max(data.len()), 0xAA);
        v
    }

    fn decoder() -> TlsDecoder {
        TlsDecoder::new(
            SensorInfo {
                id: "s".into(),
                host: "h".into(),
                node: None,
            },
            SessionConfig::default(),
            vec!["openssl".into()],
            2,
            10,
        )
    }

    fn feed(d: &mut TlsDecoder, h: TlsHeader, data: &[u8], out: &mut Vec<(ApiEvent, TlsOwner)>) {
        let bytes = encode(&h, data, 1024);
        let rec = parse(&bytes).unwrap();
        d.record(&rec, 0, &mut NoExe, out);
    }

    #[test]
    fn records_are_checked_against_their_header() {
        let h = header(TlsKind::Read, 0, 3, (0, 3));
        let ok = encode(&h, b"abc", 1024);
        assert_eq!(parse(&ok).unwrap().data, b"abc");
        assert_eq!(parse(&ok[..10]).unwrap_err(), TlsRecordError::Length);
        assert_eq!(
            parse(&ok[..TLS_HEADER_BYTES + 2]).unwrap_err(),
            TlsRecordError::Length
        );
        let past_call = header(TlsKind::Read, 0, 3, (2, 3));
        assert_eq!(
            parse(&encode(&past_call, b"abc", 0)).unwrap_err(),
            TlsRecordError::Length
        );
        let mut bad = h;
        bad.kind = 9;
        assert_eq!(
            parse(&encode(&bad, b"abc", 0)).unwrap_err(),
            TlsRecordError::Kind
        );
    }

    /// A server's read (the request) and its write split in two chunks (the response) make
    /// one event naming the process, with `tls`, the library and the socket's endpoints.
    #[test]
    fn a_servers_calls_make_one_event() {
        let mut d = decoder();
        let mut out = Vec::new();
        let req = b"POST /pay HTTP/1.1\r\nHost: bank\r\nContent-Length: 4\r\n\r\nabcd";
        feed(
            &mut d,
            header(TlsKind::Read, 0, req.len() as u32, (0, req.len() as u32)),
            req,
            &mut out,
        );
        let res = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let n = res.len() as u32;
        feed(
            &mut d,
            header(TlsKind::Write, 0, n, (0, 20)),
            &res[..20],
            &mut out,
        );
        feed(
            &mut d,
            header(TlsKind::Write, 0, n, (20, n - 20)),
            &res[20..],
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let (e, owner) = &out[0];
        assert!(e.tls);
        assert_eq!(e.tls_library.as_deref(), Some("openssl"));
        let p = e.process.as_deref().unwrap();
        assert_eq!((p.pid, p.comm.as_str()), (7, "nginx"));
        assert_eq!(p.executable.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(
            (e.server.ip.to_string(), e.server.port),
            ("10.0.0.1".into(), 443)
        );
        assert_eq!(
            (e.client.ip.to_string(), e.client.port),
            ("10.0.0.2".into(), 50000)
        );
        assert_eq!(e.request.body.bytes().unwrap(), b"abcd");
        assert_eq!(e.response.as_ref().unwrap().body.bytes().unwrap(), b"hello");
        assert!(owner.server);
        assert_eq!(owner.owner.cgroup_id, 42);
        // The free call closes the connection.
        feed(&mut d, header(TlsKind::Close, 0, 0, (0, 0)), b"", &mut out);
        assert_eq!(d.connections(), 0);
        assert_eq!(d.tls_stats().connections_closed, 1);
    }

    /// Bytes the kernel could not copy show up as a jump in the stream offset: the session
    /// is told of a gap and the transaction is marked, not silently merged.
    #[test]
    fn a_jump_in_the_stream_offset_is_a_gap() {
        let mut d = decoder();
        let mut out = Vec::new();
        let req = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n";
        let n = req.len() as u32;
        feed(&mut d, header(TlsKind::Read, 0, n, (0, n)), req, &mut out);
        // 100 response bytes lost, then a new response head.
        let res = b"HTTP/1.1 204 No Content\r\n\r\n";
        let m = res.len() as u32;
        feed(
            &mut d,
            header(TlsKind::Write, 100, m, (0, m)),
            res,
            &mut out,
        );
        let s = d.tls_stats();
        assert_eq!((s.gaps, s.gap_bytes), (1, 100));
        d.finish(0, &mut out);
        assert!(!out.is_empty());
        assert!(
            out.iter()
                .any(|(e, _)| e.anomalies.contains(&apitap_schema::Anomaly::ResponseGap)),
            "{:?}",
            out.iter().map(|(e, _)| &e.anomalies).collect::<Vec<_>>()
        );
    }

    /// Without the socket's establishment (opened before the sensor), a process writing a
    /// request is the client; its connection count and limits hold.
    #[test]
    fn role_from_content_and_connection_limit() {
        let mut d = decoder();
        let mut out = Vec::new();
        let req = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
        let n = req.len() as u32;
        for ssl in 1..=3u64 {
            let mut h = header(TlsKind::Write, 0, n, (0, n));
            h.role = role::UNKNOWN;
            h.ssl = ssl;
            h.family = 0;
            feed(&mut d, h, req, &mut out);
        }
        let s = d.tls_stats();
        assert_eq!((s.role_from_content, s.unknown_endpoints), (3, 3));
        assert_eq!(s.connections_evicted, 1);
        assert_eq!(d.connections(), 2);
        d.finish(0, &mut out);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|(_, o)| !o.server));
    }
}
